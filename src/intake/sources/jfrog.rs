//! JFrog Artifactory's webhook, domain `docker`, event `pushed`: one event per tag, a
//! multi-arch one included. Artifactory serves an image as
//! `<host>/<repository key>/<path>:<tag>`.

use serde::Deserialize;

use super::{
    Announced, Auth, Delivery, NotAPush, Source, digest, host_of, pushed_image, read_json,
};
use crate::domain::{PushEvent, SourceKind, excerpt};

/// `POST /autoredeploy/jfrog`, with `X-JFrog-Event-Auth`: a webhook key as the secret
/// token, or the hex HMAC-SHA256 of the body keyed with one ("use secret for payload
/// signing").
pub const SOURCE: Source = Source {
    kind: SourceKind::JFrog,
    path: "autoredeploy/jfrog",
    auth: Auth::JFrog,
    delivery_id: None,
    parse,
};

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    domain: String,
    #[serde(default)]
    event_type: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    jpd_origin: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    repo_key: String,
    path: String,
    tag: String,
    #[serde(default)]
    sha256: Option<String>,
}

fn parse(delivery: &Delivery<'_>) -> Result<Announced, NotAPush> {
    let payload: Payload = read_json(delivery.body, "a JFrog webhook event")?;
    if payload.domain != "docker" || payload.event_type != "pushed" {
        return Ok(Announced::ignored(format!(
            "a JFrog {} {} event, not a Docker tag pushed",
            excerpt(&payload.domain),
            excerpt(&payload.event_type)
        )));
    }
    let data = payload
        .data
        .ok_or_else(|| NotAPush("the event has no `data`".into()))?;
    let host = payload
        .jpd_origin
        .as_deref()
        .and_then(host_of)
        .ok_or_else(|| {
            NotAPush(
                "jpd_origin is missing: set a Custom Base URL in Artifactory's general \
                 settings, so that its webhooks name the registry host"
                    .into(),
            )
        })?;
    // `path` is `<image path>/<tag>/manifest.json` (or `list.manifest.json`).
    let segments: Vec<&str> = data.path.split('/').collect();
    let image_path = match segments.len() {
        3.. => segments[..segments.len() - 2].join("/"),
        _ => {
            return Err(NotAPush(format!(
                "data.path ({}) is not <image>/<tag>/manifest.json",
                excerpt(&data.path)
            )));
        }
    };
    let repository = format!("{}/{image_path}", data.repo_key);
    Ok(Announced::push(PushEvent::announced(
        pushed_image(&host, &repository, &data.tag, "the event")?,
        digest(data.sha256.map(|hex| format!("sha256:{hex}")).as_deref()),
        SourceKind::JFrog,
        None,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announced(body: &str) -> Result<Announced, NotAPush> {
        parse(&Delivery::of(body.as_bytes()))
    }

    #[test]
    fn a_pushed_tag_names_the_host_the_repository_key_and_the_path() {
        let push = &announced(include_str!(
            "../../../fixtures/registries/jfrog-docker-pushed.json"
        ))
        .unwrap()
        .pushes[0];
        assert_eq!(
            push.image.to_string(),
            "trial30g6c2.jfrog.io/test-repo/foo/bar/busybox:latest"
        );
        assert_eq!(
            push.digest.as_deref(),
            Some("sha256:2278daae78b8899e6c7192a8a6f49763b9e0cde6fcf94de34f115df4401b955f")
        );
        let multi_arch = announced(include_str!(
            "../../../fixtures/registries/jfrog-docker-pushed-keel.json"
        ))
        .unwrap();
        assert_eq!(
            multi_arch.pushes[0].image.to_string(),
            "example.jfrog.io/docker-remote-cache/library/ubuntu:latest"
        );
    }

    #[test]
    fn other_events_are_ignored_and_an_unknown_host_is_refused() {
        let deleted = include_str!("../../../fixtures/registries/jfrog-docker-pushed.json")
            .replace("\"pushed\"", "\"deleted\"");
        assert!(announced(&deleted).unwrap().ignored[0].contains("docker deleted"));
        let refused = announced(include_str!(
            "../../../fixtures/registries/jfrog-docker-pushed-no-jpd-origin.json"
        ))
        .unwrap_err();
        assert!(refused.to_string().contains("Custom Base URL"), "{refused}");
    }
}
