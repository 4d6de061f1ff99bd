//! Harbor 2.x's project webhook, in its Default or CloudEvents format. Harbor sends one
//! `PUSH_ARTIFACT` per manifest: the children of a multi-arch push (and pushes by digest)
//! carry the digest as their tag, and are not pushes of a tag.

use serde::Deserialize;

use super::{Announced, Auth, Delivery, NotAPush, Source, digest, pushed_image, read_json};
use crate::domain::{PushEvent, SourceKind, excerpt};

/// `POST /autoredeploy/harbor`, with the policy's "auth header" sent verbatim as
/// `Authorization`: `Bearer <key>`, or the bare key.
pub const SOURCE: Source = Source {
    kind: SourceKind::Harbor,
    path: "autoredeploy/harbor",
    auth: Auth::KeyHeader,
    delivery_id: None,
    parse,
};

/// Both formats: Default's `event_data`, or CloudEvents' `data`.
#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    operator: Option<String>,
    #[serde(default, alias = "data")]
    event_data: Option<EventData>,
}

#[derive(Deserialize)]
struct EventData {
    #[serde(default)]
    resources: Vec<Resource>,
    repository: Repository,
}

#[derive(Deserialize)]
struct Resource {
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    resource_url: String,
}

#[derive(Deserialize)]
struct Repository {
    repo_full_name: String,
}

fn parse(delivery: &Delivery<'_>) -> Result<Announced, NotAPush> {
    let payload: Payload = read_json(delivery.body, "a Harbor webhook event")?;
    if !matches!(
        payload.kind.as_str(),
        "PUSH_ARTIFACT" | "harbor.artifact.pushed"
    ) {
        return Ok(Announced::ignored(format!(
            "a Harbor {} event, not an artifact pushed",
            excerpt(&payload.kind)
        )));
    }
    let data = payload
        .event_data
        .ok_or_else(|| NotAPush("the event has no `event_data` (nor `data`)".into()))?;
    let mut announced = Announced::default();
    for resource in data.resources {
        if resource.tag.is_empty() || resource.tag.starts_with("sha256:") {
            announced
                .ignored
                .push("a manifest pushed by digest, without a tag".into());
            continue;
        }
        // `resource_url` is `<Harbor's host>/<project>/<name>:<tag>`.
        let host = resource
            .resource_url
            .split_once('/')
            .map(|(host, _)| host)
            .filter(|host| !host.is_empty())
            .ok_or_else(|| {
                NotAPush(format!(
                    "resource_url ({}) names no registry host",
                    excerpt(&resource.resource_url)
                ))
            })?;
        announced.pushes.push(PushEvent::announced(
            pushed_image(
                host,
                &data.repository.repo_full_name,
                &resource.tag,
                "the artifact",
            )?,
            digest(resource.digest.as_deref()),
            SourceKind::Harbor,
            payload.operator.clone(),
        ));
    }
    if announced.pushes.is_empty() && announced.ignored.is_empty() {
        announced.ignored.push("the event names no artifact".into());
    }
    Ok(announced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announced(body: &str) -> Announced {
        parse(&Delivery::of(body.as_bytes())).unwrap()
    }

    #[test]
    fn a_tagged_artifact_pushed_is_a_push_of_harbor_in_either_format() {
        let default = announced(include_str!(
            "../../../fixtures/registries/harbor-push-artifact.json"
        ));
        let push = &default.pushes[0];
        assert_eq!(
            push.image.to_string(),
            "hub.harbor.com/test-webhook/debian:latest"
        );
        assert_eq!(
            push.digest.as_deref(),
            Some("sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8")
        );
        assert_eq!(push.pusher.as_deref(), Some("admin"));
        // The CloudEvents sample is a push by digest; with a tag, it is a push.
        let cloud = include_str!(
            "../../../fixtures/registries/harbor-cloudevents-push-artifact.json"
        )
        .replace(
            "\"tag\": \"sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4\"",
            "\"tag\": \"3.18\"",
        )
        .replace(
            "alpine@sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4",
            "alpine:3.18",
        );
        assert_eq!(
            announced(&cloud).pushes[0].image.to_string(),
            "localhost/harbor/alpine:3.18"
        );
    }

    #[test]
    fn pulls_deletions_and_pushes_by_digest_are_not_pushes() {
        for (fixture, reason) in [
            (
                include_str!("../../../fixtures/registries/harbor-push-artifact-by-digest.json"),
                "by digest",
            ),
            (
                include_str!("../../../fixtures/registries/harbor-cloudevents-push-artifact.json"),
                "by digest",
            ),
            (
                include_str!("../../../fixtures/registries/harbor-pull-artifact.json"),
                "PULL_ARTIFACT",
            ),
            (
                include_str!("../../../fixtures/registries/harbor-delete-artifact.json"),
                "DELETE_ARTIFACT",
            ),
            (
                include_str!(
                    "../../../fixtures/registries/harbor-cloudevents-delete-artifact.json"
                ),
                "harbor.artifact.deleted",
            ),
        ] {
            let announced = announced(fixture);
            assert!(announced.pushes.is_empty(), "{announced:?}");
            assert!(announced.ignored[0].contains(reason), "{announced:?}");
        }
    }
}
