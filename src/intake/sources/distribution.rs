//! The notifications of a distribution registry (the CNCF registry, GitLab's, Harbor's inner
//! one): envelopes of events, of which only the push of a tagged manifest (or index) is a
//! push to act on. A `docker push` also sends one event per layer, and pulls, mounts and
//! deletes when the registry is not told to leave them out; they are all answered `202`,
//! since the registry sends again, for ever, what it was not answered 2xx for.

use serde::Deserialize;

use super::{
    Announced, Auth, Delivery, NotAPush, Source, digest, host_of, pushed_image, read_json,
};
use crate::domain::{PushEvent, SourceKind, excerpt};

/// `POST /autoredeploy/registry`, with `Authorization: Bearer <key>` set in the registry's
/// `notifications.endpoints[].headers`.
pub const SOURCE: Source = Source {
    kind: SourceKind::Registry,
    path: "autoredeploy/registry",
    auth: Auth::Key,
    delivery_id: None,
    parse,
};

/// The media types of manifests and indexes; every other pushed target is a blob.
const MANIFEST_TYPES: [&str; 6] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

#[derive(Deserialize)]
struct Envelope {
    events: Vec<Event>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: Target,
    #[serde(default)]
    request: Request,
    #[serde(default)]
    actor: Actor,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Target {
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    repository: String,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Default, Deserialize)]
struct Request {
    #[serde(default)]
    host: Option<String>,
}

#[derive(Default, Deserialize)]
struct Actor {
    #[serde(default)]
    name: Option<String>,
}

fn parse(delivery: &Delivery<'_>) -> Result<Announced, NotAPush> {
    let envelope: Envelope = read_json(delivery.body, "a registry notification envelope")?;
    let mut announced = Announced::default();
    // An event it cannot read is set aside, not the envelope refused: the registry would
    // send it again for ever, holding back every later event.
    for (index, event) in envelope.events.into_iter().enumerate() {
        match read_event(event, index) {
            Ok(Ok(push)) => announced.pushes.push(push),
            Ok(Err(ignored)) => announced.ignored.push(ignored),
            Err(NotAPush(unreadable)) => announced.ignored.push(unreadable),
        }
    }
    if announced.pushes.is_empty() && announced.ignored.is_empty() {
        announced.ignored.push("the envelope holds no event".into());
    }
    Ok(announced)
}

/// The push of one event, or why it is not one to act on (`Ok(Err(why))`).
fn read_event(event: Event, index: usize) -> Result<Result<PushEvent, String>, NotAPush> {
    let field = |name: &str| format!("events[{index}].{name}");
    if event.action != "push" {
        return Ok(Err(format!(
            "events[{index}] is a {}",
            excerpt(&event.action)
        )));
    }
    let target = event.target;
    if !MANIFEST_TYPES.contains(&target.media_type.as_str()) {
        return Ok(Err(format!(
            "events[{index}] pushes a blob ({}), not a manifest",
            excerpt(&target.media_type)
        )));
    }
    let Some(tag) = target.tag.filter(|tag| !tag.is_empty()) else {
        return Ok(Err(format!(
            "events[{index}] pushes a manifest by digest, without a tag"
        )));
    };
    // The host the pusher used, as the registry saw it; else that of the target's URL.
    let host = event
        .request
        .host
        .filter(|host| !host.is_empty())
        .or_else(|| host_of(target.url.as_deref()?))
        .ok_or_else(|| {
            NotAPush(format!(
                "{} and {} are both missing: the registry's host is not known",
                field("request.host"),
                field("target.url")
            ))
        })?;
    let image = pushed_image(&host, &target.repository, &tag, &field("target"))?;
    Ok(Ok(PushEvent::announced(
        image,
        digest(target.digest.as_deref()),
        SourceKind::Registry,
        event.actor.name.filter(|name| !name.is_empty()),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announced(body: &str) -> Announced {
        parse(&Delivery::of(body.as_bytes())).unwrap()
    }

    #[test]
    fn a_recorded_docker_push_names_the_registry_host_the_tag_and_the_digest() {
        let announced = announced(include_str!(
            "../../../fixtures/docker/distribution-notification-manifest-push.json"
        ));
        assert!(announced.ignored.is_empty());
        let [push] = &announced.pushes[..] else {
            panic!("{announced:?}")
        };
        assert_eq!(push.image.to_string(), "localhost:5000/myorg/app:latest");
        assert_eq!(
            push.digest.as_deref(),
            Some("sha256:33bfaeb099b87881c23d6f144995bd56fe2ecc578c1b1411fda78b205f9feda7")
        );
        assert_eq!(push.source, SourceKind::Registry);
    }

    #[test]
    fn layers_pulls_and_untagged_manifests_are_ignored_with_a_reason() {
        for (fixture, reason) in [
            (
                include_str!("../../../fixtures/registries/distribution-envelope.json"),
                "without a tag",
            ),
            (
                include_str!("../../../fixtures/registries/distribution-pull-event.json"),
                "is a pull",
            ),
            (
                include_str!("../../../fixtures/docker/distribution-notification-blob-push.json"),
                "pushes a blob",
            ),
        ] {
            let announced = announced(fixture);
            assert!(announced.pushes.is_empty(), "{announced:?}");
            assert!(
                announced.ignored.iter().any(|why| why.contains(reason)),
                "{announced:?}"
            );
        }
    }

    #[test]
    fn a_real_gitlab_registry_push_is_read() {
        let announced = announced(include_str!(
            "../../../fixtures/registries/gitlab-registry-push-real.json"
        ));
        assert_eq!(announced.pushes.len(), 1, "{announced:?}");
        assert!(announced.pushes[0].image.tag().is_some());
        assert_eq!(announced.pushes[0].pusher.as_deref(), Some("foo"));
    }

    #[test]
    fn malformed_envelopes_are_refused_and_unreadable_events_set_aside() {
        for (body, reason) in [
            ("{}", "missing field `events`"),
            (r#"{"events": {}}"#, "invalid type"),
        ] {
            let refused = parse(&Delivery::of(body.as_bytes()))
                .unwrap_err()
                .to_string();
            assert!(refused.contains(reason), "{body}: {refused}");
        }
        let target = |repository: &str| {
            format!(
                r#""target": {{"mediaType": "application/vnd.oci.image.manifest.v1+json", "repository": "{repository}", "tag": "1"}}"#
            )
        };
        let host = r#""request": {"host": "r.example.com"}"#;
        let events = [
            format!(r#"{{"action": "push", {}}}"#, target("a/b")),
            format!(r#"{{"action": "push", {}, {host}}}"#, target("A//b")),
            format!(r#"{{"action": "push", {}, {host}}}"#, target("a/b")),
        ];
        let announced = announced(&format!(r#"{{"events": [{}]}}"#, events.join(",")));
        assert_eq!(announced.pushes.len(), 1, "{announced:?}");
        assert_eq!(announced.pushes[0].image.to_string(), "r.example.com/a/b:1");
        assert!(
            announced.ignored[0].contains("host is not known"),
            "{announced:?}"
        );
        assert!(
            announced.ignored[1].contains("does not name an image"),
            "{announced:?}"
        );
    }
}
