//! Settings, read once at start from environment variables.
//!
//! The names of the original `rancher-autoredeploy` are kept exactly. Values are read with
//! [`envy`] from any iterator of pairs, so tests inject them instead of touching the process
//! environment. Every bad value is an error that names the variable and says what it expected.
//!
//! Each file validates one section: `vars.rs` lists every variable and holds the shared
//! parsers, `server.rs` the HTTP server, `targets.rs` which targets are used, `rancher.rs`
//! the Rancher target (connection, opt-in rule, upgrades), `containers.rs` the
//! Docker Engine containers target, `deploy.rs` the jobs and their
//! journal, `events.rs` notifications, the Docker Hub callback and the metrics key. This file puts the sections together.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

mod containers;
mod deploy;
mod events;
mod rancher;
mod server;
mod swarm;
mod targets;
mod vars;

#[cfg(test)]
mod tests;

pub use containers::{
    ContainersTarget, DEFAULT_DOCKER_HOST, EngineEndpoint, EngineSettings, GateSettings,
};
pub use deploy::{DeploySettings, JobRetrySettings};
pub use events::{BeanstalkSettings, Channels, EventSettings, MessageTemplate, NotifyOn};
pub use rancher::{
    DEFAULT_LABEL_NAME, MatchSettings, OnFailure, RancherSettings, RancherTarget, RetrySettings,
    UpgradeSettings,
};
pub use server::{AccessSettings, MIN_KEY_LENGTH, SigningSecrets};
pub use swarm::{SWARM_DEFAULT_LABEL_NAME, SwarmOnFailure, SwarmTarget};
pub use targets::TargetSettings;
pub use vars::FILE_SECRETS;

use vars::RawSettings;

/// Everything autoredeploy needs to run, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address the webhook server listens on (`BIND_ADDRESS`).
    pub bind_address: IpAddr,
    /// Port the webhook server listens on (`BIND_PORT`).
    pub bind_port: u16,
    /// The secrets a webhook may present as `?key=` or bearer token (`DOCKER_HUB_KEY`,
    /// comma-separated so a key can be rotated without downtime).
    pub webhook_keys: Vec<SecretString>,
    /// The secrets GitHub and Gitea sign their deliveries with.
    pub signing_secrets: SigningSecrets,
    /// Who may call the webhook, and for which repositories.
    pub access: AccessSettings,
    /// What a push upgrades: each target in use, with its own settings.
    pub targets: TargetSettings,
    /// How jobs are run, whatever the target.
    pub deploy: DeploySettings,
    /// Where the journal lives (`AUTOREDEPLOY_DATA_DIR`).
    pub data_dir: PathBuf,
    /// How long ended jobs are kept (`AUTOREDEPLOY_HISTORY_DAYS`).
    pub history: Duration,
    /// Notifications, the Docker Hub callback and the metrics key.
    pub events: EventSettings,
    /// Log line format (`AUTOREDEPLOY_LOG_FORMAT`).
    pub log_format: LogFormat,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// A setting that is missing or malformed. The message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn invalid(variable: &str, expected: &str, value: &str) -> Self {
        Self(format!("{variable} must be {expected}, got `{value}`"))
    }
}

impl Settings {
    /// Reads the settings from the process environment. Variables that are not valid
    /// UTF-8 are refused if they are ours and ignored otherwise.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(environment(|_| true)?)
    }

    /// Reads the settings from `(name, value)` pairs. Empty values count as unset.
    pub fn from_vars<I>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let vars = vars::secrets_from_files(vars::non_empty(vars))?;
        Self::validate(vars::deserialize(vars)?)
    }

    /// The socket address to listen on.
    pub fn listen_address(&self) -> SocketAddr {
        (self.bind_address, self.bind_port).into()
    }

    /// Validates each section and puts them together.
    fn validate(raw: RawSettings) -> Result<Self, ConfigError> {
        let server = server::validate(raw.server)?;
        let targets = targets::validate(
            raw.autoredeploy_targets,
            raw.rancher,
            raw.engine,
            raw.containers,
            raw.swarm,
        )?;
        let deploy = deploy::validate(raw.deploy)?;
        Ok(Settings {
            bind_address: server.listen.ip(),
            bind_port: server.listen.port(),
            webhook_keys: server.webhook_keys,
            signing_secrets: server.signing_secrets,
            access: server.access,
            targets,
            deploy: deploy.deploy,
            data_dir: deploy.data_dir,
            history: deploy.history,
            events: events::validate(raw.events)?,
            log_format: log_format(raw.autoredeploy_log_format.as_deref())?,
        })
    }
}

/// Where the server listens (`BIND_ADDRESS`, `BIND_PORT`), read from the process
/// environment with the same defaults and errors as [`Settings`], but nothing else: for
/// `autoredeploy healthcheck`, which runs every 30 s and has no business checking the other
/// settings or reading secret files.
pub fn listen_address_from_env() -> Result<SocketAddr, ConfigError> {
    listen_address_from_vars(environment(|name| vars::LISTEN_VARIABLES.contains(&name))?)
}

/// Where the server listens, read from `(name, value)` pairs; every other pair is ignored.
/// Empty values count as unset.
pub fn listen_address_from_vars<I>(vars: I) -> Result<SocketAddr, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    server::listen(vars::deserialize(vars::non_empty(vars))?)
}

/// The process environment's variables that `keep` wants. Values that are not valid UTF-8
/// are refused if the variable is ours and ignored otherwise.
fn environment(keep: impl Fn(&str) -> bool) -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Ok(name) = name.into_string() else {
            continue;
        };
        if !keep(&name) {
            continue;
        }
        match value.into_string() {
            Ok(value) => vars.push((name, value)),
            Err(_) if vars::is_ours(&name) => {
                return Err(ConfigError(format!("{name} is not valid UTF-8")));
            }
            Err(_) => {}
        }
    }
    Ok(vars)
}

/// `AUTOREDEPLOY_LOG_FORMAT`: `text` unless it says `json`.
fn log_format(value: Option<&str>) -> Result<LogFormat, ConfigError> {
    match value {
        None | Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => Err(ConfigError::invalid(
            "AUTOREDEPLOY_LOG_FORMAT",
            "`text` or `json`",
            other,
        )),
    }
}
