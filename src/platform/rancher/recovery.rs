//! What happens to a Rancher upgrade that is stuck or that Rancher reports in error: it is
//! rolled back, cancelled or left, as `RANCHER_UPGRADE_ON_FAILURE` said when the recovery
//! started; a recovery interrupted by a restart goes on with that same policy.

use super::checkpoint::{Checkpoint, Step};
use super::upgrade::{Halt, Upgrade, Upgrader};
use super::watch::Sighting;
use crate::config::OnFailure;
use crate::domain::{Outcome, UnitEnd};

/// What to do about a failed upgrade, and why.
pub(super) struct Recovery {
    /// Roll back, cancel or leave.
    pub(super) policy: OnFailure,
    /// What went wrong.
    pub(super) reason: String,
    /// Resumed after a restart from a recorded recovery step.
    pub(super) resumed: bool,
}

impl Upgrader {
    /// A stuck or failed upgrade: roll back, cancel or leave it, as `recovery.policy` says.
    pub(super) async fn recover(
        &self,
        upgrade: &Upgrade<'_>,
        recovery: Recovery,
    ) -> Result<Outcome, Halt> {
        let id = upgrade.id();
        let Recovery {
            policy,
            reason,
            resumed,
        } = recovery;
        let (step, in_progress, state_after, end, done) = match policy {
            OnFailure::Leave => {
                return Ok(Outcome::because(
                    UnitEnd::Left,
                    format!("{reason}; left as it is (RANCHER_UPGRADE_ON_FAILURE=leave)"),
                ));
            }
            OnFailure::Rollback => (
                Step::RollingBack,
                "rolling-back",
                "active",
                UnitEnd::RolledBack,
                "rolled back to the previous launch config",
            ),
            OnFailure::Cancel => (
                Step::Cancelling,
                "canceling-upgrade",
                "canceled-upgrade",
                UnitEnd::Cancelled,
                "cancelled; the service is left in canceled-upgrade",
            ),
        };
        let service = self.client.service_state(id).await?;
        let available = match step {
            Step::RollingBack => service.actions.rollback,
            _ => service.actions.cancelupgrade,
        };
        let ended_before_a_restart =
            resumed && service.state == state_after && !service.is_transitioning();
        if service.state != in_progress && !ended_before_a_restart {
            if !available {
                return Err(Halt::failed(format!(
                    "{reason}; RANCHER_UPGRADE_ON_FAILURE could not be applied in state {}",
                    service.state
                )));
            }
            self.check_shutdown()?;
            let checkpoint = Checkpoint {
                versions: None,
                reason: Some(reason.clone()),
            };
            upgrade
                .record(step, Some(reason.clone()), Some(&checkpoint))
                .await?;
            match step {
                Step::RollingBack => self.client.rollback(id).await?,
                _ => self.client.cancel_upgrade(id).await?,
            };
        }
        let settled = self
            .wait_settled(id, self.deadline())
            .await
            .map_err(|halt| match halt {
                Halt::Stuck(more) => {
                    Halt::failed(format!("{reason}; recovering failed too: {more}"))
                }
                other => other,
            })?;
        let state = match settled {
            Sighting::Active => "active".to_owned(),
            Sighting::Listed(service) => service.state,
        };
        if state != state_after {
            return Err(Halt::failed(format!(
                "{reason}; recovering ended in state {state}"
            )));
        }
        Ok(Outcome::because(end, format!("{reason}; {done}")))
    }
}
