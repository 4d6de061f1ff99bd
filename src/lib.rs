//! autoredeploy turns "a new image was pushed" into "the Rancher services that run that image
//! are upgraded".
//!
//! The modules follow the data path, and data flows one way through them:
//!
//! * [`config`] reads and validates the environment into [`config::Settings`].
//! * [`intake`] is the HTTP surface: it authenticates a registry webhook, limits and parses
//!   its body into a [`domain::PushEvent`] and writes it to the [`journal`]; it also serves
//!   the job history.
//! * [`journal`] is the durable queue and record: jobs, the services they plan, each step.
//! * [`deployer`] runs the journal's jobs (and resumes interrupted ones): the [`planner`]
//!   pages through Rancher's services and decides, with [`matching`], which ones to upgrade;
//!   the [`upgrader`] drives each of them through Rancher's in-service upgrade, recording
//!   every step before taking it.
//! * [`rancher`] is the only module that speaks Rancher's API; its wire types stay inside it.
//! * [`outcome`] is what happened to each service: one log line each, and a stream that
//!   tests and later consumers can subscribe to.
//! * [`startup`] wires everything together around a listener the caller binds,
//!   [`shutdown`] carries the signal to stop between two steps, [`telemetry`] sets up
//!   logging, and [`history`] prints the journal for `autoredeploy jobs`.

pub mod config;
pub mod deploy;
pub mod domain;
pub mod events;
pub mod healthcheck;
pub mod intake;
pub mod jobs_command;
pub mod journal;
pub mod platform;
pub mod shutdown;
pub mod startup;
pub mod telemetry;

/// Installs the process-wide TLS crypto provider (ring) that every HTTP client needs; later
/// calls do nothing.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
