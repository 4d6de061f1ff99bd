//! Drives one service through Rancher's in-service upgrade: [finish a pending upgrade] →
//! upgrade with the full launch config → wait for `upgraded` → `finishupgrade` → wait for
//! `active`. Every step is written to the journal before it is taken, so an interrupted
//! upgrade is resumed where it stood and never posted twice. Every wait is bounded; a stuck
//! or failed upgrade is handled as `RANCHER_UPGRADE_ON_FAILURE` says.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::config::{MatchSettings, OnFailure, UpgradeSettings};
use crate::domain::ImageRef;
use crate::events::OutcomeResult;
use crate::journal::{JobId, Journal, Step, Versions};
use crate::platform::rancher::matching::{self, Targets, Verdict};
use crate::platform::rancher::{
    LaunchConfigView, RancherClient, RancherError, Service, UpgradeRequest,
};
use crate::shutdown::ShutdownSignal;

/// The label that makes Rancher's agent pull the image before creating a container, so a
/// re-pushed tag is really fetched again.
pub const PULL_IMAGE_LABEL: &str = "io.rancher.container.pull_image";

/// Key of the primary launch config in [`Versions`]; sidekicks go by their names.
const PRIMARY: &str = "";

/// One service of one job, as the journal has it.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// The job.
    pub job: JobId,
    /// Rancher id.
    pub service_id: String,
    /// Service name, for the log.
    pub service_name: String,
    /// The last step recorded.
    pub step: Step,
    /// Versions recorded with the `upgrading` step.
    pub versions_before: Option<Versions>,
}

/// How handling a service ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// It has an outcome, recorded in the journal.
    Done(OutcomeResult),
    /// It failed because Rancher rejected the credentials (recorded): the job fails.
    Rejected(String),
    /// The process is shutting down; the journal says where to resume.
    Interrupted,
    /// Rancher could not be reached, or the journal written, for longer than the retries;
    /// the journal says where to resume, later.
    Deferred(String),
}

/// Upgrades services, one call of [`Upgrader::upgrade`] per service.
#[derive(Debug, Clone)]
pub struct Upgrader {
    /// Rancher API.
    client: RancherClient,
    /// Strategy, polling, timeouts and what to do on failure.
    settings: UpgradeSettings,
    /// Used to check again that a service still runs the image.
    rule: MatchSettings,
    /// Where every step is recorded before it is taken.
    journal: Journal,
    /// Stops the work between two steps.
    shutdown: ShutdownSignal,
}

/// Why an upgrade stopped early.
enum Stop {
    /// It failed; nothing more to do.
    Failed(String),
    /// The upgrade is stuck or Rancher reported an error: `RANCHER_UPGRADE_ON_FAILURE` applies.
    Stuck(String),
    /// Deliberately not upgraded.
    Skipped(String),
    /// Shutting down.
    Interrupted,
    /// Rancher is unreachable (or the journal unwritable) for now: resume later.
    Deferred(String),
    /// Rancher rejected the credentials: nothing can succeed with them.
    Rejected(String),
}

impl From<RancherError> for Stop {
    fn from(error: RancherError) -> Self {
        match error.status() {
            Some(401 | 403) => Stop::Rejected(error.to_string()),
            _ if error.is_retryable() => Stop::Deferred(error.to_string()),
            _ => Stop::Failed(error.to_string()),
        }
    }
}

impl Upgrader {
    /// An upgrader using `client` with the bounds of `settings`, recording to `journal`.
    pub fn new(
        client: RancherClient,
        settings: UpgradeSettings,
        rule: MatchSettings,
        journal: Journal,
        shutdown: ShutdownSignal,
    ) -> Self {
        Self {
            client,
            settings,
            rule,
            journal,
            shutdown,
        }
    }

    /// Carries the service from its recorded step to an outcome (or to a shutdown).
    ///
    /// `listed` is the service as listed moments ago, given only when its upgrade starts at
    /// once (it waited neither for its turn nor for a slot): then it is as fresh as a new
    /// read would be, and saves a round trip. Otherwise the service is read again first.
    pub async fn upgrade(
        &self,
        assignment: &Assignment,
        listed: Option<Box<Service>>,
        pushed: &ImageRef,
    ) -> Ending {
        let result = match self.run(assignment, listed, pushed).await {
            Err(Stop::Stuck(reason)) => self.on_failure(assignment, reason).await,
            other => other,
        };
        let (step, result, rejected) = match result {
            Ok(result) => return Ending::Done(result),
            Err(Stop::Interrupted) => return Ending::Interrupted,
            Err(Stop::Deferred(reason)) => return Ending::Deferred(reason),
            Err(Stop::Skipped(reason)) => (Step::Skipped, OutcomeResult::Skipped(reason), false),
            Err(Stop::Failed(reason) | Stop::Stuck(reason)) => {
                (Step::Failed, OutcomeResult::Failed(reason), false)
            }
            Err(Stop::Rejected(reason)) => (Step::Failed, OutcomeResult::Failed(reason), true),
        };
        let reason = result.reason().unwrap_or_default().to_owned();
        if let Err(Stop::Deferred(why)) = self
            .record(assignment, step, Some(reason.clone()), None)
            .await
        {
            return Ending::Deferred(why);
        }
        if rejected {
            Ending::Rejected(reason)
        } else {
            Ending::Done(result)
        }
    }

    async fn run(
        &self,
        assignment: &Assignment,
        listed: Option<Box<Service>>,
        pushed: &ImageRef,
    ) -> Result<OutcomeResult, Stop> {
        let id = assignment.service_id.as_str();
        match assignment.step {
            Step::Planned | Step::FinishingPrevious => {
                // Rancher replaces launch configs whole: start from a fresh copy.
                let service = match listed {
                    Some(listed) => *listed,
                    None => self.client.service(id).await?,
                };
                let (service, targets) = self.prepare(assignment, service, pushed).await?;
                self.start_upgrade(assignment, &service, &targets).await
            }
            Step::Upgrading => {
                let service = self.client.service(id).await?;
                let before = assignment.versions_before.clone().unwrap_or_default();
                if versions_changed(&service, &before) {
                    tracing::info!(
                        service_id = id,
                        "resuming: Rancher had applied the upgrade; following it"
                    );
                    self.follow_upgrade(assignment, service, &before).await
                } else {
                    tracing::info!(
                        service_id = id,
                        "resuming: the upgrade had not reached Rancher; starting it"
                    );
                    let (service, targets) = self.prepare(assignment, service, pushed).await?;
                    self.start_upgrade(assignment, &service, &targets).await
                }
            }
            Step::Upgraded => {
                let service = self.client.service(id).await?;
                let before = assignment.versions_before.clone().unwrap_or_default();
                self.follow_upgrade(assignment, service, &before).await
            }
            Step::RollingBack | Step::Canceling => {
                Err(Stop::Stuck("the upgrade failed before a restart".into()))
            }
            Step::Finished => Ok(OutcomeResult::Upgraded),
            Step::LeftUpgraded => Ok(OutcomeResult::UpgradedNotFinished),
            Step::RolledBack | Step::Canceled | Step::Failed => {
                Err(Stop::Failed("ended in an earlier run".into()))
            }
            Step::Skipped => Err(Stop::Skipped("skipped in an earlier run".into())),
        }
    }

    /// Brings the service to a state that allows an upgrade, within one timeout: waits out a
    /// running process, finishes an upgrade left in `upgraded`. Returns the service as it is
    /// then, with the launch configs to upgrade judged on that copy.
    async fn prepare(
        &self,
        assignment: &Assignment,
        mut service: Service,
        pushed: &ImageRef,
    ) -> Result<(Service, Targets), Stop> {
        let deadline = self.deadline();
        loop {
            let targets = self.judge_again(&service, pushed)?;
            // A process that is not ours is not rolled back or canceled: that is a failure.
            let not_ours = |stop| match stop {
                Stop::Stuck(reason) => Stop::Failed(format!("before the upgrade: {reason}")),
                other => other,
            };
            if service.is_transitioning() {
                service = self
                    .wait_settled(&service.id, deadline)
                    .await
                    .map_err(not_ours)?;
            } else if service.state == "upgraded" && service.actions.finishupgrade {
                tracing::info!(service_id = %service.id, service = service.display_name(), "finishing the upgrade left in upgraded first");
                self.check_shutdown()?;
                self.record(assignment, Step::FinishingPrevious, None, None)
                    .await?;
                self.client.finish_upgrade(&service.id).await?;
                service = self
                    .wait_settled(&service.id, deadline)
                    .await
                    .map_err(not_ours)?;
            } else if service.state == "inactive" {
                return Err(Stop::Skipped(
                    "the service is inactive (stopped), and finishing an upgrade would start it; \
                     it keeps its launch config until it is started again"
                        .into(),
                ));
            } else if service.actions.upgrade {
                return Ok((service, targets));
            } else {
                return Err(Stop::Failed(not_upgradable(&service)));
            }
        }
    }

    /// Records `upgrading` with the current versions, then posts the upgrade and follows it.
    async fn start_upgrade(
        &self,
        assignment: &Assignment,
        service: &Service,
        targets: &Targets,
    ) -> Result<OutcomeResult, Stop> {
        let request = upgrade_request(service, targets, &self.settings).map_err(Stop::Failed)?;
        let versions = versions_of(service, targets);
        self.check_shutdown()?;
        self.record(assignment, Step::Upgrading, None, Some(&versions))
            .await?;
        let answer = self.client.upgrade(&service.id, &request).await?;
        tracing::debug!(service_id = %service.id, "upgrade started");
        self.follow_upgrade(assignment, answer, &versions).await
    }

    /// From a service whose upgrade has been applied (its launch configs no longer have the
    /// versions `before`): wait for `upgraded`, then finish.
    async fn follow_upgrade(
        &self,
        assignment: &Assignment,
        mut service: Service,
        before: &Versions,
    ) -> Result<OutcomeResult, Stop> {
        let id = assignment.service_id.as_str();
        if service.is_transitioning() || service.transition_failed() {
            service = self.wait_settled(id, self.deadline()).await?;
        }
        match service.state.as_str() {
            "upgraded" => {}
            "active" if versions_changed(&service, before) => {
                // Finished already: by us before a restart, or by someone in Rancher.
                self.record(assignment, Step::Finished, None, None).await?;
                return Ok(OutcomeResult::Upgraded);
            }
            state => {
                return Err(Stop::Failed(format!(
                    "the upgrade ended in state {state} instead of upgraded"
                )));
            }
        }
        if assignment.step != Step::Upgraded {
            self.record(assignment, Step::Upgraded, None, None).await?;
        }
        if !self.settings.finish {
            self.record(assignment, Step::LeftUpgraded, None, None)
                .await?;
            return Ok(OutcomeResult::UpgradedNotFinished);
        }
        self.check_shutdown()?;
        self.client.finish_upgrade(id).await?;
        let service = self.wait_settled(id, self.deadline()).await?;
        if service.state != "active" {
            return Err(Stop::Failed(format!(
                "finishing the upgrade ended in state {} instead of active",
                service.state
            )));
        }
        self.record(assignment, Step::Finished, None, None).await?;
        Ok(OutcomeResult::Upgraded)
    }

    /// A stuck or failed upgrade: roll back, cancel or leave it, as configured.
    async fn on_failure(
        &self,
        assignment: &Assignment,
        reason: String,
    ) -> Result<OutcomeResult, Stop> {
        let id = assignment.service_id.as_str();
        let (recovering, recovered, state_after, done) = match self.settings.on_failure {
            OnFailure::Leave => {
                return Err(Stop::Failed(format!(
                    "{reason}; left as it is (RANCHER_UPGRADE_ON_FAILURE=leave)"
                )));
            }
            OnFailure::Rollback => (
                Step::RollingBack,
                Step::RolledBack,
                "active",
                "rolled back to the previous launch config",
            ),
            OnFailure::Cancel => (
                Step::Canceling,
                Step::Canceled,
                "canceled-upgrade",
                "canceled; the service is left in canceled-upgrade",
            ),
        };
        let service = self.client.service(id).await?;
        let (in_progress, available) = match recovering {
            Step::RollingBack => ("rolling-back", service.actions.rollback),
            _ => ("canceling-upgrade", service.actions.cancelupgrade),
        };
        let resumed_after_it_ended = assignment.step == recovering
            && service.state == state_after
            && !service.is_transitioning();
        if service.state != in_progress && !resumed_after_it_ended {
            if !available {
                return Err(Stop::Failed(format!(
                    "{reason}; RANCHER_UPGRADE_ON_FAILURE could not be applied in state {}",
                    service.state
                )));
            }
            self.check_shutdown()?;
            self.record(assignment, recovering, Some(reason.clone()), None)
                .await?;
            match recovering {
                Step::RollingBack => self.client.rollback(id).await?,
                _ => self.client.cancel_upgrade(id).await?,
            };
        }
        let service = self
            .wait_settled(id, self.deadline())
            .await
            .map_err(|stop| match stop {
                Stop::Stuck(more) => {
                    Stop::Failed(format!("{reason}; recovering failed too: {more}"))
                }
                other => other,
            })?;
        if service.state != state_after {
            return Err(Stop::Failed(format!(
                "{reason}; recovering ended in state {}",
                service.state
            )));
        }
        let reason = format!("{reason}; {done}");
        self.record(assignment, recovered, Some(reason.clone()), None)
            .await?;
        Ok(OutcomeResult::Failed(reason))
    }

    /// The targets on a fresh copy of the service, or why it is no longer to be upgraded.
    fn judge_again(&self, service: &Service, pushed: &ImageRef) -> Result<Targets, Stop> {
        match matching::judge(service, pushed, &self.rule) {
            Verdict::Upgrade(targets) => Ok(targets),
            Verdict::OptedOut(reason) => Err(Stop::Skipped(reason)),
            Verdict::NotRunning => Err(Stop::Skipped(
                "no longer runs the image (it changed after it was listed)".into(),
            )),
            Verdict::NoLaunchConfig | Verdict::Unreadable(_) => Err(Stop::Failed(
                "the service could no longer be read after it was listed".into(),
            )),
        }
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.settings.timeout
    }

    fn check_shutdown(&self) -> Result<(), Stop> {
        if self.shutdown.is_triggered() {
            Err(Stop::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Writes the step; nothing is sent to Rancher for a step that could not be recorded,
    /// and the job is resumed later from the last step that was.
    async fn record(
        &self,
        assignment: &Assignment,
        step: Step,
        detail: Option<String>,
        versions: Option<&Versions>,
    ) -> Result<(), Stop> {
        self.journal
            .record_step(
                assignment.job,
                &assignment.service_id,
                step,
                detail,
                versions,
            )
            .await
            .map_err(|err| Stop::Deferred(format!("{err}; stopped before acting on Rancher")))
    }

    /// Polls until the service stops transitioning, at the latest until `deadline`; a
    /// shutdown ends the wait at once. A timeout or an error reported by Rancher is `Stuck`.
    async fn wait_settled(&self, id: &str, deadline: Instant) -> Result<Service, Stop> {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.settings.poll_interval) => {}
                () = self.shutdown.triggered() => return Err(Stop::Interrupted),
            }
            let service = match self.client.service(id).await {
                Ok(service) => service,
                // Rancher restarting: keep polling until the deadline.
                Err(error) if error.is_retryable() && Instant::now() < deadline => {
                    tracing::warn!(service_id = %id, %error, "cannot read the service; polling on");
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            if service.transition_failed() {
                return Err(Stop::Stuck(format!(
                    "Rancher reported an error in state {}: {}",
                    service.state,
                    service
                        .transitioning_message
                        .as_deref()
                        .unwrap_or("no message")
                )));
            }
            if !service.is_transitioning() {
                return Ok(service);
            }
            if Instant::now() >= deadline {
                return Err(Stop::Stuck(format!(
                    "still {} after {} s (RANCHER_UPGRADE_TIMEOUT_S)",
                    service.state,
                    self.settings.timeout.as_secs()
                )));
            }
            tracing::debug!(service_id = %id, state = %service.state, "waiting for Rancher");
        }
    }
}

/// The versions of the launch configs about to be upgraded.
fn versions_of(service: &Service, targets: &Targets) -> Versions {
    let mut versions = BTreeMap::new();
    if targets.primary {
        versions.insert(
            PRIMARY.to_owned(),
            primary_version(service).unwrap_or_default(),
        );
    }
    for (name, version) in sidekick_versions(service) {
        if targets.sidekicks.contains(&name) {
            versions.insert(name, version);
        }
    }
    Versions(versions)
}

/// Whether Rancher gave any of the recorded launch configs a new version: then it applied
/// an upgrade since they were recorded.
fn versions_changed(service: &Service, before: &Versions) -> bool {
    let sidekicks: BTreeMap<String, String> = sidekick_versions(service).collect();
    before.0.iter().any(|(name, version)| {
        let now = if name == PRIMARY {
            primary_version(service).unwrap_or_default()
        } else {
            sidekicks.get(name).cloned().unwrap_or_default()
        };
        now != *version
    })
}

fn primary_version(service: &Service) -> Option<String> {
    let raw = service.launch_config.as_deref()?;
    LaunchConfigView::read(raw).ok()?.version
}

fn sidekick_versions(service: &Service) -> impl Iterator<Item = (String, String)> + '_ {
    service
        .secondary_launch_configs
        .iter()
        .flatten()
        .filter_map(|raw| {
            let view = LaunchConfigView::read(raw).ok()?;
            Some((view.name?, view.version.unwrap_or_default()))
        })
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

/// The upgrade request for the targeted launch configs of `service`: each one whole, as
/// Rancher sent it, with the pull-image label added.
pub fn upgrade_request(
    service: &Service,
    targets: &Targets,
    settings: &UpgradeSettings,
) -> Result<UpgradeRequest, String> {
    let launch_config = match (&service.launch_config, targets.primary) {
        (Some(raw), true) => Some(with_pull_label(raw)?),
        (None, true) => return Err("the service has no launch config".into()),
        (_, false) => None,
    };
    let mut secondary_launch_configs = Vec::new();
    for raw in service.secondary_launch_configs.iter().flatten() {
        let view = LaunchConfigView::read(raw)?;
        if view
            .name
            .as_ref()
            .is_some_and(|name| targets.sidekicks.contains(name))
        {
            secondary_launch_configs.push(with_pull_label(raw)?);
        }
    }
    if secondary_launch_configs.len() != targets.sidekicks.len() {
        return Err("a targeted sidekick is no longer part of the service".into());
    }
    Ok(UpgradeRequest::in_service(
        launch_config,
        secondary_launch_configs,
        settings.batch_size,
        settings.interval_ms,
        settings.start_first,
    ))
}

fn with_pull_label(raw: &RawValue) -> Result<Map<String, Value>, String> {
    let mut config: Map<String, Value> = serde_json::from_str(raw.get())
        .map_err(|err| format!("launch config is not a JSON object: {err}"))?;
    let labels = config
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if labels.is_null() {
        *labels = Value::Object(Map::new());
    }
    let Value::Object(labels) = labels else {
        return Err("launch config labels are not an object".into());
    };
    labels.insert(PULL_IMAGE_LABEL.into(), Value::String("always".into()));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn settings() -> UpgradeSettings {
        UpgradeSettings {
            batch_size: 2,
            interval_ms: 500,
            start_first: true,
            poll_interval: Duration::from_millis(10),
            timeout: Duration::from_secs(1),
            finish: true,
            on_failure: crate::config::OnFailure::Rollback,
        }
    }

    #[test]
    fn the_request_carries_every_key_and_adds_the_pull_label() {
        let original = json!({
            "imageUuid": "docker:nginx", "labels": { "a": "1" }, "environment": { "X": "y" },
            "ports": ["80:80/tcp"], "dataVolumes": ["/data:/data"], "healthCheck": { "port": 80 },
            "version": "0"
        });
        let service = Service::decode(
            json!({ "id": "1s1", "launchConfig": original, "secondaryLaunchConfigs": [
                { "name": "side", "imageUuid": "docker:busybox", "labels": null }
            ] })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let targets = Targets {
            primary: true,
            sidekicks: vec!["side".into()],
        };
        let body = serde_json::to_value(upgrade_request(&service, &targets, &settings()).unwrap())
            .unwrap();
        let strategy = &body["inServiceStrategy"];
        let sent = strategy["launchConfig"].as_object().unwrap();
        for (key, value) in original.as_object().unwrap() {
            if key != "labels" {
                assert_eq!(&sent[key], value, "{key}");
            }
        }
        assert_eq!(
            sent["labels"],
            json!({ "a": "1", PULL_IMAGE_LABEL: "always" })
        );
        assert_eq!(
            strategy["secondaryLaunchConfigs"][0]["labels"],
            json!({ PULL_IMAGE_LABEL: "always" })
        );
        assert_eq!(strategy["batchSize"], 2);
        assert_eq!(strategy["intervalMillis"], 500);
        assert_eq!(strategy["startFirst"], true);
        assert_eq!(body["toServiceStrategy"], Value::Null);
    }

    #[test]
    fn only_targeted_launch_configs_are_sent() {
        let service = Service::decode(
            json!({ "id": "1s1", "launchConfig": { "imageUuid": "docker:app" }, "secondaryLaunchConfigs": [
                { "name": "a", "imageUuid": "docker:x" }, { "name": "b", "imageUuid": "docker:y" }
            ] })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let targets = Targets {
            primary: false,
            sidekicks: vec!["b".into()],
        };
        let body = serde_json::to_value(upgrade_request(&service, &targets, &settings()).unwrap())
            .unwrap();
        assert!(body["inServiceStrategy"].get("launchConfig").is_none());
        assert_eq!(
            body["inServiceStrategy"]["secondaryLaunchConfigs"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            body["inServiceStrategy"]["secondaryLaunchConfigs"][0]["name"],
            "b"
        );
    }

    #[test]
    fn labels_of_the_wrong_shape_are_refused() {
        let raw = RawValue::from_string(r#"{"labels":["x"]}"#.into()).unwrap();
        assert!(with_pull_label(&raw).is_err());
    }
}
