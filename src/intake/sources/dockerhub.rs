//! The Docker Hub webhook payload.
//!
//! Real payloads vary: 2015 pushes carry no `tag` (it means `latest`), `images` may be
//! present, empty or absent, timestamps may be integers or floats, and official images arrive
//! as `repo_name: "busybox"`. Only the fields autoredeploy needs are read; the rest is ignored.

use serde::Deserialize;

use super::{Announced, Auth, NotAPush, Source, read_json};
use crate::domain::{ImageRef, PushEvent, SourceKind, excerpt};

/// Docker Hub's repository webhook: `POST /autoredeploy?key=…`, the path and key of the
/// original program (Docker Hub cannot send headers).
pub const SOURCE: Source = Source {
    kind: SourceKind::DockerHub,
    path: "autoredeploy",
    auth: Auth::Key,
    delivery_id: None,
    parse: |delivery| parse_push(delivery.body).map(Announced::push),
};

#[derive(Deserialize)]
struct Payload {
    push_data: PushData,
    repository: Repository,
    #[serde(default)]
    callback_url: Option<String>,
}

#[derive(Deserialize)]
struct PushData {
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    pusher: Option<String>,
}

#[derive(Deserialize)]
struct Repository {
    repo_name: String,
}

/// Parses a Docker Hub push notification into a [`PushEvent`].
pub fn parse_push(body: &[u8]) -> Result<PushEvent, NotAPush> {
    let payload: Payload = read_json(body, "a Docker Hub push notification")?;
    let repository = payload.repository.repo_name.trim();
    if repository.is_empty() {
        return Err(NotAPush("repository.repo_name is empty".into()));
    }
    // Docker Hub namespaces never contain a dot or colon: such a name would be read as
    // another registry's host, so it is refused rather than misread.
    let first = repository.split('/').next().unwrap_or_default();
    if repository.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost")
    {
        return Err(NotAPush(format!(
            "repository.repo_name {:?} is not a Docker Hub repository name",
            excerpt(repository)
        )));
    }
    let tag = match payload.push_data.tag.as_deref().map(str::trim) {
        None => "latest",
        Some("") => return Err(NotAPush("push_data.tag is empty".into())),
        Some(tag) => tag,
    };
    let reference = format!("docker.io/{repository}:{tag}");
    let image = ImageRef::parse(&reference)
        .map_err(|err| NotAPush(format!("the pushed image is not valid: {err}")))?;
    if image.is_pinned_by_digest() {
        return Err(NotAPush("a push names a tag, not a digest".into()));
    }
    // Docker Hub's callback is legacy and optional: an address that is not a URL is
    // dropped rather than the push refused.
    let callback_url = payload
        .callback_url
        .as_deref()
        .and_then(|url| url::Url::parse(url).ok())
        .filter(|url| matches!(url.scheme(), "http" | "https"));
    Ok(PushEvent {
        image,
        digest: None,
        source: SourceKind::DockerHub,
        pusher: payload.push_data.pusher,
        callback_url,
        only: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn push(repo_name: &str, tag: Option<&str>) -> Vec<u8> {
        let mut push_data =
            json!({ "pushed_at": 1.417566161e9, "pusher": "someone", "images": [] });
        if let Some(tag) = tag {
            push_data["tag"] = json!(tag);
        }
        json!({ "push_data": push_data, "repository": { "repo_name": repo_name, "date_created": 1417494799 } })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn official_images_and_missing_tags_are_normalised() {
        let event = parse_push(&push("busybox", None)).unwrap();
        assert_eq!(event.image.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(event.pusher.as_deref(), Some("someone"));
        let event = parse_push(&push("myorg/api", Some("1.4"))).unwrap();
        assert_eq!(event.image.to_string(), "docker.io/myorg/api:1.4");
    }

    #[test]
    fn hostile_bodies_are_refused_cleanly() {
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        let nested_push = format!(
            r#"{{"push_data":{{"tag":"1"}},"repository":{{"repo_name":"a/b","extra":{}0{}}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let duplicate = r#"{"push_data":{},"push_data":{},"repository":{"repo_name":"a/b"}}"#;
        for (body, expected) in [
            (deep.into_bytes(), "nested more than"),
            (nested_push.into_bytes(), "nested more than"),
            (duplicate.as_bytes().to_vec(), "duplicate field"),
            (
                b"{\"push_data\":{\"tag\":\"\xff\"}}".to_vec(),
                "not valid JSON",
            ),
            (
                br#"{"push_data":{"tag":7},"repository":{"repo_name":"a/b"}}"#.to_vec(),
                "invalid type",
            ),
        ] {
            let error = parse_push(&body).expect_err(expected).to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn brackets_inside_strings_do_not_count_as_nesting() {
        let body = format!(
            r#"{{"push_data":{{"tag":"1"}},"repository":{{"repo_name":"a/b","description":"{}\"]"}}}}"#,
            "[{".repeat(100)
        );
        assert!(parse_push(body.as_bytes()).is_ok());
    }

    #[test]
    fn bodies_that_are_not_pushes_are_refused_with_a_reason() {
        for (body, expected) in [
            (b"not json".to_vec(), "not valid JSON"),
            (b"{}".to_vec(), "missing field `push_data`"),
            (
                br#"{"push_data":{},"repository":{"repo_name":7}}"#.to_vec(),
                "invalid type",
            ),
            (push("", Some("x")), "repo_name is empty"),
            (
                push("quay.io/org/app", Some("1")),
                "not a Docker Hub repository",
            ),
            (push("org/app", Some("")), "tag is empty"),
            (push("org/app", Some("bad tag!")), "not valid"),
            (push("Org/App", Some("1")), "not valid"),
            (push(&"a".repeat(500_000), Some("1")), "not valid"),
            (push("org/app", Some(&"t".repeat(500_000))), "not valid"),
            (
                push(&format!("a.b/{}", "c".repeat(500_000)), Some("1")),
                "not a Docker Hub",
            ),
        ] {
            let error = parse_push(&body).expect_err(expected).to_string();
            assert!(error.contains(expected), "{error}");
            assert!(error.len() < 500, "the input is not echoed whole: {error}");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    /// Any JSON document, up to a few levels deep.
    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,20}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
                proptest::collection::btree_map(
                    "(push_data|repository|repo_name|tag|pusher|[a-z]{1,8})",
                    inner,
                    0..8
                )
                .prop_map(|map| Value::Object(map.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_json_is_parsed_or_refused_without_panicking(document in json()) {
            let _ = parse_push(document.to_string().as_bytes());
        }

        #[test]
        fn any_bytes_are_parsed_or_refused_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_push(&bytes);
        }

        #[test]
        fn a_push_of_any_valid_name_and_tag_is_understood(
            namespace in "[a-z0-9]{2,10}",
            name in "[a-z0-9]{1,10}([-_][a-z0-9]{1,5})?",
            tag in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}",
        ) {
            let body = serde_json::json!({
                "push_data": { "tag": tag, "pushed_at": 1.5e9 },
                "repository": { "repo_name": format!("{namespace}/{name}") },
            });
            let event = parse_push(body.to_string().as_bytes()).unwrap();
            prop_assert_eq!(event.image.to_string(), format!("docker.io/{namespace}/{name}:{tag}"));
        }
    }
}
