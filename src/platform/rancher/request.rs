//! The body of an in-service upgrade: each targeted launch config whole, as Rancher sent
//! it (Rancher *replaces* launch configs), with the label that makes its agent pull the
//! image again.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::matching::Targets;
use super::{LaunchConfigView, Service, UpgradeRequest};
use crate::config::UpgradeSettings;

/// The label that makes Rancher's agent pull the image before creating a container, so a
/// re-pushed tag is really fetched again.
pub const PULL_IMAGE_LABEL: &str = "io.rancher.container.pull_image";

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
