//! What the journal keeps of a container's redeploy: its steps, and the ids that let a
//! resumed job find both containers again whatever their names are by then.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The steps of a redeploy, as the journal records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Nothing done yet.
    Planned,
    /// The image is being pulled; nothing else is touched.
    Pulling,
    /// The new container is being created under the temporary name.
    Creating,
    /// The old container is being stopped and renamed, the new one named and started.
    Switching,
    /// The new container is on trial.
    Gating,
    /// The new container passed; the old one is being removed.
    RemovingOld,
    /// The new container failed; the old one is being put back.
    RollingBack,
    /// The containers in the network namespace of the old one are being recreated in
    /// that of the container that holds the name now.
    Dependants,
}

impl Step {
    const ALL: [Step; 8] = [
        Step::Planned,
        Step::Pulling,
        Step::Creating,
        Step::Switching,
        Step::Gating,
        Step::RemovingOld,
        Step::RollingBack,
        Step::Dependants,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planned => crate::journal::PLANNED,
            Self::Pulling => "pulling",
            Self::Creating => "creating",
            Self::Switching => "switching",
            Self::Gating => "gating",
            Self::RemovingOld => "removing-old",
            Self::RollingBack => "rolling-back",
            Self::Dependants => "recreating-dependants",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|step| step.as_str() == name)
    }
}

/// The checkpoint of the steps from `creating` on, journaled as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Checkpoint {
    /// The old container's id.
    pub old_id: String,
    /// The id of the image pulled for the new container.
    pub image_id: String,
    /// The new container's id, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_id: Option<String>,
    /// The old container's restart policy, set to `no` while it is stopped so that an
    /// engine restart does not bring it back beside the new one.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub restart_policy: Value,
    /// Why the new container is being rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The running containers in the old container's network namespace, by name, found
    /// before it was stopped: they are recreated in the namespace of whichever container
    /// holds the name at the end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependants: Vec<String>,
    /// What went wrong after the new container passed its gate, for the unit's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
}

impl Checkpoint {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: Option<&str>) -> Option<Self> {
        serde_json::from_str(text?).ok()
    }
}
