//! The targets: the platforms whose services or containers a push upgrades. Each one is
//! optional, so a process can drive any of them.

use super::ConfigError;
use super::rancher::{self, RancherTarget};
use super::vars::RancherVars;

/// The targets in use; each is `None` when it is not.
#[derive(Debug, Clone)]
pub struct TargetSettings {
    /// Services of a Rancher 1.x (Cattle) environment.
    pub rancher: Option<RancherTarget>,
}

/// Validates the targets' variables.
pub(super) fn validate(rancher: RancherVars) -> Result<TargetSettings, ConfigError> {
    Ok(TargetSettings {
        rancher: Some(rancher::validate(rancher)?),
    })
}
