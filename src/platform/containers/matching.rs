//! Which running containers a push redeploys: the image rule and the opt-in label.

use std::collections::HashMap;

use crate::config::MatchSettings;
use crate::domain::ImageRef;

/// What a push means for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// It does not run the pushed image and tag.
    NotRunning,
    /// It runs them, but is not to be redeployed: why.
    Skip(String),
    /// Redeploy it.
    Redeploy,
}

/// Judges a running container created from `reference` with `labels`; `is_own` says
/// whether it is the container autoredeploy itself runs in.
pub(super) fn judge(
    reference: &str,
    labels: Option<&HashMap<String, String>>,
    is_own: bool,
    pushed: &ImageRef,
    rule: &MatchSettings,
) -> Verdict {
    // A Swarm task's container belongs to its service: replacing it behind Swarm's back
    // would only make Swarm replace it again.
    if !runs(reference, pushed) || swarm_service_of(labels).is_some() {
        return Verdict::NotRunning;
    }
    if is_own {
        return Verdict::Skip(
            "this is the container autoredeploy runs in, which it never stops".into(),
        );
    }
    match opted_in(labels, rule) {
        Ok(()) => Verdict::Redeploy,
        Err(reason) => Verdict::Skip(reason),
    }
}

/// The Swarm service whose task a container with `labels` runs, if it is one.
pub(super) fn swarm_service_of(labels: Option<&HashMap<String, String>>) -> Option<&str> {
    labels?
        .get(SWARM_TASK_LABEL)
        .and(labels?.get(SWARM_SERVICE_LABEL))
        .map(String::as_str)
}

/// The labels the engine puts on the container of a Swarm task.
const SWARM_TASK_LABEL: &str = "com.docker.swarm.task.id";
const SWARM_SERVICE_LABEL: &str = "com.docker.swarm.service.name";

/// Whether a container with `labels` is opted in: `"true"` is, `"false"` is not, and
/// without the label the default decides. `Err` says why not.
pub(super) fn opted_in(
    labels: Option<&HashMap<String, String>>,
    rule: &MatchSettings,
) -> Result<(), String> {
    match labels.and_then(|labels| labels.get(&rule.label_name)) {
        None if rule.default_opt_in => Ok(()),
        None => Err(format!(
            "no {} label, and DOCKER_AUTOREDEPLOY_DEFAULT is false",
            rule.label_name
        )),
        Some(value) if value.trim().eq_ignore_ascii_case("true") => Ok(()),
        Some(value) if value.trim().eq_ignore_ascii_case("false") => {
            Err(format!("labelled {}=false", rule.label_name))
        }
        Some(value) => Err(format!(
            "label {} is `{}`, neither `true` nor `false`",
            rule.label_name,
            crate::domain::excerpt(value)
        )),
    }
}

/// Whether a container created from `reference` runs what `pushed` updates. A container
/// created from an image id, or pinned by digest, never does.
pub(super) fn runs(reference: &str, pushed: &ImageRef) -> bool {
    !reference.starts_with("sha256:")
        && ImageRef::parse(reference).is_ok_and(|image| image.is_updated_by(pushed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(default_opt_in: bool) -> MatchSettings {
        MatchSettings {
            default_opt_in,
            label_name: "tech.manas.service.autoredeploy".into(),
        }
    }

    fn labels(value: &str) -> HashMap<String, String> {
        HashMap::from([(
            "tech.manas.service.autoredeploy".to_owned(),
            value.to_owned(),
        )])
    }

    #[test]
    fn the_image_is_matched_as_docker_normalises_it() {
        let pushed = ImageRef::parse("nginx:1.25").unwrap();
        for reference in [
            "nginx:1.25",
            "docker.io/library/nginx:1.25",
            "index.docker.io/library/nginx:1.25",
        ] {
            assert!(runs(reference, &pushed), "{reference}");
        }
        for reference in [
            "nginx:1.26",
            "nginx",
            "registry.local/nginx:1.25",
            "nginx:1.25@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "nginx@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(!runs(reference, &pushed), "{reference}");
        }
        assert!(runs("nginx", &ImageRef::parse("nginx:latest").unwrap()));
    }

    #[test]
    fn the_label_opts_in_or_out_and_its_absence_follows_the_default() {
        let pushed = ImageRef::parse("web:1").unwrap();
        let judged = |labels: Option<&HashMap<String, String>>, default, own| {
            judge("web:1", labels, own, &pushed, &rule(default))
        };
        assert_eq!(judged(None, true, false), Verdict::Redeploy);
        assert!(matches!(judged(None, false, false), Verdict::Skip(_)));
        assert_eq!(
            judged(Some(&labels(" TRUE ")), false, false),
            Verdict::Redeploy
        );
        assert!(
            matches!(judged(Some(&labels("false")), true, false), Verdict::Skip(reason) if reason.contains("=false"))
        );
        assert!(
            matches!(judged(Some(&labels("yes")), true, false), Verdict::Skip(reason) if reason.contains("`yes`"))
        );
        assert!(
            matches!(judged(Some(&labels("true")), true, true), Verdict::Skip(reason) if reason.contains("never stops"))
        );
        assert_eq!(
            judge("other:1", None, false, &pushed, &rule(true)),
            Verdict::NotRunning
        );
        let task = HashMap::from([
            ("com.docker.swarm.task.id".to_owned(), "x1".to_owned()),
            ("com.docker.swarm.service.name".to_owned(), "web".to_owned()),
        ]);
        assert_eq!(judged(Some(&task), true, false), Verdict::NotRunning);
        assert_eq!(swarm_service_of(Some(&task)), Some("web"));
    }
}
