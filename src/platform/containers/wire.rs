//! The parts of the Engine's answers about containers and images that autoredeploy reads.
//! The inspect documents themselves are kept as JSON, so that a new container is made
//! from every field the engine gave, including those newer than this code.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

/// An entry of `GET /containers/json`.
#[derive(Debug, Deserialize)]
pub(super) struct ListedContainer {
    /// Its id.
    #[serde(rename = "Id")]
    pub id: String,
    /// Its names, each with a leading `/`.
    #[serde(rename = "Names", default)]
    pub names: Vec<String>,
    /// The reference it was created from, or the id of its image once that reference
    /// names another image.
    #[serde(rename = "Image", default)]
    pub image: String,
    /// The id of its image.
    #[serde(rename = "ImageID", default)]
    pub image_id: String,
    /// Its labels.
    #[serde(rename = "Labels", default)]
    pub labels: Option<HashMap<String, String>>,
    /// The part of its host configuration the list shows.
    #[serde(rename = "HostConfig", default)]
    pub host_config: ListedHostConfig,
}

/// The host configuration of a listed container: its network mode only.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ListedHostConfig {
    /// `bridge`, `host`, a network's name, `container:<name or id>`, …
    #[serde(rename = "NetworkMode", default)]
    pub network_mode: String,
}

impl ListedContainer {
    /// Its name, without the leading `/`.
    pub fn name(&self) -> Option<&str> {
        self.names
            .iter()
            .map(|name| name.trim_start_matches('/'))
            .find(|name| !name.contains('/'))
    }
}

/// What autoredeploy reads of `GET /containers/{id}/json`.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct ContainerView {
    #[serde(rename = "Id")]
    pub id: String,
    /// `/name`.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// The id of the image it runs.
    #[serde(rename = "Image", default)]
    pub image_id: String,
    #[serde(rename = "Config")]
    pub config: ConfigView,
    #[serde(rename = "State")]
    pub state: StateView,
    #[serde(rename = "RestartCount", default)]
    pub restart_count: u64,
    #[serde(rename = "HostConfig", default)]
    pub host_config: HostConfigView,
}

impl ContainerView {
    /// Its name, without the leading `/`.
    pub fn name(&self) -> &str {
        self.name.trim_start_matches('/')
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct ConfigView {
    /// The reference it was created from.
    #[serde(rename = "Image", default)]
    pub image: String,
    #[serde(rename = "Labels", default)]
    pub labels: Option<HashMap<String, String>>,
    /// Seconds the engine waits after the stop signal before it kills; `-1` waits for
    /// ever.
    #[serde(rename = "StopTimeout", default)]
    pub stop_timeout: Option<i64>,
}

/// Time the engine gives a container to stop when it sets none itself.
const ENGINE_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest stop waited for, when a container asks to wait for ever.
const LONGEST_STOP: Duration = Duration::from_secs(3600);

impl ConfigView {
    /// How long the engine lets the container take to stop.
    pub fn stop_timeout(&self) -> Duration {
        match self.stop_timeout {
            None => ENGINE_STOP_TIMEOUT,
            Some(seconds) => u64::try_from(seconds).map_or(LONGEST_STOP, Duration::from_secs),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct HostConfigView {
    /// The restart policy, kept whole to be put back.
    #[serde(rename = "RestartPolicy", default)]
    pub restart_policy: Value,
    /// Started with `--rm`: the engine removes it once it stops.
    #[serde(rename = "AutoRemove", default)]
    pub auto_remove: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct StateView {
    #[serde(rename = "Running", default)]
    pub running: bool,
    #[serde(rename = "Restarting", default)]
    pub restarting: bool,
    #[serde(rename = "ExitCode", default)]
    pub exit_code: i64,
    #[serde(rename = "Error", default)]
    pub error: String,
    #[serde(rename = "OOMKilled", default)]
    pub oom_killed: bool,
    #[serde(rename = "StartedAt", default)]
    pub started_at: String,
    #[serde(rename = "Health", default)]
    pub health: Option<HealthView>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct HealthView {
    /// `starting`, `healthy` or `unhealthy`.
    #[serde(rename = "Status", default)]
    pub status: String,
    #[serde(rename = "Log", default)]
    pub log: Option<Vec<HealthProbe>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct HealthProbe {
    #[serde(rename = "ExitCode", default)]
    pub exit_code: i64,
    #[serde(rename = "Output", default)]
    pub output: String,
}

/// What autoredeploy reads of `GET /images/{name}/json`.
#[derive(Debug, Deserialize)]
pub(super) struct ImageView {
    #[serde(rename = "Id")]
    pub id: String,
}
