//! The Swarm target: the services of the Swarm whose manager is the Docker Engine of
//! `DOCKER_HOST` (else the default socket), which of them a push updates, and what to do
//! with an update that does not complete.

use std::time::Duration;

use super::ConfigError;
use super::containers::EngineSettings;
use super::rancher::MatchSettings;
use super::vars::{SwarmVars, parse_bool, parse_or};

/// symfoni/deployer's label, which only services that may be updated carry.
pub const SWARM_DEFAULT_LABEL_NAME: &str = "deployer.allowUpdates";

/// Everything the Swarm target needs.
#[derive(Debug, Clone)]
pub struct SwarmTarget {
    /// The engine: a Swarm manager.
    pub engine: EngineSettings,
    /// Why the engine must be a manager (`AUTOREDEPLOY_TARGETS` names `swarm`, or a
    /// `SWARM_*` setting is given); `None` when the target is used only if it is one.
    pub asked_for: Option<String>,
    /// Which services a push updates (`SWARM_AUTOREDEPLOY_LABEL_NAME`,
    /// `SWARM_AUTOREDEPLOY_DEFAULT`).
    pub matching: MatchSettings,
    /// Time an update has to complete (`SWARM_UPGRADE_TIMEOUT_S`).
    pub timeout: Duration,
    /// What to do with an update that has not completed by then
    /// (`SWARM_UPGRADE_ON_FAILURE`).
    pub on_failure: SwarmOnFailure,
}

/// What to do with a Swarm update that has not completed in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwarmOnFailure {
    /// Ask Swarm to roll the service back to its previous spec (`rollback`).
    Rollback,
    /// Leave it as it is (`leave`).
    Leave,
}

/// Validates the Swarm target's variables.
pub(super) fn validate(
    engine: EngineSettings,
    asked_for: Option<String>,
    vars: SwarmVars,
) -> Result<SwarmTarget, ConfigError> {
    let on_failure = match vars.swarm_upgrade_on_failure.as_deref().map(str::trim) {
        None | Some("rollback") => SwarmOnFailure::Rollback,
        Some("leave") => SwarmOnFailure::Leave,
        Some(other) => {
            return Err(ConfigError::invalid(
                "SWARM_UPGRADE_ON_FAILURE",
                "`rollback` or `leave`",
                other,
            ));
        }
    };
    Ok(SwarmTarget {
        engine,
        asked_for,
        matching: MatchSettings {
            default_opt_in: parse_bool(
                "SWARM_AUTOREDEPLOY_DEFAULT",
                vars.swarm_autoredeploy_default,
                false,
            )?,
            label_name: vars
                .swarm_autoredeploy_label_name
                .unwrap_or_else(|| SWARM_DEFAULT_LABEL_NAME.to_owned()),
        },
        timeout: Duration::from_secs(parse_or(
            "SWARM_UPGRADE_TIMEOUT_S",
            vars.swarm_upgrade_timeout_s,
            300,
            1..=86_400,
        )?),
        on_failure,
    })
}
