//! Drives one service through Rancher's in-service upgrade: [finish a pending upgrade] →
//! upgrade with the full launch config → wait for `upgraded` → `finishupgrade` → wait for
//! `active`. Every step is recorded before it is taken, with the launch-config versions as
//! its checkpoint, so an interrupted upgrade is resumed where it stood and never posted
//! twice. Every wait is bounded; a stuck or failed upgrade is handled as
//! `RANCHER_UPGRADE_ON_FAILURE` says, and a resumed recovery follows the policy it was
//! started with.

use tokio::time::Instant;

use super::checkpoint::{
    Checkpoint, Step, Versions, recorded_configs_run, versions_changed, versions_of,
};
use super::matching::{self, Targets, Verdict};
use super::recovery::Recovery;
use super::request::upgrade_request;
use super::watch::{Sighting, StateWatch};
use super::{Listed, RancherClient, RancherError, Service, ServiceState};
use crate::config::{MatchSettings, OnFailure, UpgradeSettings};
use crate::domain::{ImageRef, Outcome, UnitEnd};
use crate::journal::UnitRecord;
use crate::platform::{Progress, StepLog};
use crate::shutdown::ShutdownSignal;

/// Upgrades services, one call of [`Upgrader::drive`] per service.
#[derive(Debug, Clone)]
pub struct Upgrader {
    /// Rancher API.
    pub(super) client: RancherClient,
    /// Strategy, polling, timeouts and what to do on failure.
    settings: UpgradeSettings,
    /// Used to check again that a service still runs the image.
    rule: MatchSettings,
    /// Stops the work between two steps.
    shutdown: ShutdownSignal,
    /// Reads the states of the services waiting for Rancher, all with one request a poll.
    watch: StateWatch,
}

/// Why an upgrade stopped before its end.
pub(super) enum Halt {
    /// The upgrade is stuck or Rancher reported an error: `RANCHER_UPGRADE_ON_FAILURE` applies.
    Stuck(String),
    /// Nothing more to do now.
    Stop(Progress),
}

impl Halt {
    pub(super) fn failed(reason: impl Into<String>) -> Self {
        Self::Stop(Progress::Ended(Outcome::failed(reason)))
    }

    fn skipped(reason: impl Into<String>) -> Self {
        Self::Stop(Progress::Ended(Outcome::skipped(reason)))
    }
}

impl From<RancherError> for Halt {
    fn from(error: RancherError) -> Self {
        Halt::from(&error)
    }
}

impl From<&RancherError> for Halt {
    fn from(error: &RancherError) -> Self {
        match error.status() {
            Some(401 | 403) => Halt::Stop(Progress::Refused(error.to_string())),
            _ if error.is_retryable() => Halt::Stop(Progress::Later(error.to_string())),
            _ => Halt::failed(error.to_string()),
        }
    }
}

/// Where one service's upgrade is recorded, and what it is about.
pub(super) struct Upgrade<'a> {
    work: &'a UnitRecord,
    log: &'a StepLog,
    pushed: &'a ImageRef,
}

impl Upgrade<'_> {
    pub(super) fn id(&self) -> &str {
        &self.work.id
    }

    /// Writes the step; nothing is sent to Rancher for a step that could not be recorded,
    /// and the unit is resumed later from the last step that was.
    pub(super) async fn record(
        &self,
        step: Step,
        detail: Option<String>,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), Halt> {
        let record = self
            .log
            .record(step.as_str(), detail, checkpoint.map(Checkpoint::to_json));
        Box::pin(record).await.map_err(|err| {
            Halt::Stop(Progress::Later(format!(
                "{err}; stopped before acting on Rancher"
            )))
        })
    }
}

impl Upgrader {
    /// An upgrader using `client` with the bounds of `settings`.
    pub fn new(
        client: RancherClient,
        settings: UpgradeSettings,
        rule: MatchSettings,
        shutdown: ShutdownSignal,
    ) -> Self {
        let watch = StateWatch::new(client.clone(), settings.poll_interval);
        Self {
            client,
            settings,
            rule,
            shutdown,
            watch,
        }
    }

    /// Carries the service from its recorded step to an end (or to a shutdown, or a pause).
    ///
    /// `listed` is the service as listed moments ago, with the launch configs judged on
    /// it, given only when its upgrade starts at once: then it is as fresh as a new read
    /// would be, and saves a round trip. Otherwise the service is read again first.
    pub async fn drive(
        &self,
        work: &UnitRecord,
        listed: Option<Box<Listed>>,
        pushed: &ImageRef,
        log: &StepLog,
    ) -> Progress {
        let upgrade = Upgrade { work, log, pushed };
        let (step, checkpoint) = match (
            Step::parse(&work.step),
            Checkpoint::read(work.checkpoint.as_deref()),
        ) {
            (Some(step), Ok(checkpoint)) => (step, checkpoint),
            (None, _) => {
                return Progress::Ended(Outcome::failed(format!(
                    "the journal holds step {:?}, which this release does not know",
                    work.step
                )));
            }
            (_, Err(reason)) => return Progress::Ended(Outcome::failed(reason)),
        };
        let result = match self.run(&upgrade, step, &checkpoint, listed).await {
            Err(Halt::Stuck(reason)) => {
                let recovery = Recovery {
                    policy: self.settings.on_failure,
                    reason,
                    resumed: false,
                };
                Box::pin(self.recover(&upgrade, recovery)).await
            }
            other => other,
        };
        match result {
            Ok(outcome) => Progress::Ended(outcome),
            Err(Halt::Stop(progress)) => progress,
            Err(Halt::Stuck(reason)) => Progress::Ended(Outcome::failed(reason)),
        }
    }

    async fn run(
        &self,
        upgrade: &Upgrade<'_>,
        step: Step,
        checkpoint: &Checkpoint,
        listed: Option<Box<Listed>>,
    ) -> Result<Outcome, Halt> {
        let id = upgrade.id();
        match step {
            Step::Planned | Step::FinishingPrevious => {
                // Rancher replaces launch configs whole: start from a fresh copy.
                let (service, targets) = match listed {
                    Some(listed) => {
                        let Listed { service, targets } = *listed;
                        (Box::new(service), Some(targets))
                    }
                    None => (Box::new(self.client.service(id).await?), None),
                };
                // Boxed: needed only until the upgrade is posted, not while it is followed.
                let (service, targets) = Box::pin(self.prepare(upgrade, service, targets)).await?;
                self.start_upgrade(upgrade, service, &targets).await
            }
            Step::Upgrading => {
                let before = known_versions(checkpoint)?;
                let service = Box::new(self.client.service(id).await?);
                let state = Box::new(ServiceState::of(&service));
                if versions_changed(&state, before) {
                    tracing::info!(
                        service_id = id,
                        "resuming: Rancher had applied the upgrade; following it"
                    );
                    drop(service);
                    Box::pin(self.follow_upgrade(upgrade, step, state, before)).await
                } else {
                    tracing::info!(
                        service_id = id,
                        "resuming: the upgrade had not reached Rancher; starting it"
                    );
                    let (service, targets) = Box::pin(self.prepare(upgrade, service, None)).await?;
                    self.start_upgrade(upgrade, service, &targets).await
                }
            }
            Step::Finishing => {
                let before = known_versions(checkpoint)?;
                let state = Box::new(self.client.service_state(id).await?);
                Box::pin(self.follow_upgrade(upgrade, step, state, before)).await
            }
            Step::RollingBack | Step::Cancelling => {
                // A recovery resumes with the policy it was started with, whatever the
                // setting says now.
                let recovery = Recovery {
                    policy: if step == Step::RollingBack {
                        OnFailure::Rollback
                    } else {
                        OnFailure::Cancel
                    },
                    reason: checkpoint
                        .reason
                        .clone()
                        .unwrap_or_else(|| "the upgrade failed before a restart".into()),
                    resumed: true,
                };
                // Boxed, as every rare path: a unit holds its largest one all along.
                Box::pin(self.recover(upgrade, recovery)).await
            }
        }
    }

    /// Brings the service to a state that allows an upgrade, within one timeout: waits out a
    /// running process, finishes an upgrade left in `upgraded`. Returns the service as it is
    /// then, with the launch configs to upgrade judged on that copy (`targets`, when the
    /// caller judged it already).
    async fn prepare(
        &self,
        upgrade: &Upgrade<'_>,
        mut service: Box<Service>,
        mut targets: Option<Targets>,
    ) -> Result<(Box<Service>, Targets), Halt> {
        let deadline = self.deadline();
        // A process that is not ours is not rolled back or cancelled: that is a failure.
        let not_ours = |halt| match halt {
            Halt::Stuck(reason) => Halt::failed(format!("before the upgrade: {reason}")),
            other => other,
        };
        loop {
            let judged = match targets.take() {
                Some(targets) => targets,
                None => self.judge(&service, upgrade.pushed)?,
            };
            if service.is_transitioning() {
                self.wait_settled(&service.id, deadline)
                    .await
                    .map_err(not_ours)?;
                *service = self.client.service(&service.id).await?;
            } else if service.state == "upgraded" && service.actions.finishupgrade {
                if Instant::now() >= deadline {
                    return Err(Halt::failed(format!(
                        "before the upgrade: the service was left in upgraded again and again \
                         for {} s (RANCHER_UPGRADE_TIMEOUT_S); someone else is upgrading it",
                        self.settings.timeout.as_secs()
                    )));
                }
                tracing::info!(service_id = %service.id, service = service.display_name(), "finishing the upgrade left in upgraded first");
                self.check_shutdown()?;
                upgrade.record(Step::FinishingPrevious, None, None).await?;
                let finishing = self.client.finish_upgrade(&service.id).await?;
                if finishing.is_transitioning() || finishing.transition_failed() {
                    self.wait_settled(&service.id, deadline)
                        .await
                        .map_err(not_ours)?;
                }
                *service = self.client.service(&service.id).await?;
            } else if service.state == "inactive" {
                return Err(Halt::skipped(
                    "the service is inactive (stopped), and finishing an upgrade would start it; \
                     it keeps its launch config until it is started again",
                ));
            } else if service.actions.upgrade {
                return Ok((service, judged));
            } else {
                return Err(Halt::failed(not_upgradable(&service)));
            }
        }
    }

    /// Records `upgrading` with the current versions, then posts the upgrade and follows it.
    ///
    /// The service document is dropped once the request is built, and the request once it
    /// is sent: a service waiting for Rancher holds only its state.
    async fn start_upgrade(
        &self,
        upgrade: &Upgrade<'_>,
        service: Box<Service>,
        targets: &Targets,
    ) -> Result<Outcome, Halt> {
        let body = upgrade_request(&service, targets, &self.settings)
            .and_then(|request| serde_json::to_vec(&request).map_err(|err| err.to_string()))
            .map_err(Halt::failed)?;
        let versions = versions_of(&ServiceState::of(&service), targets);
        drop(service);
        self.check_shutdown()?;
        let checkpoint = Checkpoint {
            versions: Some(versions.clone()),
            reason: None,
        };
        upgrade
            .record(Step::Upgrading, None, Some(&checkpoint))
            .await?;
        drop(checkpoint);
        let answer = Box::new(self.client.upgrade(upgrade.id(), body).await?);
        tracing::debug!(service_id = %upgrade.id(), "upgrade started");
        // Boxed: what led here is dropped while the upgrade is followed.
        Box::pin(self.follow_upgrade(upgrade, Step::Upgrading, answer, &versions)).await
    }

    /// From a service whose upgrade has been posted (its launch configs had the versions
    /// `before`): wait for `upgraded` with our launch config, then finish.
    async fn follow_upgrade(
        &self,
        upgrade: &Upgrade<'_>,
        from: Step,
        mut service: Box<ServiceState>,
        before: &Versions,
    ) -> Result<Outcome, Halt> {
        let id = upgrade.id();
        let deadline = self.deadline();
        while service.is_transitioning() || service.transition_failed() {
            let seen = self.wait_settled(id, deadline).await?;
            service = match seen {
                Sighting::Listed(state) => state,
                // Active: whose launch configs it runs says whether the upgrade was ours
                // (and a read that finds it still moving waits on).
                Sighting::Active => Box::new(self.client.service_state(id).await?),
            };
        }
        let ours = versions_changed(&service, before)
            && recorded_configs_run(&service, before, upgrade.pushed);
        match service.state.as_str() {
            "upgraded" if ours => {}
            "upgraded" => {
                return Err(Halt::failed(
                    "the service is in upgraded with launch configs that are not ours \
                     (someone else upgraded it); it is left for them to finish",
                ));
            }
            // Finished already: by us before a restart, or by someone in Rancher.
            "active" if ours => return Ok(Outcome::upgraded()),
            state => {
                return Err(Halt::failed(format!(
                    "the upgrade ended in state {state} instead of upgraded"
                )));
            }
        }
        if !self.settings.finish {
            return Ok(Outcome::because(
                UnitEnd::Upgraded,
                "left in upgraded (RANCHER_FINISH_UPGRADE=false)",
            ));
        }
        self.check_shutdown()?;
        if from != Step::Finishing {
            upgrade.record(Step::Finishing, None, None).await?;
        }
        drop(service);
        // Only the state is kept of the answer while Rancher finishes.
        let (moving, mut state) = {
            let finishing = self.client.finish_upgrade(id).await?;
            let moving = finishing.is_transitioning() || finishing.transition_failed();
            (moving, finishing.state)
        };
        if moving {
            state = match self.wait_settled(id, self.deadline()).await? {
                Sighting::Active => return Ok(Outcome::upgraded()),
                Sighting::Listed(service) => service.state,
            };
        }
        if state != "active" {
            return Err(Halt::failed(format!(
                "finishing the upgrade ended in state {state} instead of active"
            )));
        }
        Ok(Outcome::upgraded())
    }

    /// The targets on a fresh copy of the service, or why it is no longer to be upgraded.
    fn judge(&self, service: &Service, pushed: &ImageRef) -> Result<Targets, Halt> {
        match matching::judge(service, pushed, &self.rule) {
            Verdict::Upgrade(targets) => Ok(targets),
            Verdict::OptedOut(reason) => Err(Halt::skipped(reason)),
            Verdict::NotRunning => Err(Halt::skipped(
                "no longer runs the image (it changed after it was listed)",
            )),
            Verdict::NoLaunchConfig | Verdict::Unreadable(_) => Err(Halt::failed(
                "the service could no longer be read after it was listed",
            )),
        }
    }

    pub(super) fn deadline(&self) -> Instant {
        Instant::now() + self.settings.timeout
    }

    pub(super) fn check_shutdown(&self) -> Result<(), Halt> {
        if self.shutdown.is_triggered() {
            Err(Halt::Stop(Progress::Interrupted))
        } else {
            Ok(())
        }
    }

    /// Waits until the service stops transitioning, at the latest until `deadline`, as the
    /// watch's polls see it; a shutdown ends the wait at once. A timeout or an error
    /// reported by Rancher is `Stuck`.
    pub(super) async fn wait_settled(&self, id: &str, deadline: Instant) -> Result<Sighting, Halt> {
        loop {
            // A poll that does not answer long past the deadline counts as the deadline.
            let patience = deadline + self.settings.poll_interval * 2;
            let seen = tokio::select! {
                seen = self.watch.next(id) => seen,
                () = tokio::time::sleep_until(patience) => {
                    return Err(Halt::Stuck(format!(
                        "no answer about it {} s after RANCHER_UPGRADE_TIMEOUT_S",
                        (self.settings.poll_interval * 2).as_secs()
                    )));
                }
                () = self.shutdown.triggered() => return Err(Halt::Stop(Progress::Interrupted)),
            };
            let service = match seen {
                Ok(Sighting::Listed(service)) => service,
                Ok(Sighting::Active) => return Ok(Sighting::Active),
                // Rancher restarting: keep polling until the deadline.
                Err(error) if error.is_retryable() && Instant::now() < deadline => {
                    tracing::warn!(service_id = %id, %error, "cannot read the service; polling on");
                    continue;
                }
                Err(error) => return Err(Halt::from(&*error)),
            };
            if service.transition_failed() {
                return Err(Halt::Stuck(format!(
                    "Rancher reported an error in state {}: {}",
                    service.state,
                    service
                        .transitioning_message
                        .as_deref()
                        .unwrap_or("no message")
                )));
            }
            if !service.is_transitioning() {
                return Ok(Sighting::Listed(service));
            }
            if Instant::now() >= deadline {
                return Err(Halt::Stuck(format!(
                    "still {} after {} s (RANCHER_UPGRADE_TIMEOUT_S)",
                    service.state,
                    self.settings.timeout.as_secs()
                )));
            }
            tracing::debug!(service_id = %id, state = %service.state, "waiting for Rancher");
        }
    }
}

/// The recorded versions, or why a resumed upgrade must not be posted again blind.
fn known_versions(checkpoint: &Checkpoint) -> Result<&Versions, Halt> {
    match &checkpoint.versions {
        Some(versions) if versions.all_known() => Ok(versions),
        _ => Err(Halt::failed(
            "resumed without a record of the launch-config versions, so it cannot be told \
             whether the upgrade reached Rancher; it is not posted again blind: check the \
             service in Rancher",
        )),
    }
}

fn not_upgradable(service: &Service) -> String {
    match service.state.as_str() {
        "canceled-upgrade" => "the service is in canceled-upgrade: continue or roll back its \
                               upgrade in Rancher first"
            .to_owned(),
        state @ ("active" | "inactive") => format!(
            "Rancher offers no upgrade action although the service is {state}: the API key may \
             lack the right to upgrade services in this environment"
        ),
        state => format!("Rancher offers no upgrade action in state {state}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_upgrade_needs_every_version_recorded() {
        let recorded =
            Checkpoint::read(Some(r#"{"versions":{"":"5","log-shipper":"2"}}"#)).unwrap();
        assert!(known_versions(&recorded).is_ok());
        assert!(known_versions(&Checkpoint::default()).is_err());
        let blank = Checkpoint::read(Some(r#"{"versions":{"":""}}"#)).unwrap();
        assert!(known_versions(&blank).is_err());
    }
}
