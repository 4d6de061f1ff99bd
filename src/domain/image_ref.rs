use std::fmt;

use super::reference_grammar;

/// Docker Hub's registry, as a normalised reference names it.
const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's older name, the same registry.
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// The namespace of Docker Hub's official images, implied by a one-segment name.
const OFFICIAL_IMAGES: &str = "library";
/// Longest normalised name (registry, `/`, repository) Docker accepts.
const NAME_MAX: usize = 255;
/// The tag a reference names when it names neither tag nor digest.
const DEFAULT_TAG: &str = "latest";

/// A Docker image reference, normalised the way Docker does it.
///
/// `nginx`, `nginx:latest`, `library/nginx`, `docker.io/library/nginx:latest` and
/// `index.docker.io/library/nginx` are all the same `ImageRef`: registry `docker.io`,
/// repository `library/nginx`, tag `latest`. A reference pinned by digest keeps its digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry host (and port), lower case; `docker.io` for Docker Hub.
    registry: String,
    /// Repository path inside the registry, with `library/` for official Docker Hub images.
    repository: String,
    /// Tag; `latest` when the reference names neither tag nor digest.
    tag: Option<String>,
    /// Content digest such as `sha256:…`, when the reference is pinned.
    digest: Option<String>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    /// The string does not follow Docker's reference grammar.
    #[error("`{reference}` is not a valid image reference ({reason})")]
    Invalid {
        /// The offending text.
        reference: String,
        /// What the parser objected to.
        reason: String,
    },
}

/// Longest piece of a rejected input repeated in an error message.
const EXCERPT_CHARS: usize = 120;

/// `text`, or its beginning and its length when it is long: error messages (and the log
/// lines and answers that carry them) stay short whatever a caller sends.
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}… ({} bytes)", &text[..end], text.len()),
    }
}

impl ImageRef {
    /// Parses and normalises a Docker image reference.
    pub fn parse(reference: &str) -> Result<Self, ImageRefError> {
        let written =
            reference_grammar::split(reference).map_err(|reason| ImageRefError::Invalid {
                reference: excerpt(reference),
                reason: reason.to_owned(),
            })?;
        // Host names compare without case.
        let registry = match written.domain.map(str::to_ascii_lowercase) {
            None => DOCKER_HUB.to_owned(),
            Some(domain) if domain == DOCKER_HUB_LEGACY => DOCKER_HUB.to_owned(),
            Some(domain) => domain,
        };
        let repository = if registry == DOCKER_HUB && !written.path.contains('/') {
            format!("{OFFICIAL_IMAGES}/{}", written.path)
        } else {
            written.path.to_owned()
        };
        if registry.len() + 1 + repository.len() > NAME_MAX {
            return Err(ImageRefError::Invalid {
                reference: excerpt(reference),
                reason: format!("the name is longer than {NAME_MAX} characters once normalised"),
            });
        }
        let tag = match (written.tag, written.digest) {
            (None, None) => Some(DEFAULT_TAG),
            (tag, _) => tag,
        };
        Ok(Self {
            registry,
            repository,
            tag: tag.map(str::to_owned),
            digest: written.digest.map(str::to_owned),
        })
    }

    /// Registry host, e.g. `docker.io`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Repository path, e.g. `library/nginx`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// Tag, if any (always present unless the reference is pinned by digest only).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// Whether the reference is pinned to a content digest.
    pub fn is_pinned_by_digest(&self) -> bool {
        self.digest.is_some()
    }

    /// Whether a Swarm service running `self` should be updated when `pushed` is pushed:
    /// Swarm pins images as `name:tag@sha256:…`, and such a reference follows its tag. One
    /// pinned by digest alone never does.
    pub fn tag_is_updated_by(&self, pushed: &ImageRef) -> bool {
        self.tag.is_some()
            && self.tag == pushed.tag
            && self.repository == pushed.repository
            && self.registry == pushed.registry
    }

    /// The same reference without its digest: `name:tag`.
    pub fn without_digest(&self) -> ImageRef {
        ImageRef {
            digest: None,
            ..self.clone()
        }
    }

    /// Whether a container running `self` should be upgraded when `pushed` is pushed.
    ///
    /// Same registry, same repository, same tag, and `self` not pinned by digest: a digest
    /// names fixed content that a tag push cannot change.
    pub fn is_updated_by(&self, pushed: &ImageRef) -> bool {
        !self.is_pinned_by_digest() && self.tag_is_updated_by(pushed)
    }

    /// The digest it is pinned to, if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The reference as people write it: without `docker.io/`, nor `library/` for an
    /// official image (`nginx:latest`, `me/blog:v1.12`, `ghcr.io/me/app:1`).
    pub fn familiar(&self) -> String {
        let full = self.to_string();
        match full.strip_prefix("docker.io/") {
            Some(name) => name.strip_prefix("library/").unwrap_or(name).to_owned(),
            None => full,
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn pushed(reference: &str) -> ImageRef {
        ImageRef::parse(reference).expect("test reference parses")
    }

    #[test]
    fn the_familiar_form_drops_only_docker_hub_s_defaults() {
        assert_eq!(pushed("nginx").familiar(), "nginx:latest");
        assert_eq!(
            pushed("docker.io/me/blog:v1.12").familiar(),
            "me/blog:v1.12"
        );
        assert_eq!(
            pushed("ghcr.io/library/app:1").familiar(),
            "ghcr.io/library/app:1"
        );
    }

    #[test]
    fn every_spelling_of_an_official_image_is_the_same_reference() {
        let canonical = pushed("docker.io/library/nginx:latest");
        for spelling in [
            "nginx",
            "nginx:latest",
            "library/nginx",
            "library/nginx:latest",
            "docker.io/nginx",
            "docker.io/library/nginx",
            "index.docker.io/library/nginx:latest",
            "index.docker.io/nginx",
        ] {
            assert_eq!(pushed(spelling), canonical, "{spelling}");
        }
        assert_eq!(canonical.to_string(), "docker.io/library/nginx:latest");
    }

    #[test]
    fn near_misses_are_not_updated_by_the_push() {
        let push = pushed("myorg/api:1.4");
        assert!(pushed("docker.io/myorg/api:1.4").is_updated_by(&push));
        for other in [
            "myorg/api",
            "myorg/api:1.4.1",
            "myorg/api-worker:1.4",
            "otherorg/api:1.4",
            "quay.io/myorg/api:1.4",
            "localhost:5000/myorg/api:1.4",
            "registry.example.com:5000/myorg/api:1.4",
        ] {
            assert!(!pushed(other).is_updated_by(&push), "{other}");
        }
    }

    #[test]
    fn a_digest_pinned_reference_is_never_updated_by_a_tag_push() {
        let push = pushed("nginx:latest");
        assert!(!pushed(&format!("nginx@{DIGEST}")).is_updated_by(&push));
        assert!(!pushed(&format!("nginx:latest@{DIGEST}")).is_updated_by(&push));
    }

    #[test]
    fn docker_hub_host_names_in_any_case_are_docker_hub() {
        // Found by fuzzing: normalising twice gave another repository.
        let mixed = pushed("dockEr.io/zlib:5000");
        assert_eq!(mixed, pushed("zlib:5000"));
        assert_eq!(pushed(&mixed.to_string()), mixed);
        assert_eq!(pushed("INDEX.docker.io/nginx"), pushed("nginx"));
    }

    #[test]
    fn registry_hosts_compare_without_case() {
        assert!(
            pushed("Registry.Example.com/team/app:v1")
                .is_updated_by(&pushed("registry.example.com/team/app:v1"))
        );
    }

    #[test]
    fn names_are_measured_once_normalised() {
        // Found by fuzzing: a name that fits only before `docker.io/library/` is added
        // did not parse again once normalised.
        let longest = "a".repeat(255 - "docker.io/library/".len());
        assert!(ImageRef::parse(&longest).is_ok());
        assert!(ImageRef::parse(&format!("{longest}a")).is_err());
        let on_a_registry = format!("registry.example.com/{}", "b".repeat(234));
        assert_eq!(on_a_registry.len(), 255);
        assert!(ImageRef::parse(&on_a_registry).is_ok());
        assert!(ImageRef::parse(&format!("{on_a_registry}b")).is_err());
    }

    #[test]
    fn garbage_is_rejected_with_the_reason() {
        for bad in ["", "UPPER/case", "nginx:", "nginx:bad tag", "a//b"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn component() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,8}([._-][a-z0-9]{1,5})?"
    }

    fn tag() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"
    }

    fn registry() -> impl Strategy<Value = String> {
        "[a-z]{1,8}\\.(com|io|net)(:[0-9]{2,5})?"
    }

    fn digest() -> impl Strategy<Value = String> {
        "[0-9a-f]{64}".prop_map(|hex| format!("sha256:{hex}"))
    }

    /// Any reference: optional registry, one to three path components, tag and/or digest.
    fn reference() -> impl Strategy<Value = String> {
        (
            proptest::option::of(registry()),
            proptest::collection::vec(component(), 1..=3),
            proptest::option::of(tag()),
            proptest::option::of(digest()),
        )
            .prop_map(|(registry, path, tag, digest)| {
                let mut text = registry.map(|r| format!("{r}/")).unwrap_or_default();
                text.push_str(&path.join("/"));
                if let Some(tag) = tag {
                    text.push_str(&format!(":{tag}"));
                }
                if let Some(digest) = digest {
                    text.push_str(&format!("@{digest}"));
                }
                text
            })
    }

    proptest! {
        #[test]
        fn normalising_twice_changes_nothing(text in reference()) {
            if let Ok(once) = ImageRef::parse(&text) {
                let twice = ImageRef::parse(&once.to_string()).expect("a normalised reference parses");
                prop_assert_eq!(twice, once);
            }
        }

        #[test]
        fn every_spelling_of_a_docker_hub_image_matches_its_push(name in component(), tag in tag()) {
            let pushed = ImageRef::parse(&format!("{name}:{tag}")).unwrap();
            for spelling in [
                format!("{name}:{tag}"),
                format!("library/{name}:{tag}"),
                format!("docker.io/{name}:{tag}"),
                format!("docker.io/library/{name}:{tag}"),
                format!("index.docker.io/library/{name}:{tag}"),
            ] {
                let running = ImageRef::parse(&spelling).unwrap();
                prop_assert!(running.is_updated_by(&pushed), "{} does not match {}", spelling, pushed);
            }
        }

        #[test]
        fn a_digest_pinned_reference_never_matches_a_tag_push(
            path in proptest::collection::vec(component(), 1..=2),
            tag in proptest::option::of(tag()),
            digest in digest(),
        ) {
            let name = path.join("/");
            let pinned = match &tag {
                Some(tag) => format!("{name}:{tag}@{digest}"),
                None => format!("{name}@{digest}"),
            };
            let pinned = ImageRef::parse(&pinned).unwrap();
            let pushed = ImageRef::parse(&format!("{name}:{}", tag.as_deref().unwrap_or("latest"))).unwrap();
            prop_assert!(!pinned.is_updated_by(&pushed));
        }

        #[test]
        fn parsing_any_text_never_panics(text in ".{0,80}") {
            let _ = ImageRef::parse(&text);
        }
    }
}
