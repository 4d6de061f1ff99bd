//! The targets: the platforms whose services or containers a push upgrades. Each one is
//! optional, so that a process drives only the platforms it is given.
//!
//! `AUTOREDEPLOY_TARGETS` names the targets to use. Unset, a target is used when its
//! settings are present: Rancher when `RANCHER_HOST`, `CATTLE_URL`, `RANCHER_API_KEY` or
//! `RANCHER_API_SECRET` (or `RANCHER_API_SECRET_FILE`) is set; containers when
//! `DOCKER_HOST` is set; Swarm when the engine of `DOCKER_HOST` turns out at start to be a
//! Swarm manager, or, with no other target, the engine at the default socket (as on a
//! manager with its socket mounted and nothing else set). `CATTLE_ACCESS_KEY` and
//! `CATTLE_SECRET_KEY` alone do not count: Rancher injects them into any container with the
//! agent-role labels, and without `CATTLE_URL` they say nothing about where Rancher is.
//!
//! A target's own settings given while it is not used (excluded by `AUTOREDEPLOY_TARGETS`,
//! or left off because its connection is not set) are an error, not a warning: someone
//! meant that target to run, and ignoring them would only show, much later, as pushes that
//! upgrade nothing. The `CATTLE_*` variables are exempt, since Rancher sets them, not the
//! operator.

use super::ConfigError;
use super::containers::{self, ContainersTarget};
use super::rancher::{self, RancherTarget};
use super::swarm::{self, SwarmTarget};
use super::vars::{ConnectionVars, ContainersVars, EngineVars, RancherVars, SwarmVars, list};
use crate::domain::TargetKind;

/// The targets in use; each is `None` when it is not.
#[derive(Debug, Clone)]
pub struct TargetSettings {
    /// Services of a Rancher 1.x (Cattle) environment.
    pub rancher: Option<RancherTarget>,
    /// Containers of a Docker Engine.
    pub containers: Option<ContainersTarget>,
    /// Services of a Docker Swarm.
    pub swarm: Option<SwarmTarget>,
    /// Rancher's injected key pair is set without its address, which the message of a
    /// process left without a target explains.
    cattle_without_url: bool,
}

impl TargetSettings {
    /// What to set, for a process that turns out at start to have no target: none is
    /// configured, and the engine at the default socket is no Swarm manager.
    pub fn what_to_set(&self) -> String {
        let mut message = "no target is configured, so no push could upgrade anything: to \
                           upgrade Rancher 1.x services, set RANCHER_HOST, RANCHER_API_KEY and \
                           RANCHER_API_SECRET (AUTOREDEPLOY_TARGETS=rancher makes them \
                           required); to redeploy Docker containers, set DOCKER_HOST or \
                           AUTOREDEPLOY_TARGETS=containers; Swarm services are updated when \
                           DOCKER_HOST (or the default socket, /var/run/docker.sock) is a \
                           Swarm manager's engine"
            .to_owned();
        if self.cattle_without_url {
            message.push_str(
                "; CATTLE_ACCESS_KEY and CATTLE_SECRET_KEY are set but CATTLE_URL is not \
                 (Rancher leaves it out when its agents were registered with a localhost \
                 URL): set RANCHER_HOST and they are used",
            );
        }
        message
    }
}

/// Decides which targets are used and validates their settings.
pub(super) fn validate(
    names: Option<String>,
    rancher: RancherVars,
    engine: EngineVars,
    containers: ContainersVars,
    swarm: SwarmVars,
) -> Result<TargetSettings, ConfigError> {
    let named = named(names.as_deref())?;
    let rancher_used = match &named {
        Some(named) => named.contains(&TargetKind::Rancher),
        None => switches_rancher_on(&rancher.connection),
    };
    if !rancher_used {
        refuse_unused_rancher(&rancher, named.is_some())?;
    }
    let containers_used = match &named {
        Some(named) => named.contains(&TargetKind::Containers),
        None => engine.docker_host.is_some(),
    };
    if !containers_used {
        refuse_unused_containers(&containers, named.is_some())?;
    }
    // Unnamed, Swarm is used when the engine turns out at start to be a manager: that of
    // DOCKER_HOST, or the default socket's when no other target is configured. Named, or
    // with settings of its own, it must be one.
    let swarm_given = swarm.given_names();
    let swarm_used = match &named {
        Some(named) => named.contains(&TargetKind::Swarm),
        None => containers_used || !rancher_used || !swarm_given.is_empty(),
    };
    let swarm_asked_for = match &named {
        Some(_) if swarm_used => Some("AUTOREDEPLOY_TARGETS names `swarm`".to_owned()),
        Some(_) => None,
        None if swarm_given.is_empty() => None,
        None => Some(format!(
            "{} {} set",
            swarm_given.join(", "),
            if swarm_given.len() == 1 { "is" } else { "are" }
        )),
    };
    if !swarm_used {
        refuse_unused(&swarm_given, TargetKind::Swarm, named.is_some(), "")?;
    }
    let engine = (containers_used || swarm_used)
        .then(|| containers::engine(engine))
        .transpose()?;
    let cattle_without_url = cattle_without_url(&rancher.connection);
    let targets = TargetSettings {
        rancher: rancher_used
            .then(|| rancher::validate(rancher))
            .transpose()?,
        containers: match (&engine, containers_used) {
            (Some(engine), true) => Some(containers::validate(engine.clone(), containers)?),
            _ => None,
        },
        swarm: match (engine, swarm_used) {
            (Some(engine), true) => Some(swarm::validate(engine, swarm_asked_for, swarm)?),
            _ => None,
        },
        cattle_without_url,
    };
    Ok(targets)
}

/// Refuses the containers target's settings while it is not used.
fn refuse_unused_containers(vars: &ContainersVars, excluded: bool) -> Result<(), ConfigError> {
    refuse_unused(
        &vars.given_names(),
        TargetKind::Containers,
        excluded,
        "set DOCKER_HOST, or add `containers` to AUTOREDEPLOY_TARGETS for the default socket",
    )
}

/// The targets `AUTOREDEPLOY_TARGETS` names, or `None` when it is unset.
fn named(value: Option<&str>) -> Result<Option<Vec<TargetKind>>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let available = quoted(TargetKind::ALL.iter().map(|target| target.as_str()));
    let mut targets = Vec::new();
    for name in list(Some(value)) {
        match TargetKind::ALL
            .into_iter()
            .find(|target| target.as_str() == name)
        {
            Some(target) if !targets.contains(&target) => targets.push(target),
            Some(_) => {}
            None => {
                return Err(ConfigError::invalid(
                    "AUTOREDEPLOY_TARGETS",
                    &format!("comma-separated names of targets: {available}"),
                    name,
                ));
            }
        }
    }
    if targets.is_empty() {
        return Err(ConfigError::invalid(
            "AUTOREDEPLOY_TARGETS",
            &format!("comma-separated names of targets, such as {available}"),
            value,
        ));
    }
    Ok(Some(targets))
}

/// Whether, without `AUTOREDEPLOY_TARGETS`, Rancher is used: when where it is or how to
/// sign in to it is given.
fn switches_rancher_on(vars: &ConnectionVars) -> bool {
    vars.rancher_host.is_some()
        || vars.cattle_url.is_some()
        || vars.rancher_api_key.is_some()
        || vars.rancher_api_secret.is_some()
}

/// Rancher's key pair injected by Rancher, but not its address: the target stays off, and
/// the operator is told why.
fn cattle_without_url(vars: &ConnectionVars) -> bool {
    vars.cattle_url.is_none()
        && (vars.cattle_access_key.is_some() || vars.cattle_secret_key.is_some())
}

/// Refuses Rancher settings given while the Rancher target is not used.
fn refuse_unused_rancher(vars: &RancherVars, excluded: bool) -> Result<(), ConfigError> {
    refuse_unused(
        &vars.given_names(),
        TargetKind::Rancher,
        excluded,
        "set RANCHER_HOST, RANCHER_API_KEY and RANCHER_API_SECRET to use it",
    )
}

/// Refuses the `given` settings of `target`, which is not used: `excluded` by
/// `AUTOREDEPLOY_TARGETS`, or not switched on (`switch_on` says how to). Only the names
/// are shown, never the values.
fn refuse_unused(
    given: &[&str],
    target: TargetKind,
    excluded: bool,
    switch_on: &str,
) -> Result<(), ConfigError> {
    if given.is_empty() {
        return Ok(());
    }
    let names = given.join(", ");
    let (is, them) = if given.len() == 1 {
        ("is", "it")
    } else {
        ("are", "them")
    };
    let message = if excluded {
        format!(
            "{names} {is} set, but AUTOREDEPLOY_TARGETS does not name `{target}`: add \
             `{target}` to AUTOREDEPLOY_TARGETS, or remove {them}"
        )
    } else {
        let target = match target {
            TargetKind::Rancher => "the Rancher target",
            TargetKind::Containers => "the containers target",
            TargetKind::Swarm => "the Swarm target",
        };
        format!("{names} {is} set, but {target} is not used: {switch_on}, or remove {them}")
    };
    Err(ConfigError(message))
}

/// `` `a`, `b` and `c` `` for a message.
fn quoted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<String> = names.map(|name| format!("`{name}`")).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.concat(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::config::tests::{error_of, minimal, vars, with};

    const HUB_KEY: (&str, &str) = ("DOCKER_HUB_KEY", "hub-secret-value");

    fn only(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_vars(vars(&[HUB_KEY]).into_iter().chain(vars(pairs)))
    }

    #[test]
    fn unset_rancher_is_used_when_any_of_its_connection_variables_is_given() {
        assert!(
            Settings::from_vars(minimal())
                .unwrap()
                .targets
                .rancher
                .is_some()
        );
        // Each of them alone switches Rancher on, and its validation names what is missing.
        for (given, missing) in [
            (
                ("RANCHER_HOST", "rancher:8080"),
                "RANCHER_API_KEY and RANCHER_API_SECRET",
            ),
            (
                ("CATTLE_URL", "http://rancher:8080/v1"),
                "RANCHER_API_KEY and",
            ),
            (("RANCHER_API_KEY", "ACCESSKEY"), "RANCHER_HOST is required"),
            (
                ("RANCHER_API_SECRET", "rancher-secret"),
                "RANCHER_HOST is required",
            ),
        ] {
            let refused = error_of(only(&[given]));
            assert!(refused.contains(missing), "{given:?}: {refused}");
        }
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "rancher-secret\n").unwrap();
        let refused = error_of(only(&[(
            "RANCHER_API_SECRET_FILE",
            secret.to_str().unwrap(),
        )]));
        assert!(refused.contains("RANCHER_HOST is required"), "{refused}");
    }

    #[test]
    fn named_rancher_requires_its_settings_as_before() {
        assert!(
            with(&[("AUTOREDEPLOY_TARGETS", " rancher , rancher ")])
                .unwrap()
                .targets
                .rancher
                .is_some()
        );
        let refused = error_of(only(&[("AUTOREDEPLOY_TARGETS", "rancher")]));
        assert!(refused.contains("RANCHER_HOST is required"), "{refused}");
    }

    #[test]
    fn docker_host_switches_the_containers_target_on() {
        let settings = only(&[("DOCKER_HOST", "unix:///run/docker.sock")]).unwrap();
        assert!(settings.targets.rancher.is_none());
        let containers = settings.targets.containers.unwrap();
        assert_eq!(containers.engine.address, "unix:///run/docker.sock");
        assert!(containers.matching.default_opt_in);
        assert_eq!(containers.gate.healthy_within.as_secs(), 120);
        assert_eq!(containers.gate.stable_for.as_secs(), 10);

        // Named, it uses the default socket; with Rancher, both are used.
        let both = with(&[("AUTOREDEPLOY_TARGETS", "rancher,containers")]).unwrap();
        assert!(both.targets.rancher.is_some());
        assert_eq!(
            both.targets.containers.unwrap().engine.address,
            "unix:///var/run/docker.sock"
        );
        let refused = error_of(only(&[
            ("DOCKER_HOST", "tcp://docker:2375"),
            ("DOCKER_UPGRADE_TIMEOUT_S", "0"),
        ]));
        assert!(refused.contains("DOCKER_UPGRADE_TIMEOUT_S"), "{refused}");
    }

    #[test]
    fn the_swarm_target_follows_the_engine_or_its_name() {
        let settings = only(&[("DOCKER_HOST", "unix:///run/docker.sock")]).unwrap();
        let swarm = settings.targets.swarm.unwrap();
        assert!(
            swarm.asked_for.is_none(),
            "used only if the engine is a manager"
        );
        assert_eq!(swarm.engine.address, "unix:///run/docker.sock");
        assert_eq!(swarm.matching.label_name, "deployer.allowUpdates");
        assert!(!swarm.matching.default_opt_in);
        assert_eq!(swarm.timeout.as_secs(), 300);
        assert_eq!(swarm.on_failure, crate::config::SwarmOnFailure::Rollback);

        let named = only(&[
            ("AUTOREDEPLOY_TARGETS", "swarm"),
            ("SWARM_UPGRADE_ON_FAILURE", "leave"),
        ])
        .unwrap();
        assert!(named.targets.containers.is_none());
        let swarm = named.targets.swarm.unwrap();
        assert_eq!(
            swarm.asked_for.as_deref(),
            Some("AUTOREDEPLOY_TARGETS names `swarm`")
        );
        assert_eq!(swarm.engine.address, "unix:///var/run/docker.sock");
        assert_eq!(swarm.on_failure, crate::config::SwarmOnFailure::Leave);

        let refused = error_of(only(&[
            ("AUTOREDEPLOY_TARGETS", "swarm"),
            ("SWARM_UPGRADE_ON_FAILURE", "cancel"),
        ]));
        assert!(refused.contains("SWARM_UPGRADE_ON_FAILURE"), "{refused}");
        // Beside Rancher, the default socket is not looked at; DOCKER_HOST's engine is.
        assert!(with(&[]).unwrap().targets.swarm.is_none());
        let beside = with(&[("DOCKER_HOST", "tcp://docker:2375")]).unwrap();
        assert!(beside.targets.swarm.unwrap().asked_for.is_none());

        // Its own settings make a manager required.
        let given = with(&[("SWARM_AUTOREDEPLOY_DEFAULT", "true")]).unwrap();
        let swarm = given.targets.swarm.unwrap();
        assert_eq!(
            swarm.asked_for.as_deref(),
            Some("SWARM_AUTOREDEPLOY_DEFAULT is set")
        );
        assert!(swarm.matching.default_opt_in);
        let refused = error_of(with(&[
            ("AUTOREDEPLOY_TARGETS", "rancher"),
            ("SWARM_AUTOREDEPLOY_DEFAULT", "true"),
        ]));
        assert!(
            refused.contains("SWARM_AUTOREDEPLOY_DEFAULT is set")
                && refused.contains("does not name `swarm`"),
            "{refused}"
        );
    }

    #[test]
    fn without_settings_a_swarm_at_the_default_socket_is_looked_for() {
        let settings = only(&[]).unwrap();
        assert!(settings.targets.rancher.is_none() && settings.targets.containers.is_none());
        let swarm = settings.targets.swarm.unwrap();
        assert_eq!(swarm.engine.address, "unix:///var/run/docker.sock");
        assert!(swarm.asked_for.is_none());
    }

    #[test]
    fn containers_settings_without_the_containers_target_are_refused() {
        let refused = error_of(only(&[("DOCKER_AUTOREDEPLOY_DEFAULT", "false")]));
        assert!(
            refused.contains("DOCKER_AUTOREDEPLOY_DEFAULT is set")
                && refused.contains("containers target is not used")
                && refused.contains("DOCKER_HOST"),
            "{refused}"
        );
        let refused = error_of(with(&[
            ("AUTOREDEPLOY_TARGETS", "rancher"),
            ("DOCKER_UPGRADE_STABLE_S", "5"),
            ("DOCKER_HOST", "unix:///run/docker.sock"),
        ]));
        assert!(
            refused.contains("DOCKER_UPGRADE_STABLE_S is set")
                && refused.contains("does not name `containers`"),
            "{refused}"
        );
    }

    #[test]
    fn unknown_targets_are_refused_with_the_known_ones() {
        let refused = error_of(with(&[("AUTOREDEPLOY_TARGETS", "rancher,kubernetes")]));
        assert!(
            refused.contains("AUTOREDEPLOY_TARGETS")
                && refused.contains("`kubernetes`")
                && refused.contains("`rancher`")
                && refused.contains("`containers`")
                && refused.contains("`swarm`"),
            "{refused}"
        );
        let refused = error_of(with(&[("AUTOREDEPLOY_TARGETS", " , ")]));
        assert!(
            refused.contains("AUTOREDEPLOY_TARGETS") && refused.contains("`rancher`"),
            "{refused}"
        );
    }

    #[test]
    fn without_any_target_the_process_is_told_what_to_set() {
        let told = only(&[]).unwrap().targets.what_to_set();
        for name in [
            "RANCHER_HOST",
            "RANCHER_API_KEY",
            "RANCHER_API_SECRET",
            "AUTOREDEPLOY_TARGETS",
            "DOCKER_HOST",
            "Swarm manager",
        ] {
            assert!(told.contains(name), "{told}");
        }
        assert!(!told.contains("CATTLE"), "{told}");
    }

    #[test]
    fn injected_cattle_keys_alone_do_not_switch_rancher_on() {
        let cattle_keys = [
            ("CATTLE_ACCESS_KEY", "AGENTKEY"),
            ("CATTLE_SECRET_KEY", "agent-secret"),
        ];
        let without_url = only(&cattle_keys).unwrap();
        assert!(without_url.targets.rancher.is_none());
        let told = without_url.targets.what_to_set();
        assert!(
            told.contains("no target")
                && told.contains("CATTLE_URL is not")
                && told.contains("set RANCHER_HOST"),
            "{told}"
        );
        assert!(!told.contains("agent-secret"), "{told}");

        // With the address given, they are the credentials.
        let settings =
            only(&[cattle_keys[0], cattle_keys[1], ("RANCHER_HOST", "rancher")]).unwrap();
        let rancher = settings.targets.rancher.unwrap();
        assert_eq!(rancher.connection.access_key, "AGENTKEY");
    }

    #[test]
    fn rancher_settings_without_the_rancher_target_are_refused() {
        let refused = error_of(only(&[
            ("RANCHER_UPGRADE_BATCH_SIZE", "2"),
            ("RANCHER_PROJECT_ID", "1a5"),
        ]));
        assert!(
            refused.contains("RANCHER_PROJECT_ID, RANCHER_UPGRADE_BATCH_SIZE are set")
                && refused.contains("not used")
                && refused.contains("RANCHER_HOST"),
            "{refused}"
        );
    }

    #[test]
    fn rancher_settings_excluded_by_the_list_are_refused_by_name_only() {
        let rancher = |pairs: &[(&str, &str)]| -> RancherVars {
            crate::config::vars::deserialize(vars(pairs)).unwrap()
        };
        let given = rancher(&[
            ("RANCHER_HOST", "rancher:8080"),
            ("RANCHER_API_SECRET", "rancher-secret-value"),
            ("CATTLE_URL", "http://rancher:8080/v1"),
        ]);
        let refused = refuse_unused_rancher(&given, true)
            .expect_err("Rancher settings are refused")
            .to_string();
        assert!(
            refused.contains("RANCHER_HOST, RANCHER_API_SECRET are set")
                && refused.contains("AUTOREDEPLOY_TARGETS does not name `rancher`"),
            "{refused}"
        );
        assert!(!refused.contains("rancher-secret-value"), "{refused}");
        assert!(!refused.contains("CATTLE_URL"), "{refused}");

        // What Rancher injects by itself is no reason to refuse.
        let injected = rancher(&[
            ("CATTLE_URL", "http://rancher:8080/v1"),
            ("CATTLE_ACCESS_KEY", "AGENTKEY"),
            ("CATTLE_SECRET_KEY", "agent-secret"),
        ]);
        assert!(refuse_unused_rancher(&injected, true).is_ok());
    }
}
