//! autoredeploy turns "a new image was pushed" into "the Rancher services that run that image
//! are upgraded".
//!
//! The modules follow the data path, and data flows one way through them:
//!
//! * [`config`] reads and validates the environment into [`config::Settings`].
//! * [`intake`] is the HTTP surface: it authenticates a registry webhook, limits and parses
//!   its body into a [`domain::PushEvent`] and hands it to the [`queue`].
//! * [`queue`] is the bounded hand-over between the HTTP side and the deploy side.
//! * [`deployer`] takes pushes off the queue and runs one job per push: the [`planner`] pages
//!   through Rancher's services and decides, with [`matching`], which ones to upgrade; the
//!   [`upgrader`] drives each of them through Rancher's in-service upgrade.
//! * [`rancher`] is the only module that speaks Rancher's API; its wire types stay inside it.
//! * [`outcome`] is what happened to each service: one log line each, and a stream that
//!   tests and later consumers can subscribe to.
//! * [`startup`] wires everything together around a listener the caller binds, and
//!   [`telemetry`] sets up logging.

pub mod config;
pub mod deployer;
pub mod domain;
pub mod healthcheck;
pub mod intake;
pub mod journal;
pub mod matching;
pub mod outcome;
pub mod planner;
pub mod queue;
pub mod rancher;
pub mod startup;
pub mod telemetry;
pub mod upgrader;

/// Installs the process-wide TLS crypto provider (ring) that every HTTP client needs; later
/// calls do nothing.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
