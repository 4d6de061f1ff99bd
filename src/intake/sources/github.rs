//! GitHub's `package` (and `registry_package`) webhook: a container version published to
//! GHCR. A multi-arch push sends one event per manifest, of which only the tagged index
//! carries a tag: the untagged ones are ignored.

use serde::Deserialize;

use super::{Announced, Auth, Delivery, NotAPush, Source, digest, pushed_image, read_json};
use crate::domain::{PushEvent, SourceKind, excerpt};

/// `POST /autoredeploy/github`, signed with `GITHUB_WEBHOOK_SECRET` in
/// `X-Hub-Signature-256`; a repeated `X-GitHub-Delivery` is ignored.
pub const SOURCE: Source = Source {
    kind: SourceKind::GitHub,
    path: "autoredeploy/github",
    auth: Auth::GitHubSignature,
    delivery_id: Some("x-github-delivery"),
    parse,
};

/// GHCR's host, where a package names none.
const GHCR: &str = "ghcr.io";

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    action: String,
    #[serde(default, alias = "registry_package")]
    package: Option<Package>,
    #[serde(default)]
    sender: Option<Account>,
}

#[derive(Deserialize)]
struct Package {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    package_type: Option<String>,
    #[serde(default)]
    ecosystem: Option<String>,
    #[serde(default)]
    owner: Option<Account>,
    package_version: Option<PackageVersion>,
}

#[derive(Deserialize)]
struct Account {
    #[serde(default)]
    login: String,
}

#[derive(Deserialize)]
struct PackageVersion {
    #[serde(default)]
    package_url: Option<String>,
    #[serde(default)]
    container_metadata: Option<ContainerMetadata>,
}

#[derive(Deserialize)]
struct ContainerMetadata {
    #[serde(default)]
    tag: Option<Tag>,
    #[serde(default)]
    manifest: Option<Manifest>,
}

#[derive(Deserialize)]
struct Tag {
    #[serde(default)]
    name: String,
    #[serde(default)]
    digest: Option<String>,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    digest: Option<String>,
}

fn parse(delivery: &Delivery<'_>) -> Result<Announced, NotAPush> {
    match delivery.header("x-github-event").unwrap_or_default() {
        "ping" => return Ok(Announced::ping()),
        "package" | "registry_package" | "package_v2" => {}
        other => {
            return Ok(Announced::ignored(format!(
                "a GitHub `{}` event, not a package",
                excerpt(other)
            )));
        }
    }
    let payload: Payload = read_json(delivery.body, "a GitHub package event")?;
    let package = payload
        .package
        .ok_or_else(|| NotAPush("the event has no `package`".into()))?;
    if !matches!(payload.action.as_str(), "published" | "updated") {
        return Ok(Announced::ignored(format!(
            "a package {}, not published",
            excerpt(&payload.action)
        )));
    }
    let kind = package
        .package_type
        .or(package.ecosystem)
        .unwrap_or_default();
    if !kind.eq_ignore_ascii_case("container") && !kind.eq_ignore_ascii_case("docker") {
        return Ok(Announced::ignored(format!(
            "a {} package, not a container",
            excerpt(&kind)
        )));
    }
    let version = package
        .package_version
        .ok_or_else(|| NotAPush("the package has no `package_version`".into()))?;
    let metadata = version.container_metadata;
    let tag = metadata
        .as_ref()
        .and_then(|metadata| metadata.tag.as_ref())
        .map(|tag| tag.name.trim().to_owned())
        .unwrap_or_default();
    if tag.is_empty() {
        return Ok(Announced::ignored(
            "an untagged manifest (one of a multi-arch push)",
        ));
    }
    // `ghcr.io/<owner>/<name>:<tag>`, sometimes with nothing after the colon.
    let (host, repository) = match version.package_url.as_deref().map(str::trim) {
        Some(url) if !url.is_empty() => {
            let name = match url.rsplit_once(':') {
                Some((name, after)) if !after.contains('/') => name,
                _ => url,
            };
            name.split_once('/')
                .map(|(host, repository)| (host.to_owned(), repository.to_owned()))
                .ok_or_else(|| {
                    NotAPush(format!(
                        "package_version.package_url ({}) names no registry",
                        excerpt(url)
                    ))
                })?
        }
        _ => {
            let owner = package
                .namespace
                .filter(|namespace| !namespace.is_empty())
                .or(package.owner.map(|owner| owner.login))
                .unwrap_or_default();
            (GHCR.to_owned(), format!("{owner}/{}", package.name))
        }
    };
    let image = pushed_image(
        &host.to_ascii_lowercase(),
        &repository.to_ascii_lowercase(),
        &tag,
        "the package",
    )?;
    let digest = metadata.and_then(|metadata| {
        digest(metadata.tag.and_then(|tag| tag.digest).as_deref())
            .or_else(|| digest(metadata.manifest.and_then(|m| m.digest).as_deref()))
    });
    Ok(Announced::push(PushEvent::announced(
        image,
        digest,
        SourceKind::GitHub,
        payload.sender.map(|sender| sender.login),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderMap;

    fn deliver(event: &str, body: &str) -> Result<Announced, NotAPush> {
        let mut headers = HeaderMap::new();
        headers.insert("x-github-event", event.parse().unwrap());
        parse(&Delivery {
            body: body.as_bytes(),
            headers: &headers,
        })
    }

    /// The recorded event, its tag set as that of a tagged push.
    fn tagged(fixture: &str, key: &str) -> String {
        let mut event: serde_json::Value = serde_json::from_str(fixture).unwrap();
        let version = &mut event[key]["package_version"];
        version["container_metadata"]["tag"]["name"] = "v1.2".into();
        version["container_metadata"]["tag"]["digest"] =
            format!("sha256:{}", "ab".repeat(32)).into();
        version["package_url"] = "ghcr.io/Codertocat/hello-world:v1.2".into();
        event[key]["package_type"] = "CONTAINER".into();
        event.to_string()
    }

    const PUBLISHED: &str =
        include_str!("../../../fixtures/registries/ghcr-package-published.json");
    const REGISTRY_PACKAGE: &str =
        include_str!("../../../fixtures/registries/ghcr-registry-package-published.json");

    #[test]
    fn a_published_tagged_container_is_a_push_of_ghcr() {
        for (event, body, sender) in [
            ("package", tagged(PUBLISHED, "package"), "Codertocat"),
            (
                "registry_package",
                tagged(REGISTRY_PACKAGE, "registry_package"),
                "github-actions[bot]",
            ),
        ] {
            let announced = deliver(event, &body).unwrap();
            let push = &announced.pushes[0];
            assert_eq!(
                push.image.to_string(),
                "ghcr.io/codertocat/hello-world:v1.2"
            );
            assert_eq!(push.digest, Some(format!("sha256:{}", "ab".repeat(32))));
            assert_eq!(push.pusher.as_deref(), Some(sender));
        }
        // The 2021 beta event names no URL: GHCR, the namespace and the name.
        let beta = deliver(
            "package_v2",
            &include_str!("../../../fixtures/registries/ghcr-package-v2-create-2021.json")
                .replace("\"create\"", "\"published\""),
        )
        .unwrap();
        assert_eq!(
            beta.pushes[0].image.to_string(),
            "ghcr.io/utaitebox/utaitebox-server:3.2.1"
        );
    }

    #[test]
    fn pings_other_events_untagged_manifests_and_other_packages_are_not_pushes() {
        assert!(deliver("ping", "{}").unwrap().ping);
        for (event, body, reason) in [
            ("push", "{}".to_owned(), "not a package"),
            ("package", PUBLISHED.to_owned(), "a npm package"),
            (
                "package",
                PUBLISHED.replace("\"npm\"", "\"CONTAINER\""),
                "untagged manifest",
            ),
            (
                "package",
                tagged(PUBLISHED, "package").replace("\"published\"", "\"deleted\""),
                "package deleted",
            ),
        ] {
            let announced = deliver(event, &body).unwrap();
            assert!(announced.pushes.is_empty());
            assert!(announced.ignored[0].contains(reason), "{announced:?}");
        }
        let refused = deliver("package", r#"{"action": "published"}"#).unwrap_err();
        assert!(refused.to_string().contains("no `package`"), "{refused}");
    }
}
