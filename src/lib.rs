//! autoredeploy turns "a new image was pushed" into "every workload that runs that image is
//! redeployed": today the services of a Rancher 1.x environment, each target through the
//! same platform-neutral core.
//!
//! The modules follow the data path, and data flows one way through them:
//!
//! * [`config`] reads and validates the environment into [`config::Settings`], including
//!   which targets are on.
//! * [`intake`] is the HTTP surface: it authenticates a sender, limits and parses its body
//!   with that sender's [`intake::sources`] module into [`domain::PushEvent`]s, and writes
//!   them to the [`journal`]; it also serves the job history.
//! * [`journal`] is the durable queue and record: jobs, each target's scan, the units they
//!   plan, every step with its platform's checkpoint; its schema is versioned and migrated.
//! * [`deploy`] runs the journal's jobs (and resumes interrupted ones) on every configured
//!   [`platform`], knowing each only through the [`platform::Platform`] trait.
//! * [`platform`] holds the targets, one module each: [`platform::rancher`] is the only
//!   module that speaks Rancher's API, and its wire types stay inside it.
//! * [`domain`] holds the values every stage shares: image references, pushes, units and
//!   the ends every platform shares.
//! * [`events`] is what happened to each unit and each push: one log line each, the
//!   metrics, a stream that tests can subscribe to, and the notifications and Docker Hub
//!   callbacks, sent from the journal's outbox.
//! * [`recheck`] reads, every `AUTOREDEPLOY_RECHECK_INTERVAL`, the digest of each tag the
//!   opted-in workloads run from its registry, and journals a push for each that moved.
//! * [`startup`] wires everything together around a listener the caller binds,
//!   [`shutdown`] carries the signal to stop between two steps, [`telemetry`] sets up
//!   logging, [`healthcheck`] and [`jobs_command`] are the binary's other commands.

pub mod allocator;
pub mod config;
pub mod deploy;
pub mod domain;
pub mod events;
pub mod healthcheck;
pub mod intake;
pub mod jobs_command;
pub mod journal;
pub mod platform;
pub mod recheck;
pub mod shutdown;
pub mod startup;
pub mod telemetry;

/// Installs the process-wide TLS crypto provider (ring) that every HTTP client needs; later
/// calls do nothing.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A TLS client setup that trusts the system's CA certificates, for the HTTP clients that
/// reach registries and notification services.
pub(crate) fn system_tls() -> Result<rustls::ClientConfig, String> {
    install_crypto_provider();
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| std::sync::Arc::new(rustls::crypto::ring::default_provider()));
    let verifier = rustls_platform_verifier::Verifier::new(std::sync::Arc::clone(&provider))
        .map_err(|error| format!("the system's CA certificates: {error}"))?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(verifier))
        .with_no_client_auth())
}
