use std::fmt;

use super::ImageRef;

/// Which sender said an image was pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// Docker Hub's repository webhook.
    DockerHub,
    /// `POST /notify/{container}`: redeploy that container (trigger-docker-pull's API).
    Notify,
    /// `PUT /service/{name}`: set that Swarm service's image (symfoni/deployer's API).
    Service,
    /// A distribution registry's notifications (`POST /autoredeploy/registry`).
    Registry,
    /// A CI job's `POST /autoredeploy/image`.
    Image,
    /// GitHub's package webhook (GHCR).
    GitHub,
    /// Harbor's webhook.
    Harbor,
    /// Quay's repository push notification.
    Quay,
    /// Azure Container Registry's webhook.
    Acr,
    /// JFrog Artifactory's Docker webhook.
    JFrog,
    /// Gitea's (or Forgejo's) package webhook.
    Gitea,
    /// The safety re-check (`AUTOREDEPLOY_RECHECK_INTERVAL`), which found a tag moved.
    Recheck,
}

impl SourceKind {
    /// The name stored in the journal and shown in `/jobs`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DockerHub => "dockerhub",
            Self::Notify => "notify",
            Self::Service => "service",
            Self::Registry => "registry",
            Self::Image => "image",
            Self::GitHub => "github",
            Self::Harbor => "harbor",
            Self::Quay => "quay",
            Self::Acr => "acr",
            Self::JFrog => "jfrog",
            Self::Gitea => "gitea",
            Self::Recheck => "recheck",
        }
    }

    /// The source of that name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "dockerhub" => Some(Self::DockerHub),
            "notify" => Some(Self::Notify),
            "service" => Some(Self::Service),
            "registry" => Some(Self::Registry),
            "image" => Some(Self::Image),
            "github" => Some(Self::GitHub),
            "harbor" => Some(Self::Harbor),
            "quay" => Some(Self::Quay),
            "acr" => Some(Self::Acr),
            "jfrog" => Some(Self::JFrog),
            "gitea" => Some(Self::Gitea),
            "recheck" => Some(Self::Recheck),
            _ => None,
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// "A new version of this image was pushed": what every inbound webhook format becomes.
///
/// The deploy core and the platforms only ever see this type, never a sender's payload.
#[derive(Clone, PartialEq)]
pub struct PushEvent {
    /// The pushed image, normalised, always with a tag and never with a digest.
    pub image: ImageRef,
    /// The content digest the tag points to now, when the sender says so (`sha256:…`).
    pub digest: Option<String>,
    /// Who said so.
    pub source: SourceKind,
    /// Who pushed, when the sender says so; only for the log and the history.
    pub pusher: Option<String>,
    /// Where the sender wants to be told the result (Docker Hub's `callback_url`). It may
    /// carry a token: it is kept, never logged or shown.
    pub callback_url: Option<url::Url>,
    /// The one unit to redeploy, for a request that names it; `None` for a push, which
    /// concerns every unit running the image.
    pub only: Option<super::UnitRef>,
}

impl PushEvent {
    /// A push of `image` that a sender announced: it concerns every unit that runs the
    /// image, and wants no callback.
    pub fn announced(
        image: ImageRef,
        digest: Option<String>,
        source: SourceKind,
        pusher: Option<String>,
    ) -> Self {
        Self {
            image,
            digest,
            source,
            pusher,
            callback_url: None,
            only: None,
        }
    }
}

impl fmt::Debug for PushEvent {
    /// Everything but the callback URL, which may carry a token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushEvent")
            .field("image", &self.image)
            .field("digest", &self.digest)
            .field("source", &self.source)
            .field("pusher", &self.pusher)
            .field("only", &self.only)
            .field(
                "callback_url",
                &self.callback_url.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callback_url_is_never_shown() {
        let push = PushEvent {
            image: ImageRef::parse("myorg/web").unwrap(),
            digest: None,
            source: SourceKind::DockerHub,
            pusher: None,
            callback_url: Some(
                "https://registry.hub.docker.com/u/x/hook/secret-token/"
                    .parse()
                    .unwrap(),
            ),
            only: None,
        };
        let shown = format!("{push:?}");
        assert!(
            !shown.contains("secret-token") && shown.contains("redacted"),
            "{shown}"
        );
    }
}
