//! Which launch configs of a service a push upgrades: the image rule and the opt-in label.

use serde_json::Value;

use crate::config::MatchSettings;
use crate::domain::{ImageRef, excerpt};
use crate::platform::rancher::{LaunchConfigView, Service};

/// What a push means for one service.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// No launch config of the service runs the pushed image.
    NotRunning,
    /// The service has no launch config at all (`dnsService`, `externalService`, …).
    NoLaunchConfig,
    /// The service could not be judged because a field had an unexpected shape.
    Unreadable(String),
    /// The service runs the image but its label (or the default) says not to upgrade it.
    OptedOut(String),
    /// Upgrade these launch configs.
    Upgrade(Targets),
}

/// The launch configs of one service that run the pushed image and are opted in.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Targets {
    /// The primary `launchConfig`.
    pub primary: bool,
    /// Names of the sidekicks (`secondaryLaunchConfigs[i].name`).
    pub sidekicks: Vec<String>,
}

/// What the opt-in label of a launch config says.
enum Label {
    Absent,
    OptIn,
    OptOut,
    Unrecognised(String),
}

fn read_label(view: &LaunchConfigView, name: &str) -> Result<Label, String> {
    Ok(match view.label(name)? {
        None | Some(Value::Null) => Label::Absent,
        Some(Value::String(value)) if value.trim().eq_ignore_ascii_case("true") => Label::OptIn,
        Some(Value::String(value)) if value.trim().eq_ignore_ascii_case("false") => Label::OptOut,
        Some(Value::String(value)) => Label::Unrecognised(value),
        Some(other) => Label::Unrecognised(other.to_string()),
    })
}

/// Decides what `pushed` means for `service`.
///
/// A launch config is upgraded when its image is updated by the push and the opt-in label
/// allows it. The label is read from that launch config; a sidekick without the label
/// follows the primary's; without any, [`MatchSettings::default_opt_in`] decides.
pub fn judge(service: &Service, pushed: &ImageRef, rule: &MatchSettings) -> Verdict {
    let Some(primary_raw) = &service.launch_config else {
        return Verdict::NoLaunchConfig;
    };
    let primary = match LaunchConfigView::read(primary_raw) {
        Ok(view) => view,
        Err(reason) => return Verdict::Unreadable(reason),
    };
    let mut sidekicks = Vec::new();
    for raw in service.secondary_launch_configs.iter().flatten() {
        match LaunchConfigView::read(raw) {
            Ok(view) => sidekicks.push(view),
            Err(reason) => return Verdict::Unreadable(format!("sidekick: {reason}")),
        }
    }

    // Most services run other images: labels are read only for those that run this one.
    let primary_runs = runs(&primary, pushed);
    if !primary_runs && !sidekicks.iter().any(|sidekick| runs(sidekick, pushed)) {
        return Verdict::NotRunning;
    }
    let primary_label = match read_label(&primary, &rule.label_name) {
        Ok(label) => label,
        Err(reason) => return Verdict::Unreadable(reason),
    };
    let mut targets = Targets::default();
    let mut refusals = Vec::new();
    if primary_runs {
        match opt_in(&primary_label, None, rule) {
            Ok(()) => targets.primary = true,
            Err(reason) => refusals.push(reason),
        }
    }
    for sidekick in &sidekicks {
        if !runs(sidekick, pushed) {
            continue;
        }
        let Some(name) = sidekick.name.clone() else {
            return Verdict::Unreadable("a sidekick that runs the image has no name".into());
        };
        let label = match read_label(sidekick, &rule.label_name) {
            Ok(label) => label,
            Err(reason) => return Verdict::Unreadable(format!("sidekick {name}: {reason}")),
        };
        match opt_in(&label, Some(&primary_label), rule) {
            Ok(()) => targets.sidekicks.push(name),
            Err(reason) => refusals.push(format!("sidekick {name}: {reason}")),
        }
    }

    if targets.primary || !targets.sidekicks.is_empty() {
        Verdict::Upgrade(targets)
    } else if let Some(reason) = refusals.into_iter().next() {
        Verdict::OptedOut(reason)
    } else {
        Verdict::NotRunning
    }
}

fn runs(view: &LaunchConfigView, pushed: &ImageRef) -> bool {
    runs_image(view.image_uuid.as_deref(), pushed)
}

/// Whether a launch config of `image_uuid` runs an image that `pushed` updates.
pub(super) fn runs_image(image_uuid: Option<&str>, pushed: &ImageRef) -> bool {
    image_uuid
        .and_then(|uuid| image_of_uuid(uuid).ok())
        .is_some_and(|image| image.is_updated_by(pushed))
}

/// Rancher stores images as `docker:<reference>`; other prefixes are not container images.
const DOCKER_PREFIX: &str = "docker:";

/// The image of Rancher's `imageUuid` (`docker:nginx:1.25`), normalised.
pub fn image_of_uuid(image_uuid: &str) -> Result<ImageRef, String> {
    match image_uuid.strip_prefix(DOCKER_PREFIX) {
        Some(reference) => ImageRef::parse(reference).map_err(|err| err.to_string()),
        None => Err(format!(
            "`{}` is not a Docker image (Rancher image ids start with `docker:`)",
            excerpt(image_uuid)
        )),
    }
}

fn opt_in(own: &Label, inherited: Option<&Label>, rule: &MatchSettings) -> Result<(), String> {
    let label = match (own, inherited) {
        (Label::Absent, Some(inherited)) => inherited,
        _ => own,
    };
    let name = &rule.label_name;
    match label {
        Label::OptIn => Ok(()),
        Label::OptOut => Err(format!("label {name} is \"false\"")),
        Label::Unrecognised(value) => Err(format!(
            "label {name} is {value:?}; only \"true\" or \"false\" are understood"
        )),
        Label::Absent if rule.default_opt_in => Ok(()),
        Label::Absent => Err(format!(
            "label {name} is not set and RANCHER_AUTOREDEPLOY_DEFAULT is false"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LABEL: &str = "tech.manas.service.autoredeploy";

    fn rule(default_opt_in: bool) -> MatchSettings {
        MatchSettings {
            default_opt_in,
            label_name: LABEL.into(),
        }
    }

    fn service(document: Value) -> Service {
        Service::decode(document.to_string().as_bytes()).expect("test service decodes")
    }

    fn with_image(image_uuid: &str, label: Option<&str>) -> Service {
        let labels = match label {
            Some(value) => json!({ LABEL: value, "io.rancher.service.hash": "abc" }),
            None => json!({ "io.rancher.service.hash": "abc" }),
        };
        service(json!({
            "id": "1s1", "type": "service", "state": "active",
            "launchConfig": { "imageUuid": image_uuid, "labels": labels },
            "secondaryLaunchConfigs": []
        }))
    }

    fn push(reference: &str) -> ImageRef {
        ImageRef::parse(reference).unwrap()
    }

    #[test]
    fn an_image_uuid_needs_the_docker_prefix() {
        let image = image_of_uuid("docker:ubuntu:trusty").unwrap();
        assert_eq!(image.to_string(), "docker.io/library/ubuntu:trusty");
        assert!(image_of_uuid("sim:ubuntu").is_err());
        assert!(image_of_uuid("ubuntu").is_err());
    }

    #[test]
    fn the_opt_in_table() {
        let primary = Verdict::Upgrade(Targets {
            primary: true,
            sidekicks: vec![],
        });
        for (default, label, upgrades) in [
            (true, None, true),
            (true, Some("true"), true),
            (true, Some("false"), false),
            (false, None, false),
            (false, Some("true"), true),
            (false, Some("false"), false),
            (true, Some("TRUE"), true),
            (true, Some("yes"), false),
        ] {
            let verdict = judge(
                &with_image("docker:nginx", label),
                &push("nginx"),
                &rule(default),
            );
            assert_eq!(
                verdict == primary,
                upgrades,
                "default {default}, label {label:?}: {verdict:?}"
            );
            if !upgrades {
                assert!(matches!(verdict, Verdict::OptedOut(_)), "{verdict:?}");
            }
        }
    }

    #[test]
    fn other_images_are_not_running_the_push() {
        let verdict = judge(
            &with_image("docker:nginx:1.25", None),
            &push("nginx"),
            &rule(true),
        );
        assert_eq!(verdict, Verdict::NotRunning);
        let verdict = judge(&with_image("sim:nginx", None), &push("nginx"), &rule(true));
        assert_eq!(verdict, Verdict::NotRunning);
    }

    #[test]
    fn a_matching_sidekick_is_targeted_by_name_and_inherits_the_primary_label() {
        let document = |primary_label: &str| {
            service(json!({
                "id": "1s2", "type": "service", "state": "active",
                "launchConfig": { "imageUuid": "docker:myorg/app:2", "labels": { LABEL: primary_label } },
                "secondaryLaunchConfigs": [
                    { "name": "log-shipper", "imageUuid": "docker:myorg/shipper:latest", "labels": {} },
                    { "name": "cache", "imageUuid": "docker:redis:7", "labels": {} }
                ]
            }))
        };
        assert_eq!(
            judge(&document("true"), &push("myorg/shipper"), &rule(false)),
            Verdict::Upgrade(Targets {
                primary: false,
                sidekicks: vec!["log-shipper".into()]
            })
        );
        assert!(matches!(
            judge(&document("false"), &push("myorg/shipper"), &rule(true)),
            Verdict::OptedOut(_)
        ));
    }

    #[test]
    fn labels_are_read_only_where_the_image_runs() {
        let odd = |image: &str| {
            service(
                json!({ "id": "1s7", "type": "service", "launchConfig": { "imageUuid": image, "labels": "oops" } }),
            )
        };
        assert_eq!(
            judge(&odd("docker:redis"), &push("nginx"), &rule(true)),
            Verdict::NotRunning
        );
        assert!(matches!(
            judge(&odd("docker:nginx"), &push("nginx"), &rule(true)),
            Verdict::Unreadable(_)
        ));
    }

    #[test]
    fn services_without_launch_config_or_with_odd_fields_are_told_apart() {
        let dns = service(
            json!({ "id": "1s9", "type": "dnsService", "state": "active", "launchConfig": null }),
        );
        assert_eq!(
            judge(&dns, &push("nginx"), &rule(true)),
            Verdict::NoLaunchConfig
        );
        let odd =
            service(json!({ "id": "1s8", "type": "service", "launchConfig": { "imageUuid": 42 } }));
        assert!(matches!(
            judge(&odd, &push("nginx"), &rule(true)),
            Verdict::Unreadable(_)
        ));
    }
}
