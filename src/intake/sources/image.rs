//! `POST /autoredeploy/image`: a CI job says "this image is new", as `{"image":
//! "registry/repo:tag"}`, optionally with the `"digest"` the tag names now.

use serde::Deserialize;

use super::{Announced, Auth, Delivery, NotAPush, Source, digest, read_json};
use crate::domain::{ImageRef, PushEvent, SourceKind, excerpt};

/// `POST /autoredeploy/image` with `Authorization: Bearer <key>`.
pub const SOURCE: Source = Source {
    kind: SourceKind::Image,
    path: "autoredeploy/image",
    auth: Auth::Key,
    delivery_id: None,
    parse,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    image: String,
    #[serde(default)]
    digest: Option<String>,
}

fn parse(delivery: &Delivery<'_>) -> Result<Announced, NotAPush> {
    let body: Body = read_json(
        delivery.body,
        r#"{"image": "<registry/repository:tag>", "digest": "<sha256:…, optional>"}"#,
    )?;
    let written = ImageRef::parse(body.image.trim())
        .map_err(|error| NotAPush(format!("`image` is not an image reference: {error}")))?;
    let Some(tag) = written.tag() else {
        return Err(NotAPush(format!(
            "`image` ({}) names a digest without a tag: give the tag, and the digest as `digest`",
            excerpt(&body.image)
        )));
    };
    let image = ImageRef::parse(&format!(
        "{}/{}:{tag}",
        written.registry(),
        written.repository()
    ))
    .map_err(|error| NotAPush(error.to_string()))?;
    let given = match &body.digest {
        None => None,
        Some(text) => Some(digest(Some(text)).ok_or_else(|| {
            NotAPush(format!(
                "`digest` ({}) is not sha256: and 64 hex digits",
                excerpt(text)
            ))
        })?),
    };
    let digest = match (written.digest(), given) {
        (Some(pinned), Some(given)) if !pinned.eq_ignore_ascii_case(&given) => {
            return Err(NotAPush(
                "`image` is pinned to another digest than `digest`".into(),
            ));
        }
        (Some(pinned), _) => digest(Some(pinned)),
        (None, given) => given,
    };
    Ok(Announced::push(PushEvent::announced(
        image,
        digest,
        SourceKind::Image,
        None,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(body: &str) -> Result<PushEvent, String> {
        parse(&Delivery::of(body.as_bytes()))
            .map(|mut announced| announced.pushes.remove(0))
            .map_err(|refused| refused.to_string())
    }

    const DIGEST: &str = "sha256:33bfaeb099b87881c23d6f144995bd56fe2ecc578c1b1411fda78b205f9feda7";

    #[test]
    fn an_image_with_or_without_its_digest_is_a_push() {
        let plain = push(r#"{"image": "registry.example.com:5000/team/app:2"}"#).unwrap();
        assert_eq!(
            plain.image.to_string(),
            "registry.example.com:5000/team/app:2"
        );
        assert_eq!(plain.digest, None);
        assert_eq!(plain.source, SourceKind::Image);
        let untagged = push(r#"{"image": "nginx"}"#).unwrap();
        assert_eq!(untagged.image.to_string(), "docker.io/library/nginx:latest");
        let with_digest = push(&format!(
            r#"{{"image": "ghcr.io/o/a:1", "digest": "{DIGEST}"}}"#
        ))
        .unwrap();
        assert_eq!(with_digest.digest.as_deref(), Some(DIGEST));
        let pinned = push(&format!(r#"{{"image": "ghcr.io/o/a:1@{DIGEST}"}}"#)).unwrap();
        assert_eq!(pinned.image.to_string(), "ghcr.io/o/a:1");
        assert_eq!(pinned.digest.as_deref(), Some(DIGEST));
    }

    #[test]
    fn what_is_not_an_image_and_a_tag_is_refused() {
        for (body, reason) in [
            (r#"{"image": "A b"}"#, "not an image reference"),
            (
                &format!(r#"{{"image": "ghcr.io/o/a@{DIGEST}"}}"#),
                "without a tag",
            ),
            (r#"{"image": "a:1", "digest": "sha256:12"}"#, "64 hex"),
            (r#"{"image": "a:1", "tag": "2"}"#, "unknown field"),
            (r#"{"digest": "x"}"#, "missing field `image`"),
            (
                &format!(
                    r#"{{"image": "a:1@{DIGEST}", "digest": "sha256:{}"}}"#,
                    "0".repeat(64)
                ),
                "another digest",
            ),
        ] {
            let refused = push(body).unwrap_err();
            assert!(refused.contains(reason), "{body}: {refused}");
        }
    }
}
