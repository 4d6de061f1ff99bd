//! Azure Container Registry's webhook. ACR may send a push twice, with and without its
//! tag: the one without is not a push of a tag.

use serde::Deserialize;

use super::{Announced, Auth, Delivery, NotAPush, Source, digest, pushed_image, read_json};
use crate::domain::{PushEvent, SourceKind, excerpt};

/// `POST /autoredeploy/acr`, with `Authorization: Bearer <key>` set as a custom header of
/// the webhook (ACR signs nothing).
pub const SOURCE: Source = Source {
    kind: SourceKind::Acr,
    path: "autoredeploy/acr",
    auth: Auth::Key,
    delivery_id: None,
    parse,
};

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: Option<Target>,
    #[serde(default)]
    request: Option<Request>,
}

#[derive(Deserialize)]
struct Target {
    #[serde(default)]
    repository: String,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    digest: Option<String>,
}

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    host: String,
}

fn parse(delivery: &Delivery<'_>) -> Result<Announced, NotAPush> {
    let payload: Payload = read_json(delivery.body, "an ACR webhook event")?;
    if payload.action != "push" {
        return Ok(Announced::ignored(format!(
            "an ACR {} event, not a push",
            excerpt(&payload.action)
        )));
    }
    let target = payload
        .target
        .ok_or_else(|| NotAPush("the push has no `target`".into()))?;
    let Some(tag) = target.tag.filter(|tag| !tag.is_empty()) else {
        return Ok(Announced::ignored("a push without a tag"));
    };
    let host = payload
        .request
        .map(|request| request.host)
        .filter(|host| !host.is_empty())
        .ok_or_else(|| NotAPush("request.host is missing: the registry is not known".into()))?;
    Ok(Announced::push(PushEvent::announced(
        pushed_image(&host, &target.repository, &tag, "the target")?,
        digest(target.digest.as_deref()),
        SourceKind::Acr,
        None,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announced(body: &str) -> Announced {
        parse(&Delivery::of(body.as_bytes())).unwrap()
    }

    #[test]
    fn a_tagged_push_is_a_push_of_the_registry_host() {
        let push = &announced(include_str!("../../../fixtures/registries/acr-push.json")).pushes[0];
        assert_eq!(
            push.image.to_string(),
            "myregistry.azurecr.io/hello-world:v1"
        );
        assert_eq!(
            push.digest.as_deref(),
            Some("sha256:80f0d5c8786bb9e621a45ece0db56d11cdc624ad20da9fe62e9d25490f331d7d")
        );
        let real = announced(include_str!(
            "../../../fixtures/registries/acr-push-argocd-image-updater.json"
        ));
        assert_eq!(
            real.pushes[0].image.to_string(),
            "mojrodevops.azurecr.io/hello-world:test-v1"
        );
        // The current documentation masks its digest: the push stands, without it.
        let masked = announced(include_str!(
            "../../../fixtures/registries/acr-push-current-doc-masked.json"
        ));
        assert_eq!(masked.pushes[0].digest, None);
    }

    #[test]
    fn deletions_charts_and_untagged_pushes_are_not_pushes() {
        for (body, reason) in [
            (
                include_str!("../../../fixtures/registries/acr-delete.json").to_owned(),
                "delete",
            ),
            (
                include_str!("../../../fixtures/registries/acr-chart-push.json").to_owned(),
                "chart_push",
            ),
            (
                include_str!("../../../fixtures/registries/acr-push.json")
                    .replace("\"tag\": \"v1\"", "\"tag\": \"\""),
                "without a tag",
            ),
        ] {
            let announced = announced(&body);
            assert!(announced.pushes.is_empty(), "{announced:?}");
            assert!(announced.ignored[0].contains(reason), "{announced:?}");
        }
    }
}
