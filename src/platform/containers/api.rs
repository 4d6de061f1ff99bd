//! The Engine API calls the containers target makes, each named for what it does.

use std::time::Duration;

use serde_json::{Value, json};
use url::form_urlencoded;

use super::wire::{ContainerView, ImageView, ListedContainer};
use crate::domain::ImageRef;
use crate::platform::engine::{Call, EngineClient, EngineError, REQUEST_TIMEOUT};

/// A container's inspect, whole and read.
pub(super) struct Inspected {
    /// The document, to make a new container from.
    pub document: Value,
    /// What autoredeploy reads of it.
    pub view: ContainerView,
}

/// The calls of the containers target.
#[derive(Debug, Clone)]
pub(super) struct ContainerApi {
    client: EngineClient,
}

fn query(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn absent_is_none<T>(result: Result<T, EngineError>) -> Result<Option<T>, EngineError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error),
    }
}

impl ContainerApi {
    pub fn new(client: EngineClient) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &EngineClient {
        &self.client
    }

    /// The running containers.
    pub async fn running(&self) -> Result<Vec<ListedContainer>, EngineError> {
        self.client
            .json(Call::get(
                "listing the running containers",
                "/containers/json",
            ))
            .await
    }

    /// The container of that name or id, or `None` if there is none.
    pub async fn inspect(&self, name_or_id: &str) -> Result<Option<Inspected>, EngineError> {
        let what = format!("inspecting container {name_or_id}");
        let path = format!("/containers/{name_or_id}/json");
        let Some(document) =
            absent_is_none(self.client.json::<Value>(Call::get(&what, &path)).await)?
        else {
            return Ok(None);
        };
        let view =
            serde_json::from_value(document.clone()).map_err(|error| EngineError::Unreadable {
                what,
                reason: error.to_string(),
            })?;
        Ok(Some(Inspected { document, view }))
    }

    /// The image of that reference or id, whole, or `None` if the engine has none.
    pub async fn image(&self, name: &str) -> Result<Option<Value>, EngineError> {
        let what = format!("inspecting image {name}");
        let path = format!("/images/{name}/json");
        absent_is_none(self.client.json(Call::get(&what, &path)).await)
    }

    /// Whether the image `id` is, for its registry, `image`'s repository at `digest`.
    pub async fn runs_digest(
        &self,
        id: &str,
        image: &ImageRef,
        digest: &str,
    ) -> Result<bool, EngineError> {
        Ok(self
            .digests_in(id, image)
            .await?
            .iter()
            .any(|known| known.eq_ignore_ascii_case(digest)))
    }

    /// The digests the image `id` has in the repository of `image`, as its `RepoDigests`
    /// say (written when it was pulled or pushed; one image may have several).
    pub async fn digests_in(&self, id: &str, image: &ImageRef) -> Result<Vec<String>, EngineError> {
        let Some(document) = self.image(id).await? else {
            return Ok(Vec::new());
        };
        Ok(document["RepoDigests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|value| ImageRef::parse(value.as_str()?).ok())
            .filter(|known| {
                known.registry() == image.registry() && known.repository() == image.repository()
            })
            .filter_map(|known| known.digest().map(str::to_owned))
            .collect())
    }

    /// The id of the image of that reference, if the engine has it.
    pub async fn image_id(&self, name: &str) -> Result<Option<String>, EngineError> {
        let Some(document) = self.image(name).await? else {
            return Ok(None);
        };
        let view: ImageView =
            serde_json::from_value(document).map_err(|error| EngineError::Unreadable {
                what: format!("inspecting image {name}"),
                reason: error.to_string(),
            })?;
        Ok(Some(view.id))
    }

    /// Pulls `repository:tag` with the registry credentials, if any.
    pub async fn pull(
        &self,
        repository: &str,
        tag: &str,
        auth: Option<&secrecy::SecretString>,
    ) -> Result<(), EngineError> {
        let what = format!("pulling {repository}:{tag}");
        let path = format!(
            "/images/create?{}",
            query(&[("fromImage", repository), ("tag", tag)])
        );
        self.client
            .follow_progress(Call::post(&what, &path).registry_auth(auth))
            .await
    }

    /// Creates a container named `name` from `body`; returns its id.
    pub async fn create(&self, name: &str, body: &Value) -> Result<String, EngineError> {
        #[derive(serde::Deserialize)]
        struct Created {
            #[serde(rename = "Id")]
            id: String,
        }
        let what = format!("creating container {name}");
        let path = format!("/containers/create?{}", query(&[("name", name)]));
        let created: Created = self
            .client
            .json(Call::post(&what, &path).json(body))
            .await?;
        Ok(created.id)
    }

    /// Connects the container to a network with the endpoint settings.
    pub async fn connect(
        &self,
        id: &str,
        network: &str,
        endpoint: &Value,
    ) -> Result<(), EngineError> {
        let what = format!("connecting container {} to network {network}", short(id));
        let path = format!("/networks/{network}/connect");
        let body = json!({ "Container": id, "EndpointConfig": endpoint });
        self.client
            .call(Call::post(&what, &path).json(&body))
            .await
            .map(drop)
    }

    /// Renames a container.
    pub async fn rename(&self, id: &str, name: &str) -> Result<(), EngineError> {
        let what = format!("renaming container {} to {name}", short(id));
        let path = format!("/containers/{id}/rename?{}", query(&[("name", name)]));
        self.client.call(Call::post(&what, &path)).await.map(drop)
    }

    /// Stops a container with its own stop signal and timeout (`stop_timeout`, which the
    /// engine's answer may take on top of an ordinary request's time). One already stopped
    /// or gone counts as stopped.
    pub async fn stop(&self, id: &str, stop_timeout: Duration) -> Result<(), EngineError> {
        let what = format!("stopping container {}", short(id));
        let path = format!("/containers/{id}/stop");
        let call = Call::post(&what, &path).timeout(stop_timeout + REQUEST_TIMEOUT);
        absent_is_none(self.client.call(call).await).map(drop)
    }

    /// Starts a container (one already running is left as it is).
    pub async fn start(&self, id: &str) -> Result<(), EngineError> {
        let what = format!("starting container {}", short(id));
        let path = format!("/containers/{id}/start");
        self.client.call(Call::post(&what, &path)).await.map(drop)
    }

    /// Sets a container's restart policy.
    pub async fn set_restart_policy(&self, id: &str, policy: &Value) -> Result<(), EngineError> {
        let what = format!("setting the restart policy of container {}", short(id));
        let path = format!("/containers/{id}/update");
        let body = json!({ "RestartPolicy": policy });
        self.client
            .call(Call::post(&what, &path).json(&body))
            .await
            .map(drop)
    }

    /// Removes a container whose volumes the new container uses: an old one. Its
    /// anonymous volumes are kept. One that is already gone counts as removed.
    pub async fn remove_old(&self, name_or_id: &str) -> Result<(), EngineError> {
        self.remove(name_or_id, false).await
    }

    /// Removes a new container that is given up, with the anonymous volumes the engine
    /// made for it; those of the old container, mounted again by name, are not its own
    /// and stay. One that is already gone counts as removed.
    pub async fn discard_new(&self, name_or_id: &str) -> Result<(), EngineError> {
        self.remove(name_or_id, true).await
    }

    /// Removes a container, running or not, with its anonymous volumes if `volumes`.
    async fn remove(&self, name_or_id: &str, volumes: bool) -> Result<(), EngineError> {
        let what = format!("removing container {}", short(name_or_id));
        let path = format!(
            "/containers/{name_or_id}?{}",
            query(&[("force", "1"), ("v", if volumes { "1" } else { "0" })])
        );
        absent_is_none(self.client.call(Call::delete(&what, &path)).await).map(drop)
    }
}

/// The short form of a container id (names are shown whole).
pub(super) fn short(id: &str) -> &str {
    if id.len() == 64 && id.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        &id[..12]
    } else {
        id
    }
}
