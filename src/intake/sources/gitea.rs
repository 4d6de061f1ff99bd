//! Gitea's (and Forgejo's) package webhook: a container package version created. Gitea
//! sends one event per manifest stored, and one for a version pushed by digest; only
//! tagged versions are pushes. Gitea lower-cases tags, and says no digest.

use serde::Deserialize;

use super::{Announced, Auth, Delivery, NotAPush, Source, host_of, pushed_image, read_json};
use crate::domain::{PushEvent, SourceKind, excerpt};

/// `POST /autoredeploy/gitea`, signed with `GITEA_WEBHOOK_SECRET` in `X-Gitea-Signature`
/// (or Forgejo's `X-Forgejo-Signature`); a repeated `X-Gitea-Delivery` is ignored.
pub const SOURCE: Source = Source {
    kind: SourceKind::Gitea,
    path: "autoredeploy/gitea",
    auth: Auth::GiteaSignature,
    delivery_id: Some("x-gitea-delivery"),
    parse,
};

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    action: String,
    package: Package,
    #[serde(default)]
    sender: Option<Account>,
}

#[derive(Deserialize)]
struct Package {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    owner: Option<Account>,
    #[serde(default)]
    html_url: Option<String>,
}

#[derive(Deserialize)]
struct Account {
    #[serde(default)]
    login: String,
}

fn parse(delivery: &Delivery<'_>) -> Result<Announced, NotAPush> {
    let event = delivery
        .header("x-gitea-event")
        .or_else(|| delivery.header("x-forgejo-event"))
        .unwrap_or("package");
    if event != "package" {
        return Ok(Announced::ignored(format!(
            "a Gitea `{}` event, not a package",
            excerpt(event)
        )));
    }
    let payload: Payload = read_json(delivery.body, "a Gitea package event")?;
    let package = payload.package;
    if payload.action != "created" {
        return Ok(Announced::ignored(format!(
            "a package {}, not created",
            excerpt(&payload.action)
        )));
    }
    if package.kind != "container" {
        return Ok(Announced::ignored(format!(
            "a {} package, not a container",
            excerpt(&package.kind)
        )));
    }
    if package.version.starts_with("sha256:") {
        return Ok(Announced::ignored(
            "a manifest pushed by digest, without a tag",
        ));
    }
    // The registry is Gitea itself: the host of the package's page.
    let host = package
        .html_url
        .as_deref()
        .and_then(host_of)
        .ok_or_else(|| NotAPush("package.html_url names no host".into()))?;
    let owner = package.owner.map(|owner| owner.login).unwrap_or_default();
    let image = pushed_image(
        &host,
        &format!("{owner}/{}", package.name).to_ascii_lowercase(),
        &package.version,
        "the package",
    )?;
    Ok(Announced::push(PushEvent::announced(
        image,
        None,
        SourceKind::Gitea,
        payload.sender.map(|sender| sender.login),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The fields Gitea's `PackagePayload` carries (no recorded delivery exists).
    fn event(action: &str, kind: &str, version: &str) -> String {
        json!({
            "action": action,
            "repository": null,
            "package": {
                "id": 12,
                "owner": { "id": 1, "login": "team" },
                "repository": null,
                "creator": { "id": 1, "login": "ci" },
                "type": kind,
                "name": "App",
                "version": version,
                "html_url": format!("https://git.example.com:3000/team/-/packages/{kind}/app/{version}"),
                "created_at": "2026-11-30T10:00:00Z"
            },
            "organization": { "id": 1, "login": "team" },
            "sender": { "id": 1, "login": "ci" }
        })
        .to_string()
    }

    #[test]
    fn a_created_container_version_is_a_push_of_gitea_s_own_registry() {
        let announced = parse(&Delivery::of(
            event("created", "container", "1.4").as_bytes(),
        ))
        .unwrap();
        let push = &announced.pushes[0];
        assert_eq!(push.image.to_string(), "git.example.com:3000/team/app:1.4");
        assert_eq!(push.pusher.as_deref(), Some("ci"));
        assert_eq!(push.digest, None);
    }

    #[test]
    fn deletions_other_packages_and_digests_are_not_pushes() {
        let digest = format!("sha256:{}", "0".repeat(64));
        for (body, reason) in [
            (event("deleted", "container", "1.4"), "not created"),
            (event("created", "npm", "1.4"), "not a container"),
            (event("created", "container", &digest), "by digest"),
        ] {
            let announced = parse(&Delivery::of(body.as_bytes())).unwrap();
            assert!(announced.ignored[0].contains(reason), "{announced:?}");
        }
    }
}
