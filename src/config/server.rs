//! The HTTP server's settings: where it listens, the keys a webhook must carry, and the
//! limits on who may call it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::ConfigError;
use super::vars::{ListenVars, ServerVars, list, parse_or};

/// Limits on callers of the HTTP surface.
#[derive(Debug, Clone)]
pub struct AccessSettings {
    /// Failed authentications allowed per client per minute, beyond which it gets `429`
    /// (`AUTOREDEPLOY_AUTH_FAILURES_PER_MINUTE`).
    pub auth_failures_per_minute: u32,
    /// Proxies whose `X-Forwarded-For` names the client (`AUTOREDEPLOY_TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Repositories whose pushes are accepted; empty means all (`AUTOREDEPLOY_ALLOWED_REPOS`).
    pub allowed_repos: Vec<glob::Pattern>,
    /// Registry hosts reached under another name too: a push naming the first is also a
    /// push of the second (`AUTOREDEPLOY_REGISTRY_ALIASES`).
    pub registry_aliases: Vec<(String, String)>,
    /// Connections served at once; further ones wait to be accepted
    /// (`AUTOREDEPLOY_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Time a client has to send a request's head, and then its body
    /// (`AUTOREDEPLOY_READ_TIMEOUT_S`); an idle connection is closed after it too.
    pub read_timeout: Duration,
}

/// The secrets senders sign their deliveries with; a route whose secret is unset is off.
#[derive(Debug, Clone, Default)]
pub struct SigningSecrets {
    /// `GITHUB_WEBHOOK_SECRET`, for `POST /autoredeploy/github`.
    pub github: Option<SecretString>,
    /// `GITEA_WEBHOOK_SECRET`, for `POST /autoredeploy/gitea`.
    pub gitea: Option<SecretString>,
}

/// Shortest webhook key accepted.
pub const MIN_KEY_LENGTH: usize = 16;

/// The server's settings, validated, before they are placed in [`super::Settings`].
pub(super) struct ServerSection {
    /// `BIND_ADDRESS` and `BIND_PORT`.
    pub listen: SocketAddr,
    /// `DOCKER_HUB_KEY`.
    pub webhook_keys: Vec<SecretString>,
    /// `GITHUB_WEBHOOK_SECRET`, `GITEA_WEBHOOK_SECRET`.
    pub signing_secrets: SigningSecrets,
    /// The `AUTOREDEPLOY_*` limits on callers.
    pub access: AccessSettings,
}

/// Validates the server's variables.
pub(super) fn validate(vars: ServerVars) -> Result<ServerSection, ConfigError> {
    Ok(ServerSection {
        webhook_keys: webhook_keys(vars.docker_hub_key)?,
        signing_secrets: SigningSecrets {
            github: signing_secret("GITHUB_WEBHOOK_SECRET", vars.github_webhook_secret)?,
            gitea: signing_secret("GITEA_WEBHOOK_SECRET", vars.gitea_webhook_secret)?,
        },
        listen: listen(vars.listen)?,
        access: AccessSettings {
            auth_failures_per_minute: parse_or(
                "AUTOREDEPLOY_AUTH_FAILURES_PER_MINUTE",
                vars.autoredeploy_auth_failures_per_minute,
                5,
                1..=1_000_000_000,
            )?,
            trusted_proxies: trusted_proxies(vars.autoredeploy_trusted_proxies.as_deref())?,
            allowed_repos: allowed_repos(vars.autoredeploy_allowed_repos.as_deref())?,
            registry_aliases: registry_aliases(vars.autoredeploy_registry_aliases.as_deref())?,
            max_connections: parse_or(
                "AUTOREDEPLOY_MAX_CONNECTIONS",
                vars.autoredeploy_max_connections,
                512,
                1..=100_000,
            )?,
            read_timeout: Duration::from_secs(parse_or(
                "AUTOREDEPLOY_READ_TIMEOUT_S",
                vars.autoredeploy_read_timeout_s,
                10,
                1..=3600,
            )?),
        },
    })
}

/// The address and port to listen on (`BIND_ADDRESS`, `BIND_PORT`).
pub(super) fn listen(vars: ListenVars) -> Result<SocketAddr, ConfigError> {
    let address = match vars.bind_address {
        None => IpAddr::from([0, 0, 0, 0]),
        Some(value) => value.parse().map_err(|_| {
            ConfigError::invalid(
                "BIND_ADDRESS",
                "an IP address such as 0.0.0.0 or ::",
                &value,
            )
        })?,
    };
    let port = parse_or("BIND_PORT", vars.bind_port, 8080, 0..=u16::MAX)?;
    Ok(SocketAddr::new(address, port))
}

/// The comma-separated webhook keys, each long enough to resist guessing.
fn webhook_keys(value: Option<SecretString>) -> Result<Vec<SecretString>, ConfigError> {
    let generate = "generate one with `openssl rand -hex 32`";
    let Some(value) = value else {
        return Err(ConfigError(format!(
            "DOCKER_HUB_KEY (or DOCKER_HUB_KEY_FILE) is required: the secret Docker Hub sends \
             as ?key=; {generate}"
        )));
    };
    let mut keys = Vec::new();
    for key in value.expose_secret().split(',').map(str::trim) {
        if key.chars().count() < MIN_KEY_LENGTH {
            return Err(ConfigError(format!(
                "DOCKER_HUB_KEY: every key must have at least {MIN_KEY_LENGTH} characters \
                 (several keys are separated by commas); {generate}"
            )));
        }
        keys.push(SecretString::from(key.to_owned()));
    }
    Ok(keys)
}

/// Addresses or networks of the proxies whose `X-Forwarded-For` is believed.
fn trusted_proxies(value: Option<&str>) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    list(value)
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    ConfigError::invalid(
                        "AUTOREDEPLOY_TRUSTED_PROXIES",
                        "comma-separated IP addresses or networks (10.0.0.0/8)",
                        entry,
                    )
                })
        })
        .collect()
}

/// A secret deliveries are signed with, long enough that one recorded delivery does not
/// let it be guessed offline.
pub(super) fn signing_secret(
    name: &str,
    value: Option<SecretString>,
) -> Result<Option<SecretString>, ConfigError> {
    match value {
        Some(secret) if secret.expose_secret().chars().count() < MIN_KEY_LENGTH => {
            Err(ConfigError(format!(
                "{name} must have at least {MIN_KEY_LENGTH} characters; generate one with \
                 `openssl rand -hex 32`"
            )))
        }
        value => Ok(value),
    }
}

/// `pushed=used` pairs of registry hosts, each a host (and port) as an image names it.
fn registry_aliases(value: Option<&str>) -> Result<Vec<(String, String)>, ConfigError> {
    let host = |text: &str| {
        let text = text.trim();
        crate::domain::ImageRef::parse(&format!("{text}/image"))
            .ok()
            .map(|image| image.registry().to_owned())
            .filter(|registry| registry.eq_ignore_ascii_case(text))
    };
    list(value)
        .map(|entry| {
            entry
                .split_once('=')
                .and_then(|(pushed, used)| Some((host(pushed)?, host(used)?)))
                .filter(|(pushed, used)| pushed != used)
                .ok_or_else(|| {
                    ConfigError::invalid(
                        "AUTOREDEPLOY_REGISTRY_ALIASES",
                        "comma-separated pairs of registry hosts such as \
                         registry.internal:5000=registry.example.com",
                        entry,
                    )
                })
        })
        .collect()
}

/// Patterns of the repositories whose pushes are accepted.
fn allowed_repos(value: Option<&str>) -> Result<Vec<glob::Pattern>, ConfigError> {
    list(value)
        .map(|entry| {
            glob::Pattern::new(entry).map_err(|_| {
                ConfigError::invalid(
                    "AUTOREDEPLOY_ALLOWED_REPOS",
                    "comma-separated patterns such as myorg/* or nginx",
                    entry,
                )
            })
        })
        .collect()
}
