//! What the Docker Engine targets share: the Engine API client, over the connections
//! Docker's client variables describe, and the registry credentials of a Docker
//! `config.json`.

mod client;
mod connection;
mod error;
mod version;

pub mod credentials;

pub use client::{Call, EngineClient, REQUEST_TIMEOUT};
pub use error::EngineError;
pub use version::ApiVersion;
