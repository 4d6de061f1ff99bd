//! The Engine API calls of the Swarm target, and the parts of their answers it reads. A
//! service's spec is kept as JSON, so that an update sends back every field of it.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::platform::engine::{Call, EngineClient, EngineError};

/// A service, as `GET /services` and `GET /services/{id}` answer.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Service {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Version", default)]
    pub version: ObjectVersion,
    /// The spec, whole.
    #[serde(rename = "Spec", default)]
    pub spec: Value,
    /// The spec before the last update, whole (`null` before any).
    #[serde(rename = "PreviousSpec", default)]
    pub previous_spec: Value,
    #[serde(rename = "UpdateStatus", default)]
    pub update_status: Option<UpdateStatus>,
}

/// What the registry says of a tag, through `GET /distribution/{name}/json`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RegistryImage {
    /// The digest of the manifest (or index) the tag names.
    pub digest: String,
    /// The image's platforms, as a service's `Placement.Platforms` names them.
    pub platforms: Vec<Value>,
}

impl RegistryImage {
    /// Reads the engine's answer. Platforms are kept as the docker CLI keeps them: without
    /// the `unknown` ones of attestation manifests, without the architecture of `arm`
    /// (nodes report `armv7l`, which `arm` would not match), each once.
    fn read(answer: &Value) -> Option<Self> {
        let digest = answer.pointer("/Descriptor/digest")?.as_str()?.to_owned();
        let mut platforms = Vec::new();
        for platform in answer["Platforms"].as_array().into_iter().flatten() {
            let os = platform["os"].as_str().unwrap_or_default();
            let architecture = platform["architecture"].as_str().unwrap_or_default();
            if os == "unknown" || architecture == "unknown" {
                continue;
            }
            let architecture = if architecture == "arm" {
                ""
            } else {
                architecture
            };
            let placement = serde_json::json!({ "Architecture": architecture, "OS": os });
            if !platforms.contains(&placement) {
                platforms.push(placement);
            }
        }
        Some(Self { digest, platforms })
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(super) struct ObjectVersion {
    #[serde(rename = "Index", default)]
    pub index: u64,
}

/// Where the last update of a service stands.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct UpdateStatus {
    /// `updating`, `paused`, `completed`, `rollback_started`, `rollback_paused`,
    /// `rollback_completed`.
    #[serde(rename = "State", default)]
    pub state: String,
    #[serde(rename = "Message", default)]
    pub message: String,
    /// When the update (or the rollback) started, as Swarm writes it.
    #[serde(rename = "StartedAt", default)]
    pub started_at: Option<String>,
}

impl Service {
    /// Its name.
    pub fn name(&self) -> &str {
        self.spec
            .pointer("/Name")
            .and_then(Value::as_str)
            .unwrap_or(&self.id)
    }

    /// The image its tasks run, as the spec writes it.
    pub fn image(&self) -> Option<&str> {
        self.spec
            .pointer("/TaskTemplate/ContainerSpec/Image")
            .and_then(Value::as_str)
    }

    /// Whether Swarm rolled it back from an update to `image`: its previous spec names that
    /// image, and its update status is a rollback's.
    pub fn was_rolled_back_from(&self, image: &str) -> bool {
        let previous = self
            .previous_spec
            .pointer("/TaskTemplate/ContainerSpec/Image")
            .and_then(Value::as_str);
        let rolling_back = self
            .update_status
            .as_ref()
            .is_some_and(|status| status.state.starts_with("rollback"));
        previous == Some(image) && rolling_back
    }

    /// The value of its label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.spec.pointer("/Labels")?.get(name)?.as_str()
    }
}

/// The calls of the Swarm target.
#[derive(Debug, Clone)]
pub(super) struct SwarmApi {
    client: EngineClient,
    /// Whether the engine is a Swarm manager, once it said so.
    manager: Arc<OnceCell<bool>>,
}

impl SwarmApi {
    pub fn new(client: EngineClient) -> Self {
        Self {
            client,
            manager: Arc::default(),
        }
    }

    pub fn client(&self) -> &EngineClient {
        &self.client
    }

    /// Whether the engine is a Swarm manager: asked until it answers, then remembered.
    pub async fn is_manager(&self) -> Result<bool, EngineError> {
        self.manager
            .get_or_try_init(|| self.ask_whether_manager())
            .await
            .copied()
    }

    async fn ask_whether_manager(&self) -> Result<bool, EngineError> {
        let info: Value = self
            .client
            .json(Call::get(
                "asking whether the engine is a Swarm manager",
                "/info",
            ))
            .await?;
        Ok(info
            .pointer("/Swarm/ControlAvailable")
            .and_then(Value::as_bool)
            .unwrap_or(false))
    }

    /// Every service.
    pub async fn services(&self) -> Result<Vec<Service>, EngineError> {
        self.client
            .json(Call::get("listing the Swarm services", "/services"))
            .await
    }

    /// The service of that id or name, or `None`.
    pub async fn service(&self, id_or_name: &str) -> Result<Option<Service>, EngineError> {
        let what = format!("inspecting Swarm service {id_or_name}");
        let path = format!("/services/{id_or_name}");
        match self.client.json(Call::get(&what, &path)).await {
            Ok(service) => Ok(Some(service)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// How many tasks of the service are meant to run.
    pub async fn running_tasks(&self, id: &str) -> Result<usize, EngineError> {
        let filters = serde_json::json!({ "service": [id], "desired-state": ["running"] });
        Ok(self.tasks(&filters).await?.len())
    }

    /// Why the last failed task of the service that ran `image` failed (its
    /// `Status.Err`, such as `task: non-zero exit (3)`), from the tasks Swarm keeps.
    pub async fn task_failure(&self, id: &str, image: &str) -> Result<Option<String>, EngineError> {
        let tasks = self.tasks(&serde_json::json!({ "service": [id] })).await?;
        let failed = tasks
            .iter()
            .filter(|task| task.pointer("/Spec/ContainerSpec/Image") == Some(&Value::from(image)))
            .filter(|task| {
                matches!(
                    task.pointer("/Status/State").and_then(Value::as_str),
                    Some("failed" | "rejected")
                )
            })
            .filter_map(|task| {
                let error = task.pointer("/Status/Err").and_then(Value::as_str)?;
                let at = task
                    .pointer("/Status/Timestamp")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                (!error.is_empty()).then_some((at, error))
            })
            .max_by(|left, right| left.0.cmp(right.0));
        Ok(failed.map(|(_, error)| error.to_owned()))
    }

    /// The tasks `filters` select.
    async fn tasks(&self, filters: &Value) -> Result<Vec<Value>, EngineError> {
        let path = format!(
            "/tasks?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("filters", &filters.to_string())
                .finish()
        );
        self.client
            .json(Call::get("listing the tasks of a Swarm service", &path))
            .await
    }

    /// The digest `reference` (`name:tag`) names in its registry now, and the platforms
    /// of that image, asked through the engine with the registry credentials.
    pub async fn registry_image(
        &self,
        reference: &str,
        auth: Option<&secrecy::SecretString>,
    ) -> Result<RegistryImage, EngineError> {
        let what = format!("asking the registry for the digest of {reference}");
        let path = format!("/distribution/{reference}/json");
        let answer: Value = self
            .client
            .json(Call::get(&what, &path).registry_auth(auth))
            .await?;
        RegistryImage::read(&answer).ok_or(EngineError::Unreadable {
            what,
            reason: "no Descriptor.digest in the answer".into(),
        })
    }

    /// Updates the service to `spec`, from its `version`, with the registry credentials.
    pub async fn update(
        &self,
        id: &str,
        version: u64,
        spec: &Value,
        auth: Option<&secrecy::SecretString>,
    ) -> Result<(), EngineError> {
        let what = format!("updating Swarm service {id}");
        let path = format!("/services/{id}/update?version={version}");
        self.client
            .call(Call::post(&what, &path).json(spec).registry_auth(auth))
            .await
            .map(drop)
    }

    /// Asks Swarm to roll the service back to its previous spec.
    pub async fn roll_back(&self, id: &str, version: u64, spec: &Value) -> Result<(), EngineError> {
        let what = format!("rolling Swarm service {id} back");
        let path = format!("/services/{id}/update?version={version}&rollback=previous");
        self.client
            .call(Call::post(&what, &path).json(spec))
            .await
            .map(drop)
    }
}

/// Whether an update was refused because the service changed since it was read.
pub(super) fn is_out_of_sequence(error: &EngineError) -> bool {
    matches!(error, EngineError::Answer { message, .. } if message.contains("out of sequence"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_recorded_distribution_answer_gives_its_digest_and_platform() {
        let recorded: Value = serde_json::from_str(include_str!(
            "../../../fixtures/docker/docker-distribution-inspect.json"
        ))
        .unwrap();
        let image = RegistryImage::read(&recorded).unwrap();
        assert_eq!(
            image.digest,
            "sha256:542140816df08f594f76825988a47ca12e3e6033e526d131e3131d61707d984a"
        );
        assert_eq!(
            image.platforms,
            [json!({ "Architecture": "amd64", "OS": "linux" })]
        );
    }

    #[test]
    fn platforms_are_kept_as_the_docker_cli_keeps_them() {
        let answer = json!({
            "Descriptor": { "digest": "sha256:index" },
            "Platforms": [
                { "architecture": "amd64", "os": "linux" },
                { "architecture": "arm", "os": "linux", "variant": "v7" },
                { "architecture": "arm", "os": "linux", "variant": "v6" },
                { "architecture": "unknown", "os": "unknown" },
                { "architecture": "amd64", "os": "linux" }
            ]
        });
        let image = RegistryImage::read(&answer).unwrap();
        assert_eq!(
            image.platforms,
            [
                json!({ "Architecture": "amd64", "OS": "linux" }),
                json!({ "Architecture": "", "OS": "linux" })
            ]
        );
        assert_eq!(RegistryImage::read(&json!({ "Platforms": [] })), None);
    }
}
