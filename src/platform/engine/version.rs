//! Engine API versions: which ones autoredeploy speaks, and the one it uses with an engine.

use std::fmt;

/// An Engine API version, such as `1.41`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    major: u16,
    minor: u16,
}

impl ApiVersion {
    /// The oldest version autoredeploy speaks: Docker 20.10's.
    pub const OLDEST: ApiVersion = ApiVersion::new(1, 41);
    /// The newest version autoredeploy speaks: Docker 28.3–28.5's. Newer engines still
    /// accept it (Docker 29 accepts 1.44 and newer), and 1.52 changes what `create`
    /// accepts.
    pub const NEWEST: ApiVersion = ApiVersion::new(1, 51);
    /// From this version, `create` takes every network of a container, not only one.
    pub const MANY_NETWORKS_AT_CREATE: ApiVersion = ApiVersion::new(1, 44);

    /// The version `major.minor`.
    pub const fn new(major: u16, minor: u16) -> Self {
        Self { major, minor }
    }

    /// The version an engine announces (`"1.41"`).
    pub fn parse(text: &str) -> Option<Self> {
        let (major, minor) = text.trim().split_once('.')?;
        Some(Self::new(major.parse().ok()?, minor.parse().ok()?))
    }

    /// The version to use with an engine whose newest is `engine`, or `None` if that
    /// engine is too old.
    pub fn negotiate(engine: ApiVersion) -> Option<Self> {
        (engine >= Self::OLDEST).then(|| engine.min(Self::NEWEST))
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_version_is_used_up_to_the_newest_spoken() {
        let negotiated = |text| ApiVersion::negotiate(ApiVersion::parse(text).unwrap());
        assert_eq!(negotiated("1.41"), Some(ApiVersion::new(1, 41)));
        assert_eq!(negotiated("1.44"), Some(ApiVersion::new(1, 44)));
        assert_eq!(negotiated("1.56"), Some(ApiVersion::NEWEST));
        assert_eq!(negotiated("1.40"), None);
        assert!(ApiVersion::new(1, 9) < ApiVersion::new(1, 41));
        assert_eq!(ApiVersion::parse("1.x"), None);
        assert_eq!(ApiVersion::NEWEST.to_string(), "1.51");
    }
}
