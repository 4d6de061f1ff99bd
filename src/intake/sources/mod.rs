//! The senders whose webhooks say an image was pushed, one module each. A sender is its
//! path, the way it proves it may push, and its parser; every parser produces the same
//! [`PushEvent`]s, and nothing past the intake sees a payload.

pub mod acr;
pub mod distribution;
pub mod dockerhub;
pub mod gitea;
pub mod github;
pub mod harbor;
pub mod image;
pub mod jfrog;
pub mod quay;

use serde::de::DeserializeOwned;
/// The headers of a delivery.
pub use warp::http::HeaderMap;

use crate::domain::{ImageRef, PushEvent, SourceKind, excerpt};

/// How a sender proves it may push. Keys and signatures are compared in constant time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// One of the webhook keys, as `Authorization: Bearer <key>` or, for senders that
    /// cannot set headers, as `?key=<key>`; checked before the body is read.
    Key,
    /// One of the webhook keys in `Authorization`, as `Bearer <key>` or bare (Harbor sends
    /// its "auth header" verbatim).
    KeyHeader,
    /// `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the raw body keyed with
    /// `GITHUB_WEBHOOK_SECRET`.
    GitHubSignature,
    /// `X-Gitea-Signature` (or `X-Forgejo-Signature`): the hex HMAC-SHA256 of the raw body
    /// keyed with `GITEA_WEBHOOK_SECRET`.
    GiteaSignature,
    /// `X-JFrog-Event-Auth`: one of the webhook keys, or the hex HMAC-SHA256 of the raw
    /// body keyed with one.
    JFrog,
}

/// One sender of push notifications.
#[derive(Debug)]
pub struct Source {
    /// Which sender this is.
    pub kind: SourceKind,
    /// Its route: `POST /<path>`.
    pub path: &'static str,
    /// How it authenticates.
    pub auth: Auth,
    /// The header naming each delivery, whose repetition (a redelivery) is ignored.
    pub delivery_id: Option<&'static str>,
    /// Reads a delivery into the pushes it announces, and what it announces that is not
    /// a push to act on.
    pub parse: fn(&Delivery<'_>) -> Result<Announced, NotAPush>,
}

/// One authenticated request of a sender.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The raw body.
    pub body: &'a [u8],
    /// The request's headers.
    pub headers: &'a HeaderMap,
}

impl<'a> Delivery<'a> {
    /// A delivery of `body` without headers of note.
    pub fn of(body: &'a [u8]) -> Self {
        static NONE: std::sync::LazyLock<HeaderMap> = std::sync::LazyLock::new(HeaderMap::new);
        Self {
            body,
            headers: &NONE,
        }
    }

    /// The value of the header `name`, when it is text.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// What a delivery announces.
#[derive(Debug, Default, PartialEq)]
pub struct Announced {
    /// The pushes to act on.
    pub pushes: Vec<PushEvent>,
    /// Why each other event it holds is not one (a pull, a layer, an untagged manifest):
    /// such a delivery is answered `202` and costs no target a request.
    pub ignored: Vec<String>,
    /// A sender's test of the hook (GitHub's `ping`), answered `200`.
    pub ping: bool,
}

impl Announced {
    /// A delivery of one push.
    pub fn push(push: PushEvent) -> Self {
        Self {
            pushes: vec![push],
            ..Self::default()
        }
    }

    /// A delivery of nothing to act on, and why.
    pub fn ignored(why: impl Into<String>) -> Self {
        Self {
            ignored: vec![why.into()],
            ..Self::default()
        }
    }

    /// A sender's test of the hook.
    pub fn ping() -> Self {
        Self {
            ping: true,
            ..Self::default()
        }
    }
}

/// Every sender.
pub static SOURCES: [Source; 9] = [
    dockerhub::SOURCE,
    distribution::SOURCE,
    github::SOURCE,
    harbor::SOURCE,
    quay::SOURCE,
    acr::SOURCE,
    jfrog::SOURCE,
    gitea::SOURCE,
    image::SOURCE,
];

/// The sender whose route is `POST /<path>`.
pub fn by_path(path: &str) -> Option<&'static Source> {
    SOURCES.iter().find(|source| source.path == path)
}

/// Why a body is not a push. The message is safe to send back to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotAPush(pub String);

/// The image `host/repository:tag` a registry's push names, as autoredeploy names it: the
/// registry host is kept (`docker.io` and its aliases become `docker.io`), and a tag is
/// required. `what` names the field for the message.
pub fn pushed_image(
    host: &str,
    repository: &str,
    tag: &str,
    what: &str,
) -> Result<ImageRef, NotAPush> {
    let reference = format!("{host}/{repository}:{tag}");
    let image = ImageRef::parse(&reference).map_err(|error| {
        NotAPush(format!(
            "{what} does not name an image ({}): {error}",
            excerpt(&reference)
        ))
    })?;
    if image.is_pinned_by_digest() || image.tag().is_none() {
        return Err(NotAPush(format!("{what} names no tag")));
    }
    Ok(image)
}

/// The host (and port, when the URL names one) of `url`: a registry as images name it.
pub fn host_of(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    let host = url.host_str()?.to_owned();
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// A digest as registries write it (`sha256:` and 64 hex digits), or `None`.
pub fn digest(value: Option<&str>) -> Option<String> {
    let value = value?.trim();
    let hex = value.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|byte| byte.is_ascii_hexdigit()))
        .then(|| value.to_ascii_lowercase())
}

/// Deepest nesting of arrays and objects accepted; pushes are a few levels deep.
const MAX_DEPTH: usize = 32;

/// Parses a JSON body as `T` (a sender's payload, described as `what`), refusing deep
/// nesting before parsing and quoting at most an excerpt of what it did not expect.
pub fn read_json<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, NotAPush> {
    if nesting_depth(body) > MAX_DEPTH {
        return Err(NotAPush(format!(
            "the body is nested more than {MAX_DEPTH} levels deep; a push is not"
        )));
    }
    serde_json::from_slice(body).map_err(|err| {
        let is_syntax_error = err.is_syntax() || err.is_eof();
        // serde quotes the value it did not expect, which may be as long as the body.
        let err = excerpt(&err.to_string());
        NotAPush(if is_syntax_error {
            format!("the body is not valid JSON: {err}")
        } else {
            format!("the body is not {what}: {err}")
        })
    })
}

/// The deepest nesting of `[` and `{` outside strings (a cheap scan, before parsing).
fn nesting_depth(body: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0, false, false);
    for &byte in body {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_has_its_own_path() {
        for source in &SOURCES {
            assert_eq!(by_path(source.path).map(|s| s.kind), Some(source.kind));
        }
        assert!(by_path("nowhere").is_none());
    }
}
