//! Drives one service through Rancher's in-service upgrade: [finish a pending upgrade] →
//! upgrade with the full launch config → wait for `upgraded` → `finishupgrade` → wait for
//! `active`. Every step is recorded before it is taken, with the launch-config versions as
//! its checkpoint, so an interrupted upgrade is resumed where it stood and never posted
//! twice. Every wait is bounded; a stuck or failed upgrade is handled as
//! `RANCHER_UPGRADE_ON_FAILURE` says, and a resumed recovery follows the policy it was
//! started with.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::matching::{self, Targets, Verdict};
use super::{LaunchConfigView, Listed, RancherClient, RancherError, Service, UpgradeRequest};
use crate::config::{MatchSettings, OnFailure, UpgradeSettings};
use crate::domain::{ImageRef, Outcome, UnitEnd};
use crate::platform::{Progress, StepLog, UnitWork};
use crate::shutdown::ShutdownSignal;

/// The label that makes Rancher's agent pull the image before creating a container, so a
/// re-pushed tag is really fetched again.
pub const PULL_IMAGE_LABEL: &str = "io.rancher.container.pull_image";

/// Key of the primary launch config in [`Versions`]; sidekicks go by their names.
const PRIMARY: &str = "";

/// The steps of a Rancher upgrade, as the journal records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Nothing sent to Rancher yet.
    Planned,
    /// Finishing an upgrade someone left in `upgraded`, before ours.
    FinishingPrevious,
    /// Our upgrade is being (or has been) posted.
    Upgrading,
    /// Rancher reached `upgraded` with our launch config; `finishupgrade` is being posted.
    Finishing,
    /// A failed upgrade is being rolled back.
    RollingBack,
    /// A failed upgrade is being cancelled.
    Cancelling,
}

impl Step {
    const ALL: [Step; 6] = [
        Step::Planned,
        Step::FinishingPrevious,
        Step::Upgrading,
        Step::Finishing,
        Step::RollingBack,
        Step::Cancelling,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Planned => crate::journal::PLANNED,
            Self::FinishingPrevious => "finishing-previous",
            Self::Upgrading => "upgrading",
            Self::Finishing => "finishing",
            Self::RollingBack => "rolling-back",
            Self::Cancelling => "cancelling",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|step| step.as_str() == name)
    }
}

/// The `version` of each launch config about to be upgraded (`""` for the primary, the
/// sidekick's name otherwise). Rancher gives every upgraded launch config a new version.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
struct Versions(BTreeMap<String, String>);

impl Versions {
    /// Whether every version is known: only then can a resumed job tell whether Rancher
    /// applied an upgrade whose answer it never saw.
    fn all_known(&self) -> bool {
        !self.0.is_empty() && self.0.values().all(|version| !version.is_empty())
    }
}

/// What the journal keeps with a step: the versions before our upgrade, and the reason a
/// recovery was started for.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Checkpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    versions: Option<Versions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl Checkpoint {
    fn read(text: Option<&str>) -> Result<Self, String> {
        match text {
            None => Ok(Self::default()),
            Some(text) => serde_json::from_str(text)
                .map_err(|err| format!("the journal's checkpoint is unreadable: {err}")),
        }
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Upgrades services, one call of [`Upgrader::drive`] per service.
#[derive(Debug, Clone)]
pub struct Upgrader {
    /// Rancher API.
    client: RancherClient,
    /// Strategy, polling, timeouts and what to do on failure.
    settings: UpgradeSettings,
    /// Used to check again that a service still runs the image.
    rule: MatchSettings,
    /// Stops the work between two steps.
    shutdown: ShutdownSignal,
}

/// Why an upgrade stopped before its end.
enum Halt {
    /// The upgrade is stuck or Rancher reported an error: `RANCHER_UPGRADE_ON_FAILURE` applies.
    Stuck(String),
    /// Nothing more to do now.
    Stop(Progress),
}

impl Halt {
    fn failed(reason: impl Into<String>) -> Self {
        Self::Stop(Progress::Ended(Outcome::failed(reason)))
    }

    fn skipped(reason: impl Into<String>) -> Self {
        Self::Stop(Progress::Ended(Outcome::skipped(reason)))
    }
}

impl From<RancherError> for Halt {
    fn from(error: RancherError) -> Self {
        match error.status() {
            Some(401 | 403) => Halt::Stop(Progress::Refused(error.to_string())),
            _ if error.is_retryable() => Halt::Stop(Progress::Later(error.to_string())),
            _ => Halt::failed(error.to_string()),
        }
    }
}

/// Where one service's upgrade is recorded, and what it is about.
struct Upgrade<'a> {
    work: &'a UnitWork,
    log: &'a StepLog,
    pushed: &'a ImageRef,
}

impl Upgrade<'_> {
    fn id(&self) -> &str {
        &self.work.unit.id
    }

    /// Writes the step; nothing is sent to Rancher for a step that could not be recorded,
    /// and the unit is resumed later from the last step that was.
    async fn record(
        &self,
        step: Step,
        detail: Option<String>,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), Halt> {
        self.log
            .record(step.as_str(), detail, checkpoint.map(Checkpoint::to_json))
            .await
            .map_err(|err| {
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
        Self {
            client,
            settings,
            rule,
            shutdown,
        }
    }

    /// Carries the service from its recorded step to an end (or to a shutdown, or a pause).
    ///
    /// `listed` is the service as listed moments ago, with the launch configs judged on
    /// it, given only when its upgrade starts at once: then it is as fresh as a new read
    /// would be, and saves a round trip. Otherwise the service is read again first.
    pub async fn drive(
        &self,
        work: &UnitWork,
        listed: Option<Listed>,
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
                    versions: checkpoint.versions,
                    resumed: false,
                };
                self.recover(&upgrade, recovery).await
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
        listed: Option<Listed>,
    ) -> Result<Outcome, Halt> {
        let id = upgrade.id();
        match step {
            Step::Planned | Step::FinishingPrevious => {
                // Rancher replaces launch configs whole: start from a fresh copy.
                let (service, targets) = match listed {
                    Some(listed) => (listed.service, Some(listed.targets)),
                    None => (self.client.service(id).await?, None),
                };
                let (service, targets) = self.prepare(upgrade, service, targets).await?;
                self.start_upgrade(upgrade, &service, &targets).await
            }
            Step::Upgrading => {
                let before = known_versions(checkpoint)?;
                let service = self.client.service(id).await?;
                if versions_changed(&service, before) {
                    tracing::info!(
                        service_id = id,
                        "resuming: Rancher had applied the upgrade; following it"
                    );
                    self.follow_upgrade(upgrade, step, service, before).await
                } else {
                    tracing::info!(
                        service_id = id,
                        "resuming: the upgrade had not reached Rancher; starting it"
                    );
                    let (service, targets) = self.prepare(upgrade, service, None).await?;
                    self.start_upgrade(upgrade, &service, &targets).await
                }
            }
            Step::Finishing => {
                let before = known_versions(checkpoint)?;
                let service = self.client.service(id).await?;
                self.follow_upgrade(upgrade, step, service, before).await
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
                    versions: checkpoint.versions.clone(),
                    resumed: true,
                };
                self.recover(upgrade, recovery).await
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
        mut service: Service,
        mut targets: Option<Targets>,
    ) -> Result<(Service, Targets), Halt> {
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
                service = self
                    .wait_settled(&service.id, deadline)
                    .await
                    .map_err(not_ours)?;
            } else if service.state == "upgraded" && service.actions.finishupgrade {
                if Instant::now() >= deadline {
                    return Err(Halt::failed(format!(
                        "before the upgrade: the service was left in upgraded again and again                          for {} s (RANCHER_UPGRADE_TIMEOUT_S); someone else is upgrading it",
                        self.settings.timeout.as_secs()
                    )));
                }
                tracing::info!(service_id = %service.id, service = service.display_name(), "finishing the upgrade left in upgraded first");
                self.check_shutdown()?;
                upgrade.record(Step::FinishingPrevious, None, None).await?;
                self.client.finish_upgrade(&service.id).await?;
                service = self
                    .wait_settled(&service.id, deadline)
                    .await
                    .map_err(not_ours)?;
            } else if service.state == "inactive" {
                return Err(Halt::skipped(
                    "the service is inactive (stopped), and finishing an upgrade would start it;                      it keeps its launch config until it is started again",
                ));
            } else if service.actions.upgrade {
                return Ok((service, judged));
            } else {
                return Err(Halt::failed(not_upgradable(&service)));
            }
        }
    }

    /// Records `upgrading` with the current versions, then posts the upgrade and follows it.
    async fn start_upgrade(
        &self,
        upgrade: &Upgrade<'_>,
        service: &Service,
        targets: &Targets,
    ) -> Result<Outcome, Halt> {
        let request = upgrade_request(service, targets, &self.settings).map_err(Halt::failed)?;
        let versions = versions_of(service, targets);
        self.check_shutdown()?;
        let checkpoint = Checkpoint {
            versions: Some(versions.clone()),
            reason: None,
        };
        upgrade
            .record(Step::Upgrading, None, Some(&checkpoint))
            .await?;
        let answer = self.client.upgrade(&service.id, &request).await?;
        drop(request);
        tracing::debug!(service_id = %service.id, "upgrade started");
        self.follow_upgrade(upgrade, Step::Upgrading, answer, &versions)
            .await
    }

    /// From a service whose upgrade has been posted (its launch configs had the versions
    /// `before`): wait for `upgraded` with our launch config, then finish.
    async fn follow_upgrade(
        &self,
        upgrade: &Upgrade<'_>,
        from: Step,
        mut service: Service,
        before: &Versions,
    ) -> Result<Outcome, Halt> {
        let id = upgrade.id();
        if service.is_transitioning() || service.transition_failed() {
            service = self.wait_settled(id, self.deadline()).await?;
        }
        let ours = versions_changed(&service, before);
        match service.state.as_str() {
            "upgraded" if ours => {}
            "upgraded" => {
                return Err(Halt::failed(
                    "the service is in upgraded with launch configs that are not ours                      (someone else upgraded it); it is left for them to finish",
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
        self.client.finish_upgrade(id).await?;
        let service = self.wait_settled(id, self.deadline()).await?;
        if service.state != "active" {
            return Err(Halt::failed(format!(
                "finishing the upgrade ended in state {} instead of active",
                service.state
            )));
        }
        Ok(Outcome::upgraded())
    }

    /// A stuck or failed upgrade: roll back, cancel or leave it, as `recovery.policy` says.
    async fn recover(&self, upgrade: &Upgrade<'_>, recovery: Recovery) -> Result<Outcome, Halt> {
        let id = upgrade.id();
        let Recovery {
            policy,
            reason,
            versions,
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
        let service = self.client.service(id).await?;
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
                versions,
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
        let service = self
            .wait_settled(id, self.deadline())
            .await
            .map_err(|halt| match halt {
                Halt::Stuck(more) => {
                    Halt::failed(format!("{reason}; recovering failed too: {more}"))
                }
                other => other,
            })?;
        if service.state != state_after {
            return Err(Halt::failed(format!(
                "{reason}; recovering ended in state {}",
                service.state
            )));
        }
        Ok(Outcome::because(end, format!("{reason}; {done}")))
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

    fn deadline(&self) -> Instant {
        Instant::now() + self.settings.timeout
    }

    fn check_shutdown(&self) -> Result<(), Halt> {
        if self.shutdown.is_triggered() {
            Err(Halt::Stop(Progress::Interrupted))
        } else {
            Ok(())
        }
    }

    /// Polls until the service stops transitioning, at the latest until `deadline`; a
    /// shutdown ends the wait at once. A timeout or an error reported by Rancher is `Stuck`.
    async fn wait_settled(&self, id: &str, deadline: Instant) -> Result<Service, Halt> {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.settings.poll_interval) => {}
                () = self.shutdown.triggered() => return Err(Halt::Stop(Progress::Interrupted)),
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
                return Ok(service);
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

/// What to do about a failed upgrade, and why.
struct Recovery {
    /// Roll back, cancel or leave.
    policy: OnFailure,
    /// What went wrong.
    reason: String,
    /// The versions before our upgrade, kept in the checkpoint.
    versions: Option<Versions>,
    /// Resumed after a restart from a recorded recovery step.
    resumed: bool,
}

/// The recorded versions, or why a resumed upgrade must not be posted again blind.
fn known_versions(checkpoint: &Checkpoint) -> Result<&Versions, Halt> {
    match &checkpoint.versions {
        Some(versions) if versions.all_known() => Ok(versions),
        _ => Err(Halt::failed(
            "resumed without a record of the launch-config versions, so it cannot be told              whether the upgrade reached Rancher; it is not posted again blind: check the              service in Rancher",
        )),
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
    fn unknown_versions_are_never_taken_for_a_record() {
        assert!(!Versions::default().all_known());
        assert!(!Versions([(PRIMARY.to_owned(), String::new())].into()).all_known());
        assert!(Versions([(PRIMARY.to_owned(), "3".to_owned())].into()).all_known());
        let checkpoint =
            Checkpoint::read(Some(r#"{"versions":{"":"5","log-shipper":"2"}}"#)).unwrap();
        assert!(known_versions(&checkpoint).is_ok());
        assert!(known_versions(&Checkpoint::default()).is_err());
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
