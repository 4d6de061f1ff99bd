//! Drives one service through Rancher's in-service upgrade: [finish a pending upgrade] →
//! upgrade with the full launch config → wait for `upgraded` → `finishupgrade` → wait for
//! `active`. Every wait is bounded; every way out is an [`OutcomeResult`].

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::config::{MatchSettings, UpgradeSettings};
use crate::domain::ImageRef;
use crate::matching::{self, Targets, Verdict};
use crate::outcome::OutcomeResult;
use crate::planner::UpgradePlan;
use crate::rancher::{LaunchConfigView, RancherClient, RancherError, Service, UpgradeRequest};

/// The label that makes Rancher's agent pull the image before creating a container, so a
/// re-pushed tag is really fetched again.
pub const PULL_IMAGE_LABEL: &str = "io.rancher.container.pull_image";

/// Upgrades services, one call of [`Upgrader::upgrade`] per service.
#[derive(Debug, Clone)]
pub struct Upgrader {
    /// Rancher API.
    client: RancherClient,
    /// Strategy, polling and timeouts.
    settings: UpgradeSettings,
    /// Used to check again that a service still runs the image after waiting for it.
    rule: MatchSettings,
}

/// Why an upgrade stopped early; becomes [`OutcomeResult::Failed`] or `Skipped`.
enum Stop {
    Failed(String),
    Skipped(String),
}

impl From<RancherError> for Stop {
    fn from(error: RancherError) -> Self {
        Stop::Failed(error.to_string())
    }
}

impl Upgrader {
    /// An upgrader using `client`, with the strategy and bounds of `settings`.
    pub fn new(client: RancherClient, settings: UpgradeSettings, rule: MatchSettings) -> Self {
        Self {
            client,
            settings,
            rule,
        }
    }

    /// Carries the plan through to the end and says how it ended.
    pub async fn upgrade(&self, plan: UpgradePlan, pushed: &ImageRef) -> OutcomeResult {
        match self.run(plan, pushed).await {
            Ok(result) => result,
            Err(Stop::Failed(reason)) => OutcomeResult::Failed(reason),
            Err(Stop::Skipped(reason)) => OutcomeResult::Skipped(reason),
        }
    }

    async fn run(&self, plan: UpgradePlan, pushed: &ImageRef) -> Result<OutcomeResult, Stop> {
        // The listed copy may be old by now (the service waited for its turn or a slot), and
        // Rancher replaces launch configs whole: the request is built from a fresh read.
        let service = self.client.service(&plan.service_id).await?;
        let (service, targets) = self.prepare(service, pushed).await?;
        let id = service.id.clone();
        let request = upgrade_request(&service, &targets, &self.settings).map_err(Stop::Failed)?;
        self.client.upgrade(&id, &request).await?;
        tracing::debug!(service_id = %id, "upgrade started");

        let service = self.wait_settled(&id, self.deadline()).await?;
        if service.state != "upgraded" {
            return Err(Stop::Failed(format!(
                "the upgrade ended in state {} instead of upgraded",
                service.state
            )));
        }
        if !self.settings.finish {
            return Ok(OutcomeResult::UpgradedNotFinished);
        }
        self.finish(&id, self.deadline()).await?;
        Ok(OutcomeResult::Upgraded)
    }

    /// Brings the service to a state that allows an upgrade, within one timeout: waits out a
    /// running process, finishes an upgrade left in `upgraded`. Returns the service as it is
    /// then, with the launch configs to upgrade judged on that copy.
    async fn prepare(
        &self,
        mut service: Service,
        pushed: &ImageRef,
    ) -> Result<(Service, Targets), Stop> {
        let deadline = self.deadline();
        loop {
            let targets = self.judge_again(&service, pushed)?;
            if service.is_transitioning() {
                service = self.wait_settled(&service.id, deadline).await?;
            } else if service.state == "upgraded" && service.actions.finishupgrade {
                tracing::info!(service_id = %service.id, service = service.display_name(), "finishing the upgrade left in upgraded first");
                service = self.finish(&service.id, deadline).await?;
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

    /// Posts `finishupgrade` and waits for `active`.
    async fn finish(&self, id: &str, deadline: Instant) -> Result<Service, Stop> {
        self.client.finish_upgrade(id).await?;
        let service = self.wait_settled(id, deadline).await?;
        if service.state != "active" {
            return Err(Stop::Failed(format!(
                "finishing the upgrade ended in state {} instead of active",
                service.state
            )));
        }
        Ok(service)
    }

    /// Polls until the service stops transitioning, at the latest until `deadline`.
    async fn wait_settled(&self, id: &str, deadline: Instant) -> Result<Service, Stop> {
        loop {
            tokio::time::sleep(self.settings.poll_interval).await;
            let service = self.client.service(id).await?;
            if service.transition_failed() {
                return Err(Stop::Failed(format!(
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
                return Err(Stop::Failed(format!(
                    "still {} after {} s (RANCHER_UPGRADE_TIMEOUT_S); left as it is, finish or \
                     roll it back in Rancher",
                    service.state,
                    self.settings.timeout.as_secs()
                )));
            }
            tracing::debug!(service_id = %id, state = %service.state, "waiting for Rancher");
        }
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
            max_concurrent: 1,
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
