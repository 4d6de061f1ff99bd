//! What an upgrade reads of a service while it waits: its state, the actions it offers, and
//! the image, name and version of each launch config — never the launch configs themselves,
//! so a service waiting for Rancher costs a few hundred bytes, whatever its size.

use serde::Deserialize;

use super::wire::ServiceActions;
use super::{LaunchConfigView, Service};

/// A service's state, decoded without its launch configs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceState {
    /// Obfuscated id such as `1s6`.
    pub id: String,
    /// Lifecycle state: `active`, `upgrading`, `upgraded`, …
    #[serde(default)]
    pub state: String,
    /// `yes` while a process runs, `error` when it failed, `no` otherwise.
    #[serde(default)]
    pub transitioning: Option<String>,
    /// Rancher's progress or error text while transitioning.
    #[serde(default)]
    pub transitioning_message: Option<String>,
    /// The actions the current state allows.
    #[serde(default)]
    pub actions: ServiceActions,
    /// The primary launch config's image and version.
    #[serde(default)]
    launch_config: Option<LaunchConfigVersion>,
    /// Each sidekick's name, image and version.
    #[serde(default)]
    secondary_launch_configs: Option<Vec<LaunchConfigVersion>>,
}

/// The image, name and version of one launch config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LaunchConfigVersion {
    /// `docker:<reference>`.
    #[serde(default)]
    pub image_uuid: Option<String>,
    /// The sidekick's name (absent on the primary launch config).
    #[serde(default)]
    pub name: Option<String>,
    /// Rancher's version of the launch config; every upgrade gives it a new one.
    #[serde(default)]
    pub version: Option<String>,
}

impl From<LaunchConfigView> for LaunchConfigVersion {
    fn from(view: LaunchConfigView) -> Self {
        Self {
            image_uuid: view.image_uuid,
            name: view.name,
            version: view.version,
        }
    }
}

/// Key of the primary launch config among a service's launch configs; sidekicks go by
/// their names.
pub const PRIMARY: &str = "";

impl ServiceState {
    /// Decodes a service document, reading only what a waiting upgrade needs.
    pub fn decode(body: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(body).map_err(|err| format!("not a readable service: {err}"))
    }

    /// The state of a service read whole.
    pub fn of(service: &Service) -> Self {
        let read = |raw: &serde_json::value::RawValue| {
            LaunchConfigView::read(raw)
                .map(LaunchConfigVersion::from)
                .unwrap_or_default()
        };
        Self {
            id: service.id.clone(),
            state: service.state.clone(),
            transitioning: service.transitioning.clone(),
            transitioning_message: service.transitioning_message.clone(),
            actions: service.actions.clone(),
            launch_config: service.launch_config.as_deref().map(read),
            secondary_launch_configs: service
                .secondary_launch_configs
                .as_ref()
                .map(|sidekicks| sidekicks.iter().map(|raw| read(raw)).collect()),
        }
    }

    /// Whether Rancher is in the middle of a process on this service.
    pub fn is_transitioning(&self) -> bool {
        self.transitioning.as_deref() == Some("yes")
    }

    /// Whether Rancher's last process on this service failed.
    pub fn transition_failed(&self) -> bool {
        self.transitioning.as_deref() == Some("error")
    }

    /// The launch config of `key`: [`PRIMARY`], or a sidekick's name.
    pub fn launch_config(&self, key: &str) -> Option<&LaunchConfigVersion> {
        if key == PRIMARY {
            self.launch_config.as_ref()
        } else {
            self.secondary_launch_configs
                .iter()
                .flatten()
                .find(|sidekick| sidekick.name.as_deref() == Some(key))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_versions_images_and_names_are_kept_of_the_launch_configs() {
        let document = json!({
            "id": "1s1", "state": "upgrading", "transitioning": "yes",
            "actions": { "rollback": "…" },
            "launchConfig": { "imageUuid": "docker:web", "version": "3", "environment": { "A": "b" } },
            "secondaryLaunchConfigs": [{ "name": "side", "imageUuid": "docker:side", "version": "1" }]
        });
        let bytes = document.to_string();
        let state = ServiceState::decode(bytes.as_bytes()).unwrap();
        assert!(state.is_transitioning() && state.actions.rollback);
        assert_eq!(
            state.launch_config(PRIMARY).unwrap().version.as_deref(),
            Some("3")
        );
        assert_eq!(
            state.launch_config("side").unwrap().image_uuid.as_deref(),
            Some("docker:side")
        );
        assert!(state.launch_config("other").is_none());
        let whole = Service::decode(bytes.as_bytes()).unwrap();
        assert_eq!(
            ServiceState::of(&whole)
                .launch_config("side")
                .unwrap()
                .version,
            state.launch_config("side").unwrap().version
        );
    }
}
