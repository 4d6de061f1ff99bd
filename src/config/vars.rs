//! The environment as strings, before validation: which variables are ours, secrets read
//! from `<NAME>_FILE`, and the small parsers every section shares.
//!
//! Every variable is listed here, grouped by the section that validates it, so the whole
//! set can be read in one place. Field names are the variable names in lower case, which
//! is how [`envy`] maps them; the groups are `#[serde(flatten)]`ed into one struct, so the
//! environment is read once.

use secrecy::SecretString;
use serde::Deserialize;

use super::ConfigError;

/// Every variable autoredeploy reads, grouped by section.
#[derive(Deserialize)]
pub(super) struct RawSettings {
    /// The HTTP server: where it listens, its keys, who may call it.
    #[serde(flatten)]
    pub server: ServerVars,
    /// Which targets are used (`AUTOREDEPLOY_TARGETS`).
    pub autoredeploy_targets: Option<String>,
    /// The Rancher target.
    #[serde(flatten)]
    pub rancher: RancherVars,
    /// Docker's client variables: where the engine is, and the registry credentials.
    #[serde(flatten)]
    pub engine: EngineVars,
    /// The containers target.
    #[serde(flatten)]
    pub containers: ContainersVars,
    /// The Swarm target.
    #[serde(flatten)]
    pub swarm: SwarmVars,
    /// Jobs, their queue and their journal.
    #[serde(flatten)]
    pub deploy: DeployVars,
    /// Notifications, the Docker Hub callback and the metrics key.
    #[serde(flatten)]
    pub events: EventVars,
    /// Log line format.
    pub autoredeploy_log_format: Option<String>,
}

/// The variables of [`ListenVars`], all the healthcheck reads.
pub(super) const LISTEN_VARIABLES: [&str; 2] = ["BIND_ADDRESS", "BIND_PORT"];

/// Where the server listens: all the healthcheck needs.
#[derive(Deserialize)]
pub(super) struct ListenVars {
    pub bind_address: Option<String>,
    pub bind_port: Option<String>,
}

/// The HTTP server's variables.
#[derive(Deserialize)]
pub(super) struct ServerVars {
    #[serde(flatten)]
    pub listen: ListenVars,
    pub docker_hub_key: Option<SecretString>,
    pub github_webhook_secret: Option<SecretString>,
    pub gitea_webhook_secret: Option<SecretString>,
    pub autoredeploy_auth_failures_per_minute: Option<String>,
    pub autoredeploy_trusted_proxies: Option<String>,
    pub autoredeploy_allowed_repos: Option<String>,
    pub autoredeploy_registry_aliases: Option<String>,
    pub autoredeploy_max_connections: Option<String>,
    pub autoredeploy_read_timeout_s: Option<String>,
}

/// The Rancher target's variables.
#[derive(Deserialize)]
pub(super) struct RancherVars {
    #[serde(flatten)]
    pub connection: ConnectionVars,
    #[serde(flatten)]
    pub matching: MatchVars,
    #[serde(flatten)]
    pub upgrade: UpgradeVars,
}

impl RancherVars {
    /// The Rancher variables that are set, by name, except the `CATTLE_*` ones: Rancher
    /// injects those into any container with the agent-role labels, whether or not it is
    /// meant to drive Rancher.
    pub fn given_names(&self) -> Vec<&'static str> {
        // Written out without `..`, so a new variable cannot be forgotten here.
        let ConnectionVars {
            rancher_host,
            rancher_project_id,
            rancher_api_key,
            rancher_api_secret,
            cattle_url: _,
            cattle_access_key: _,
            cattle_secret_key: _,
            rancher_request_timeout_s,
            rancher_retry_attempts,
            rancher_retry_max_delay_ms,
            rancher_retry_total_s,
            rancher_ca_file,
            rancher_insecure_skip_verify,
            rancher_list_concurrency,
            rancher_max_concurrent_requests,
        } = &self.connection;
        let MatchVars {
            rancher_autoredeploy_default,
            rancher_autoredeploy_label_name,
        } = &self.matching;
        let UpgradeVars {
            rancher_upgrade_batch_size,
            rancher_upgrade_interval_ms,
            rancher_upgrade_start_first,
            rancher_upgrade_poll_ms,
            rancher_upgrade_timeout_s,
            rancher_finish_upgrade,
            rancher_upgrade_on_failure,
        } = &self.upgrade;
        [
            ("RANCHER_HOST", rancher_host.is_some()),
            ("RANCHER_PROJECT_ID", rancher_project_id.is_some()),
            ("RANCHER_API_KEY", rancher_api_key.is_some()),
            ("RANCHER_API_SECRET", rancher_api_secret.is_some()),
            (
                "RANCHER_REQUEST_TIMEOUT_S",
                rancher_request_timeout_s.is_some(),
            ),
            ("RANCHER_RETRY_ATTEMPTS", rancher_retry_attempts.is_some()),
            (
                "RANCHER_RETRY_MAX_DELAY_MS",
                rancher_retry_max_delay_ms.is_some(),
            ),
            ("RANCHER_RETRY_TOTAL_S", rancher_retry_total_s.is_some()),
            ("RANCHER_CA_FILE", rancher_ca_file.is_some()),
            (
                "RANCHER_INSECURE_SKIP_VERIFY",
                rancher_insecure_skip_verify.is_some(),
            ),
            (
                "RANCHER_LIST_CONCURRENCY",
                rancher_list_concurrency.is_some(),
            ),
            (
                "RANCHER_MAX_CONCURRENT_REQUESTS",
                rancher_max_concurrent_requests.is_some(),
            ),
            (
                "RANCHER_AUTOREDEPLOY_DEFAULT",
                rancher_autoredeploy_default.is_some(),
            ),
            (
                "RANCHER_AUTOREDEPLOY_LABEL_NAME",
                rancher_autoredeploy_label_name.is_some(),
            ),
            (
                "RANCHER_UPGRADE_BATCH_SIZE",
                rancher_upgrade_batch_size.is_some(),
            ),
            (
                "RANCHER_UPGRADE_INTERVAL_MS",
                rancher_upgrade_interval_ms.is_some(),
            ),
            (
                "RANCHER_UPGRADE_START_FIRST",
                rancher_upgrade_start_first.is_some(),
            ),
            ("RANCHER_UPGRADE_POLL_MS", rancher_upgrade_poll_ms.is_some()),
            (
                "RANCHER_UPGRADE_TIMEOUT_S",
                rancher_upgrade_timeout_s.is_some(),
            ),
            ("RANCHER_FINISH_UPGRADE", rancher_finish_upgrade.is_some()),
            (
                "RANCHER_UPGRADE_ON_FAILURE",
                rancher_upgrade_on_failure.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }
}

/// How to reach Rancher, with the `CATTLE_*` variables Rancher injects into a container
/// that carries the agent-role labels.
#[derive(Deserialize)]
pub(super) struct ConnectionVars {
    pub rancher_host: Option<String>,
    pub rancher_project_id: Option<String>,
    pub rancher_api_key: Option<String>,
    pub rancher_api_secret: Option<SecretString>,
    pub cattle_url: Option<String>,
    pub cattle_access_key: Option<String>,
    pub cattle_secret_key: Option<SecretString>,
    pub rancher_request_timeout_s: Option<String>,
    pub rancher_retry_attempts: Option<String>,
    pub rancher_retry_max_delay_ms: Option<String>,
    pub rancher_retry_total_s: Option<String>,
    pub rancher_ca_file: Option<String>,
    pub rancher_insecure_skip_verify: Option<String>,
    pub rancher_list_concurrency: Option<String>,
    pub rancher_max_concurrent_requests: Option<String>,
}

/// The opt-in rule's variables.
#[derive(Deserialize)]
pub(super) struct MatchVars {
    pub rancher_autoredeploy_default: Option<String>,
    pub rancher_autoredeploy_label_name: Option<String>,
}

/// The variables of Rancher's in-service upgrade.
#[derive(Deserialize)]
pub(super) struct UpgradeVars {
    pub rancher_upgrade_batch_size: Option<String>,
    pub rancher_upgrade_interval_ms: Option<String>,
    pub rancher_upgrade_start_first: Option<String>,
    pub rancher_upgrade_poll_ms: Option<String>,
    pub rancher_upgrade_timeout_s: Option<String>,
    pub rancher_finish_upgrade: Option<String>,
    pub rancher_upgrade_on_failure: Option<String>,
}

/// Docker's own client variables, read as Docker's tools read them.
#[derive(Deserialize)]
pub(super) struct EngineVars {
    pub docker_host: Option<String>,
    pub docker_tls_verify: Option<String>,
    pub docker_cert_path: Option<String>,
    pub docker_config: Option<String>,
}

/// The containers target's own variables.
#[derive(Deserialize)]
pub(super) struct ContainersVars {
    pub docker_autoredeploy_default: Option<String>,
    pub docker_autoredeploy_label_name: Option<String>,
    pub docker_upgrade_timeout_s: Option<String>,
    pub docker_upgrade_stable_s: Option<String>,
}

impl ContainersVars {
    /// The variables that are set, by name.
    pub fn given_names(&self) -> Vec<&'static str> {
        let Self {
            docker_autoredeploy_default,
            docker_autoredeploy_label_name,
            docker_upgrade_timeout_s,
            docker_upgrade_stable_s,
        } = self;
        [
            (
                "DOCKER_AUTOREDEPLOY_DEFAULT",
                docker_autoredeploy_default.is_some(),
            ),
            (
                "DOCKER_AUTOREDEPLOY_LABEL_NAME",
                docker_autoredeploy_label_name.is_some(),
            ),
            (
                "DOCKER_UPGRADE_TIMEOUT_S",
                docker_upgrade_timeout_s.is_some(),
            ),
            ("DOCKER_UPGRADE_STABLE_S", docker_upgrade_stable_s.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }
}

/// The Swarm target's own variables.
#[derive(Deserialize)]
pub(super) struct SwarmVars {
    pub swarm_autoredeploy_default: Option<String>,
    pub swarm_autoredeploy_label_name: Option<String>,
    pub swarm_upgrade_timeout_s: Option<String>,
    pub swarm_upgrade_on_failure: Option<String>,
}

impl SwarmVars {
    /// The variables that are set, by name.
    pub fn given_names(&self) -> Vec<&'static str> {
        let Self {
            swarm_autoredeploy_default,
            swarm_autoredeploy_label_name,
            swarm_upgrade_timeout_s,
            swarm_upgrade_on_failure,
        } = self;
        [
            (
                "SWARM_AUTOREDEPLOY_DEFAULT",
                swarm_autoredeploy_default.is_some(),
            ),
            (
                "SWARM_AUTOREDEPLOY_LABEL_NAME",
                swarm_autoredeploy_label_name.is_some(),
            ),
            ("SWARM_UPGRADE_TIMEOUT_S", swarm_upgrade_timeout_s.is_some()),
            (
                "SWARM_UPGRADE_ON_FAILURE",
                swarm_upgrade_on_failure.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }
}

/// The variables of jobs, their queue and their journal.
#[derive(Deserialize)]
pub(super) struct DeployVars {
    pub autoredeploy_max_concurrent_upgrades: Option<String>,
    pub autoredeploy_queue_size: Option<String>,
    pub autoredeploy_job_retry_s: Option<String>,
    pub autoredeploy_job_retries: Option<String>,
    pub autoredeploy_shutdown_grace_s: Option<String>,
    pub autoredeploy_data_dir: Option<String>,
    pub autoredeploy_history_days: Option<String>,
    pub autoredeploy_recheck_interval: Option<String>,
}

/// The variables of notifications, the Docker Hub callback and `/metrics`.
#[derive(Deserialize)]
pub(super) struct EventVars {
    pub slack_webhook_url: Option<SecretString>,
    pub slack_username: Option<String>,
    pub teams_webhook_url: Option<SecretString>,
    pub discord_webhook_url: Option<SecretString>,
    pub autoredeploy_notify_url: Option<SecretString>,
    pub notify_flags: Option<String>,
    pub autoredeploy_notify_on: Option<String>,
    pub autoredeploy_notify_retry_for: Option<String>,
    pub autoredeploy_callback_origins: Option<String>,
    pub autoredeploy_public_url: Option<String>,
    pub autoredeploy_metrics_key: Option<SecretString>,
}

/// Whether a variable belongs to autoredeploy, so that a value that is not UTF-8 is refused
/// rather than silently ignored.
pub(super) fn is_ours(name: &str) -> bool {
    [
        "BIND_",
        "RANCHER_",
        "CATTLE_",
        "AUTOREDEPLOY_",
        "DOCKER_HUB_KEY",
        "DOCKER_AUTOREDEPLOY_",
        "DOCKER_UPGRADE_",
        "SWARM_",
        "GITHUB_WEBHOOK_",
        "GITEA_WEBHOOK_",
        "SLACK_WEBHOOK_URL",
        "SLACK_USERNAME",
        "TEAMS_WEBHOOK_URL",
        "DISCORD_WEBHOOK_URL",
        "NOTIFY_FLAGS",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix))
}

/// Secrets that may also be given as `<NAME>_FILE`, the path of a file holding them (Docker
/// and Rancher secrets are mounted as files).
pub const FILE_SECRETS: [&str; 10] = [
    "DOCKER_HUB_KEY",
    "GITHUB_WEBHOOK_SECRET",
    "GITEA_WEBHOOK_SECRET",
    "RANCHER_API_SECRET",
    "CATTLE_SECRET_KEY",
    "SLACK_WEBHOOK_URL",
    "TEAMS_WEBHOOK_URL",
    "DISCORD_WEBHOOK_URL",
    "AUTOREDEPLOY_NOTIFY_URL",
    "AUTOREDEPLOY_METRICS_KEY",
];

/// Replaces each `<NAME>_FILE` of [`FILE_SECRETS`] by `<NAME>` holding the file's content,
/// without its trailing newline. Setting both is an error; neither message shows a secret.
pub(super) fn secrets_from_files(
    mut vars: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    for name in FILE_SECRETS {
        let file_variable = format!("{name}_FILE");
        let Some(position) = vars.iter().position(|(key, _)| *key == file_variable) else {
            continue;
        };
        if vars.iter().any(|(key, _)| key == name) {
            return Err(ConfigError(format!(
                "set either {name} or {file_variable}, not both"
            )));
        }
        let (_, path) = vars.remove(position);
        let content = std::fs::read_to_string(&path)
            .map_err(|err| ConfigError(format!("{file_variable}: cannot read {path}: {err}")))?;
        let secret = content.trim_end_matches(['\n', '\r']).to_owned();
        if secret.is_empty() {
            return Err(ConfigError(format!("{file_variable}: {path} is empty")));
        }
        vars.push((name.to_owned(), secret));
    }
    Ok(vars)
}

/// The pairs with a value: an empty value counts as unset.
pub(super) fn non_empty<I>(vars: I) -> Vec<(String, String)>
where
    I: IntoIterator<Item = (String, String)>,
{
    vars.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

/// Reads the variables of `T` from `(name, value)` pairs.
pub(super) fn deserialize<T>(vars: Vec<(String, String)>) -> Result<T, ConfigError>
where
    T: serde::de::DeserializeOwned,
{
    envy::from_iter(vars).map_err(|err| ConfigError(err.to_string()))
}

/// A whole number in `range`, or `default` when unset.
pub(super) fn parse_or<T>(
    variable: &str,
    value: Option<String>,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let Some(value) = value else {
        return Ok(default);
    };
    let expected = format!("a whole number from {} to {}", range.start(), range.end());
    match value.trim().parse::<T>() {
        Ok(number) if range.contains(&number) => Ok(number),
        _ => Err(ConfigError::invalid(variable, &expected, &value)),
    }
}

/// The non-empty, trimmed entries of a comma-separated list.
pub(super) fn list(value: Option<&str>) -> impl Iterator<Item = &str> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
}

/// `true` or `false` in any case, or `default` when unset.
pub(super) fn parse_bool(
    variable: &str,
    value: Option<String>,
    default: bool,
) -> Result<bool, ConfigError> {
    match value.as_deref().map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" => Ok(false),
        Some(_) => Err(ConfigError::invalid(
            variable,
            "`true` or `false`",
            value.as_deref().unwrap_or_default(),
        )),
    }
}
