//! What the Docker Engine targets share: containers and Swarm services are both reached
//! through the Engine API, with the registry credentials of a Docker `config.json`.

pub mod credentials;
