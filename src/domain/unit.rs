use std::fmt;

/// A platform autoredeploy deploys to. Its name is used in `AUTOREDEPLOY_TARGETS`, in the
/// journal and in `/jobs`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// Services of a Rancher 1.x (Cattle) environment.
    Rancher,
    /// Containers of a Docker Engine.
    Containers,
    /// Services of a Docker Swarm.
    Swarm,
}

impl TargetKind {
    /// Every target this release knows, in the order jobs scan them.
    pub const ALL: [TargetKind; 3] = [
        TargetKind::Rancher,
        TargetKind::Containers,
        TargetKind::Swarm,
    ];

    /// The name used in settings, the journal and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rancher => "rancher",
            Self::Containers => "containers",
            Self::Swarm => "swarm",
        }
    }

    /// The target of that name, if this release knows it.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One workload on one target: a Rancher service or a container.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitRef {
    /// The platform it lives on.
    pub target: TargetKind,
    /// Its id on that platform: a Rancher service id such as `1s6`, a container's name
    /// (which, unlike its id, outlives its recreation).
    pub id: String,
}

impl UnitRef {
    /// The unit written `<target>/<id>`, as [`Display`](fmt::Display) writes it.
    pub fn parse(text: &str) -> Option<Self> {
        let (target, id) = text.split_once('/')?;
        Some(Self {
            target: TargetKind::parse(target)?,
            id: id.to_owned(),
        })
        .filter(|unit| !unit.id.is_empty())
    }
}

impl fmt::Display for UnitRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.target, self.id)
    }
}

/// How a unit of a job ended: one set that every platform shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnitEnd {
    /// It runs the pushed image now.
    Upgraded,
    /// It already ran the pushed image's content; nothing was changed.
    UpToDate,
    /// It runs the image but was deliberately left alone (opted out, stopped, …).
    Skipped,
    /// Its upgrade failed and it was put back as it was.
    RolledBack,
    /// Its upgrade failed and was cancelled where it stood.
    Cancelled,
    /// Its upgrade failed and it was left as it was, as configured.
    Left,
    /// Its upgrade failed, or could not be carried through.
    Failed,
}

impl UnitEnd {
    /// Every end, in the order `/jobs` counts them.
    pub const ALL: [UnitEnd; 7] = [
        UnitEnd::Upgraded,
        UnitEnd::UpToDate,
        UnitEnd::Skipped,
        UnitEnd::RolledBack,
        UnitEnd::Cancelled,
        UnitEnd::Left,
        UnitEnd::Failed,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upgraded => "upgraded",
            Self::UpToDate => "up-to-date",
            Self::Skipped => "skipped",
            Self::RolledBack => "rolled-back",
            Self::Cancelled => "cancelled",
            Self::Left => "left",
            Self::Failed => "failed",
        }
    }

    /// The end of that name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|end| end.as_str() == name)
    }

    /// Whether the upgrade was attempted and did not complete.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Self::RolledBack | Self::Cancelled | Self::Left | Self::Failed
        )
    }
}

impl fmt::Display for UnitEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A unit's end, and why: every end but a plain `upgraded` carries a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// How it ended.
    pub end: UnitEnd,
    /// Why (for `upgraded`, an optional remark such as "left in upgraded").
    pub reason: Option<String>,
}

impl Outcome {
    /// Upgraded, nothing to add.
    pub fn upgraded() -> Self {
        Self {
            end: UnitEnd::Upgraded,
            reason: None,
        }
    }

    /// An end with its reason.
    pub fn because(end: UnitEnd, reason: impl Into<String>) -> Self {
        Self {
            end,
            reason: Some(reason.into()),
        }
    }

    /// Failed, with the reason.
    pub fn failed(reason: impl Into<String>) -> Self {
        Self::because(UnitEnd::Failed, reason)
    }

    /// Skipped, with the reason.
    pub fn skipped(reason: impl Into<String>) -> Self {
        Self::because(UnitEnd::Skipped, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for end in UnitEnd::ALL {
            assert_eq!(UnitEnd::parse(end.as_str()), Some(end));
        }
        for kind in TargetKind::ALL {
            assert_eq!(TargetKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(UnitEnd::parse("finished"), None);
    }
}
