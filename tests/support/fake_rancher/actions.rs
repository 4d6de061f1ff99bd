//! What each action does to a service: an upgrade replaces the launch configs it names and
//! issues new versions, a rollback restores the previous ones, and every action starts the
//! process that moves the service on.

use std::collections::HashSet;

use serde_json::{Value, json};
use warp::http::StatusCode;

use super::collection::render;
use super::errors::{error, not_available};
use super::states::{KNOWN_ACTIONS, UPGRADE_STATES, actions_for};
use super::store::World;

impl World {
    /// Applies `action` to the service at `index`, if its state allows it.
    pub(super) fn action(
        &mut self,
        index: usize,
        action: &str,
        body: &[u8],
        base: &str,
    ) -> (StatusCode, Value) {
        if !KNOWN_ACTIONS.contains(&action) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "InvalidAction",
                None,
                Some("action"),
            );
        }
        let state = self.services[index].document["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !actions_for(&state).contains(&action) {
            return not_available();
        }
        let finish_time = self.behaviour.finish_time;
        match action {
            "upgrade" => {
                let body: Value = match serde_json::from_slice(body) {
                    Ok(body) => body,
                    Err(_) => {
                        return error(StatusCode::BAD_REQUEST, "InvalidBodyContent", None, None);
                    }
                };
                if let Err(reply) = self.upgrade(index, &body) {
                    return reply;
                }
                self.ever_upgrading.insert(index);
                let upgrading_elsewhere = self
                    .ever_upgrading
                    .iter()
                    .filter(|&&other| {
                        other != index
                            && UPGRADE_STATES.contains(
                                &self.services[other].document["state"]
                                    .as_str()
                                    .unwrap_or_default(),
                            )
                    })
                    .count();
                self.most_upgrading_at_once = self.most_upgrading_at_once.max(upgrading_elsewhere);
                let upgrade_time = self.behaviour.upgrade_time;
                self.start_process(index, "upgrading", "upgraded", upgrade_time);
            }
            "finishupgrade" => {
                self.start_process(index, "finishing-upgrade", "active", finish_time)
            }
            "rollback" => {
                if let Some((primary, secondaries)) = self.services[index].previous.take() {
                    let document = self.services[index].document.edit();
                    document.insert("launchConfig".into(), primary);
                    document.insert("secondaryLaunchConfigs".into(), secondaries);
                }
                self.services[index].stuck = false;
                self.services[index].failing = false;
                self.start_process(index, "rolling-back", "active", finish_time);
            }
            "cancelupgrade" => {
                self.services[index].stuck = false;
                self.start_process(index, "canceling-upgrade", "canceled-upgrade", finish_time);
            }
            _ => return not_available(),
        }
        (StatusCode::ACCEPTED, render(&self.services[index], base))
    }

    /// Replaces the launch configs the upgrade names, after Rancher's checks of the body.
    fn upgrade(&mut self, index: usize, body: &Value) -> Result<(), (StatusCode, Value)> {
        let strategy = &body["inServiceStrategy"];
        if strategy.is_null() && body["toServiceStrategy"].is_null() {
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "MissingRequired",
                None,
                Some("Upgrade strategy needs to be set"),
            ));
        }
        let primary = strategy.get("launchConfig").filter(|v| !v.is_null());
        let secondaries = strategy
            .get("secondaryLaunchConfigs")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty());
        if primary.is_none() && secondaries.is_none() {
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "InvalidOption",
                None,
                Some(
                    "LaunchConfig/secondaryLaunchConfigs need to be specified for inService strategy",
                ),
            ));
        }
        let known: HashSet<String> = self.services[index].document["secondaryLaunchConfigs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect();
        for sidekick in secondaries.into_iter().flatten() {
            if !sidekick["name"]
                .as_str()
                .is_some_and(|name| known.contains(name))
            {
                return Err(error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "InvalidOption",
                    None,
                    Some("secondaryLaunchConfigs"),
                ));
            }
        }
        if strategy["startFirst"] == true && self.services[index].document["retainIp"] == true {
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "InvalidOption",
                None,
                Some("StartFirst option can't be used for service with retainIp field set"),
            ));
        }
        let id = self.services[index].document["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.upgrade_bodies.push((id, body.clone()));
        let before = (
            self.services[index].document["launchConfig"].clone(),
            self.services[index].document["secondaryLaunchConfigs"].clone(),
        );
        if let Some(primary) = primary {
            let config = self.issue_version(primary);
            self.services[index]
                .document
                .edit()
                .insert("launchConfig".into(), config);
        }
        for sidekick in secondaries.into_iter().flatten() {
            let config = self.issue_version(sidekick);
            if let Some(Value::Array(current)) = self.services[index]
                .document
                .edit()
                .get_mut("secondaryLaunchConfigs")
            {
                for slot in current
                    .iter_mut()
                    .filter(|slot| slot["name"] == sidekick["name"])
                {
                    *slot = config.clone();
                }
            }
        }
        let document = &self.services[index].document;
        let record = json!({ "inServiceStrategy": {
                "batchSize": strategy["batchSize"], "intervalMillis": strategy["intervalMillis"],
                "startFirst": strategy["startFirst"], "launchConfig": document["launchConfig"],
                "previousLaunchConfig": before.0, "previousSecondaryLaunchConfigs": before.1,
                "secondaryLaunchConfigs": document["secondaryLaunchConfigs"],
            }, "toServiceStrategy": null });
        self.services[index]
            .document
            .edit()
            .insert("upgrade".into(), record);
        self.services[index].previous = Some(before);
        Ok(())
    }

    /// The config as sent, minus what clients may not set, with a fresh `version`.
    fn issue_version(&mut self, sent: &Value) -> Value {
        self.versions_issued += 1;
        let mut config = sent.clone();
        if let Some(map) = config.as_object_mut() {
            map.insert(
                "version".into(),
                json!(format!(
                    "{:08x}-7e57-4000-8000-{:012x}",
                    self.versions_issued, self.versions_issued
                )),
            );
        }
        config
    }
}
