//! The containers target: where the Docker Engine is (Docker's own client variables),
//! which containers a push redeploys, and how long a new container has to prove itself.

use std::path::PathBuf;
use std::time::Duration;

use super::ConfigError;
use super::rancher::{DEFAULT_LABEL_NAME, MatchSettings};
use super::vars::{ContainersVars, EngineVars, parse_bool, parse_or};

/// The socket Docker's own tools use when `DOCKER_HOST` is unset.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// Everything the containers target needs.
#[derive(Debug, Clone)]
pub struct ContainersTarget {
    /// How to reach the engine.
    pub engine: EngineSettings,
    /// Which containers a push redeploys (`DOCKER_AUTOREDEPLOY_LABEL_NAME`,
    /// `DOCKER_AUTOREDEPLOY_DEFAULT`).
    pub matching: MatchSettings,
    /// How long a new container has to prove itself.
    pub gate: GateSettings,
}

/// How to reach a Docker Engine.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// `DOCKER_HOST` as given (or its default), for messages.
    pub address: String,
    /// Where the engine listens.
    pub endpoint: EngineEndpoint,
    /// The folder of `ca.pem`, `cert.pem` and `key.pem` when TLS is used
    /// (`DOCKER_TLS_VERIFY` set; `DOCKER_CERT_PATH`, else the `DOCKER_CONFIG` folder, else
    /// `~/.docker`).
    pub tls_files: Option<PathBuf>,
    /// The folder of the `config.json` with registry credentials (`DOCKER_CONFIG`; `None`
    /// for `~/.docker`).
    pub config_folder: Option<PathBuf>,
}

/// Where an engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEndpoint {
    /// A Unix socket (`unix:///var/run/docker.sock`).
    Unix(PathBuf),
    /// A TCP address (`tcp://docker:2376`).
    Tcp {
        /// Host name or address, without brackets.
        host: String,
        /// Port.
        port: u16,
    },
}

/// What a new container must show before the old one is removed.
#[derive(Debug, Clone, Copy)]
pub struct GateSettings {
    /// Time a container whose image has a `HEALTHCHECK` has to become `healthy`
    /// (`DOCKER_UPGRADE_TIMEOUT_S`).
    pub healthy_within: Duration,
    /// Time a container without a health check must keep running without a restart
    /// (`DOCKER_UPGRADE_STABLE_S`).
    pub stable_for: Duration,
}

/// Validates the containers target's variables.
pub(super) fn validate(
    engine: EngineSettings,
    vars: ContainersVars,
) -> Result<ContainersTarget, ConfigError> {
    Ok(ContainersTarget {
        engine,
        matching: MatchSettings {
            default_opt_in: parse_bool(
                "DOCKER_AUTOREDEPLOY_DEFAULT",
                vars.docker_autoredeploy_default,
                true,
            )?,
            label_name: vars
                .docker_autoredeploy_label_name
                .unwrap_or_else(|| DEFAULT_LABEL_NAME.to_owned()),
        },
        gate: GateSettings {
            healthy_within: Duration::from_secs(parse_or(
                "DOCKER_UPGRADE_TIMEOUT_S",
                vars.docker_upgrade_timeout_s,
                120,
                1..=86_400,
            )?),
            stable_for: Duration::from_secs(parse_or(
                "DOCKER_UPGRADE_STABLE_S",
                vars.docker_upgrade_stable_s,
                10,
                0..=86_400,
            )?),
        },
    })
}

/// Validates Docker's client variables, as Docker's own tools read them.
pub(super) fn engine(vars: EngineVars) -> Result<EngineSettings, ConfigError> {
    let address = vars
        .docker_host
        .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_owned());
    // Docker uses TLS whenever DOCKER_TLS_VERIFY is set, whatever its value.
    let tls = vars.docker_tls_verify.is_some();
    let endpoint = endpoint(&address, tls)?;
    let config_folder = vars.docker_config.map(PathBuf::from);
    let tls_files = match (&endpoint, tls) {
        (EngineEndpoint::Tcp { .. }, true) => Some(
            vars.docker_cert_path
                .map(PathBuf::from)
                .or_else(|| config_folder.clone())
                .or_else(|| std::env::home_dir().map(|home| home.join(".docker")))
                .ok_or_else(|| {
                    ConfigError(
                        "DOCKER_TLS_VERIFY is set, but neither DOCKER_CERT_PATH nor a home \
                         folder says where ca.pem, cert.pem and key.pem are"
                            .into(),
                    )
                })?,
        ),
        _ => None,
    };
    Ok(EngineSettings {
        address,
        endpoint,
        tls_files,
        config_folder,
    })
}

/// The endpoint of `DOCKER_HOST`.
fn endpoint(address: &str, tls: bool) -> Result<EngineEndpoint, ConfigError> {
    let expected = "`unix:///path/to/docker.sock` or `tcp://host:port`";
    let invalid = || ConfigError::invalid("DOCKER_HOST", expected, address);
    if let Some(path) = address.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err(invalid());
        }
        return Ok(EngineEndpoint::Unix(PathBuf::from(path)));
    }
    let Some(rest) = address.strip_prefix("tcp://") else {
        return Err(match address.split_once("://") {
            Some((scheme, _)) => ConfigError(format!(
                "DOCKER_HOST: `{scheme}://` engines are not supported; use {expected}"
            )),
            None => invalid(),
        });
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') || authority.contains('@') {
        return Err(invalid());
    }
    // Docker's default ports: 2376 with TLS, 2375 without.
    let default_port = if tls { 2376 } else { 2375 };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => {
            (host, port.parse::<u16>().map_err(|_| invalid())?)
        }
        _ => (authority, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(invalid());
    }
    Ok(EngineEndpoint::Tcp {
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine_of(pairs: &[(&str, &str)]) -> Result<EngineSettings, ConfigError> {
        let vars = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()));
        engine(super::super::vars::deserialize(vars.collect())?)
    }

    #[test]
    fn docker_host_is_read_as_docker_reads_it() {
        let default = engine_of(&[]).unwrap();
        assert_eq!(
            default.endpoint,
            EngineEndpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(default.address, DEFAULT_DOCKER_HOST);
        let tcp = engine_of(&[("DOCKER_HOST", "tcp://10.0.0.2")]).unwrap();
        assert_eq!(
            tcp.endpoint,
            EngineEndpoint::Tcp {
                host: "10.0.0.2".into(),
                port: 2375
            }
        );
        assert!(tcp.tls_files.is_none());
        let tls = engine_of(&[
            ("DOCKER_HOST", "tcp://[::1]:2376/"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", "/certs"),
        ])
        .unwrap();
        assert_eq!(
            tls.endpoint,
            EngineEndpoint::Tcp {
                host: "::1".into(),
                port: 2376
            }
        );
        assert_eq!(tls.tls_files, Some(PathBuf::from("/certs")));
        let default_tls = engine_of(&[
            ("DOCKER_HOST", "tcp://docker"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CONFIG", "/conf"),
        ])
        .unwrap();
        assert_eq!(default_tls.tls_files, Some(PathBuf::from("/conf")));
        assert!(matches!(
            default_tls.endpoint,
            EngineEndpoint::Tcp { port: 2376, .. }
        ));
    }

    #[test]
    fn other_engine_addresses_are_refused_by_name() {
        for (address, said) in [
            ("ssh://me@host", "`ssh://` engines are not supported"),
            ("npipe:////./pipe/docker_engine", "`npipe://`"),
            ("unix://relative.sock", "must be"),
            ("tcp://", "must be"),
            ("tcp://host:port", "must be"),
            ("docker:2375", "must be"),
        ] {
            let refused = engine_of(&[("DOCKER_HOST", address)])
                .expect_err(address)
                .to_string();
            assert!(
                refused.contains("DOCKER_HOST") && refused.contains(said),
                "{address}: {refused}"
            );
        }
    }
}
