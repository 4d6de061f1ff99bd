//! What the journal keeps of a Rancher upgrade: its steps, and with them the versions of
//! the launch configs before our upgrade, which tell a resumed job whether Rancher applied
//! an upgrade whose answer it never saw.

use std::collections::BTreeMap;

use super::matching::{self, Targets};
use super::state::{PRIMARY, ServiceState};
use crate::domain::ImageRef;

/// The steps of a Rancher upgrade, as the journal records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Nothing sent to Rancher yet.
    Planned,
    /// Finishing an upgrade someone left in `upgraded`, before ours.
    FinishingPrevious,
    /// Our upgrade is being (or has been) posted.
    Upgrading,
    /// Rancher reached `upgraded` with our launch config; `finishupgrade` is being posted.
    Finishing,
    /// A failed upgrade is being rolled back.
    RollingBack,
    /// A failed upgrade is being cancelled.
    Cancelling,
}

impl Step {
    const ALL: [Step; 6] = [
        Step::Planned,
        Step::FinishingPrevious,
        Step::Upgrading,
        Step::Finishing,
        Step::RollingBack,
        Step::Cancelling,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Planned => crate::journal::PLANNED,
            Self::FinishingPrevious => "finishing-previous",
            Self::Upgrading => "upgrading",
            Self::Finishing => "finishing",
            Self::RollingBack => "rolling-back",
            Self::Cancelling => "cancelling",
        }
    }

    pub(super) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|step| step.as_str() == name)
    }
}

/// The `version` of each launch config about to be upgraded (`""` for the primary, the
/// sidekick's name otherwise), sorted by key. Rancher gives every upgraded launch config a
/// new version. Journaled as a JSON object; held as a list, which a unit in flight keeps
/// for the whole upgrade (a map's smallest node is half a kilobyte).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Versions(Vec<(String, String)>);

impl Versions {
    fn sorted(mut versions: Vec<(String, String)>) -> Self {
        versions.sort();
        Self(versions)
    }
}

impl serde::Serialize for Versions {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(key, version)| (key, version)))
    }
}

impl<'de> serde::Deserialize<'de> for Versions {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let versions = BTreeMap::<String, String>::deserialize(deserializer)?;
        Ok(Self(versions.into_iter().collect()))
    }
}

impl Versions {
    /// Whether every version is known: only then can a resumed job tell whether Rancher
    /// applied an upgrade whose answer it never saw.
    pub(super) fn all_known(&self) -> bool {
        !self.0.is_empty() && self.0.iter().all(|(_, version)| !version.is_empty())
    }
}

/// What the journal keeps with a step: the versions before our upgrade or, once a recovery
/// has started, the reason it started for.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Checkpoint {
    /// The versions before our upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) versions: Option<Versions>,
    /// Why a recovery was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) reason: Option<String>,
}

impl Checkpoint {
    pub(super) fn read(text: Option<&str>) -> Result<Self, String> {
        match text {
            None => Ok(Self::default()),
            Some(text) => serde_json::from_str(text)
                .map_err(|err| format!("the journal's checkpoint is unreadable: {err}")),
        }
    }

    pub(super) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The versions of the launch configs about to be upgraded.
pub(super) fn versions_of(service: &ServiceState, targets: &Targets) -> Versions {
    let keys = targets
        .primary
        .then_some(PRIMARY)
        .into_iter()
        .chain(targets.sidekicks.iter().map(String::as_str));
    Versions::sorted(
        keys.map(|key| (key.to_owned(), version_of(service, key)))
            .collect(),
    )
}

/// Whether Rancher gave any of the recorded launch configs a new version: then it applied
/// an upgrade since they were recorded.
pub(super) fn versions_changed(service: &ServiceState, before: &Versions) -> bool {
    before
        .0
        .iter()
        .any(|(key, version)| version_of(service, key) != *version)
}

/// Whether every recorded launch config is still part of the service and runs an image
/// that `pushed` updates: with [`versions_changed`], that the upgrade Rancher applied is
/// ours, not someone else's to another image (a sidekick that disappeared is not ours).
pub(super) fn recorded_configs_run(
    service: &ServiceState,
    before: &Versions,
    pushed: &ImageRef,
) -> bool {
    before.0.iter().all(|(key, _)| {
        service
            .launch_config(key)
            .is_some_and(|config| matching::runs_image(config.image_uuid.as_deref(), pushed))
    })
}

/// The version of launch config `key`, empty when it has none (or is gone).
fn version_of(service: &ServiceState, key: &str) -> String {
    service
        .launch_config(key)
        .and_then(|config| config.version.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_versions_are_never_taken_for_a_record() {
        assert!(!Versions::default().all_known());
        assert!(!Versions([(PRIMARY.to_owned(), String::new())].into()).all_known());
        assert!(Versions([(PRIMARY.to_owned(), "3".to_owned())].into()).all_known());
    }

    fn service(primary_image: &str, sidekick: Option<&str>) -> ServiceState {
        let sidekicks: Vec<serde_json::Value> = sidekick
            .map(|image| serde_json::json!({ "name": "shipper", "imageUuid": image, "version": "2" }))
            .into_iter()
            .collect();
        let document = serde_json::json!({
            "id": "1s1",
            "launchConfig": { "imageUuid": primary_image, "version": "6" },
            "secondaryLaunchConfigs": sidekicks,
        });
        ServiceState::decode(document.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn an_applied_upgrade_is_ours_only_if_the_recorded_configs_run_the_pushed_image() {
        let pushed = ImageRef::parse("myorg/web").unwrap();
        let before = Versions([(PRIMARY.to_owned(), "5".to_owned())].into());
        let ours = service("docker:myorg/web:latest", None);
        assert!(versions_changed(&ours, &before));
        assert!(recorded_configs_run(&ours, &before, &pushed));
        let someone_elses = service("docker:myorg/web:canary", None);
        assert!(!recorded_configs_run(&someone_elses, &before, &pushed));
        let with_sidekick = Versions(
            [
                (PRIMARY.to_owned(), "5".to_owned()),
                ("shipper".to_owned(), "1".to_owned()),
            ]
            .into(),
        );
        assert!(recorded_configs_run(
            &service("docker:myorg/web:latest", Some("docker:myorg/web:latest")),
            &with_sidekick,
            &pushed
        ));
        assert!(
            !recorded_configs_run(&ours, &with_sidekick, &pushed),
            "a sidekick that disappeared is not ours"
        );
    }

    #[test]
    fn a_checkpoint_reads_back_what_was_written() {
        let checkpoint = Checkpoint {
            versions: Some(Versions([(PRIMARY.to_owned(), "5".to_owned())].into())),
            reason: Some("stuck".into()),
        };
        assert_eq!(
            Checkpoint::read(Some(&checkpoint.to_json())),
            Ok(checkpoint)
        );
        assert_eq!(Checkpoint::read(None), Ok(Checkpoint::default()));
        assert!(Checkpoint::read(Some("[1]")).is_err());
        for step in Step::ALL {
            assert_eq!(Step::parse(step.as_str()), Some(step));
        }
    }
}
