//! Quay's repository push notification: one event per tag pushed, without a digest.

use serde::Deserialize;

use super::{Announced, Auth, Delivery, NotAPush, Source, pushed_image, read_json};
use crate::domain::{PushEvent, SourceKind};

/// `POST /autoredeploy/quay?key=<key>`: Quay cannot sign nor set headers, so the key is
/// in the URL.
pub const SOURCE: Source = Source {
    kind: SourceKind::Quay,
    path: "autoredeploy/quay",
    auth: Auth::Key,
    delivery_id: None,
    parse,
};

#[derive(Deserialize)]
struct Payload {
    repository: String,
    docker_url: String,
    updated_tags: UpdatedTags,
}

/// A list of tags; before 2017, an object of tags to image ids.
#[derive(Deserialize)]
#[serde(untagged)]
enum UpdatedTags {
    List(Vec<String>),
    Map(serde_json::Map<String, serde_json::Value>),
}

fn parse(delivery: &Delivery<'_>) -> Result<Announced, NotAPush> {
    let payload: Payload = read_json(delivery.body, "a Quay repository push")?;
    // `docker_url` is `<server host>/<namespace>/<name>`.
    let host = payload
        .docker_url
        .split_once('/')
        .map(|(host, _)| host)
        .filter(|host| !host.is_empty())
        .ok_or_else(|| NotAPush("docker_url names no registry host".into()))?;
    let tags: Vec<String> = match payload.updated_tags {
        UpdatedTags::List(tags) => tags,
        UpdatedTags::Map(tags) => tags.into_iter().map(|(tag, _)| tag).collect(),
    };
    if tags.is_empty() {
        return Ok(Announced::ignored("no tag was updated"));
    }
    let mut announced = Announced::default();
    for tag in tags {
        announced.pushes.push(PushEvent::announced(
            pushed_image(host, &payload.repository, &tag, "the push")?,
            None,
            SourceKind::Quay,
            None,
        ));
    }
    Ok(announced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(body: &str) -> Vec<String> {
        parse(&Delivery::of(body.as_bytes()))
            .unwrap()
            .pushes
            .iter()
            .map(|push| push.image.to_string())
            .collect()
    }

    #[test]
    fn each_updated_tag_is_a_push_of_quay() {
        assert_eq!(
            images(include_str!(
                "../../../fixtures/registries/quay-repo-push-real.json"
            )),
            ["quay.io/hiddeco/foo:3.10"]
        );
        assert_eq!(
            images(include_str!(
                "../../../fixtures/registries/quay-repo-push.json"
            )),
            ["quay.io/mynamespace/repository:latest"]
        );
        // The shape Quay sent before 2017.
        assert_eq!(
            images(include_str!(
                "../../../fixtures/registries/quay-repo-push-legacy-2016.json"
            )),
            ["quay.io/mynamespace/repository:latest"]
        );
        assert_eq!(
            images(
                r#"{"repository": "o/a", "docker_url": "quay.example.com/o/a", "updated_tags": ["1", "2"]}"#
            ),
            ["quay.example.com/o/a:1", "quay.example.com/o/a:2"]
        );
    }

    #[test]
    fn what_is_not_a_quay_push_is_refused() {
        for body in [
            r#"{"repository": "o/a", "docker_url": "", "updated_tags": ["1"]}"#,
            r#"{"build_id": "x"}"#,
        ] {
            assert!(parse(&Delivery::of(body.as_bytes())).is_err(), "{body}");
        }
    }
}
