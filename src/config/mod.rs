//! Settings, read once at start from environment variables.
//!
//! The names of the original `rancher-autoredeploy` are kept exactly. Values are read with
//! [`envy`] from any iterator of pairs, so tests inject them instead of touching the process
//! environment. Every bad value is an error that names the variable and says what it expected.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

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
    /// How to reach Rancher.
    pub rancher: RancherSettings,
    /// Which services a push upgrades.
    pub matching: MatchSettings,
    /// How each upgrade is driven.
    pub upgrade: UpgradeSettings,
    /// How many jobs may wait to be started (`AUTOREDEPLOY_QUEUE_SIZE`).
    pub queue_size: usize,
    /// Where the journal lives (`AUTOREDEPLOY_DATA_DIR`).
    pub data_dir: PathBuf,
    /// How long ended jobs are kept (`AUTOREDEPLOY_HISTORY_DAYS`).
    pub history: Duration,
    /// How jobs that cannot be carried on for now are run again.
    pub job_retry: JobRetrySettings,
    /// Who may call the webhook, and for which repositories.
    pub access: AccessSettings,
    /// How long running upgrades may go on after a shutdown signal
    /// (`AUTOREDEPLOY_SHUTDOWN_GRACE_S`).
    pub shutdown_grace: Duration,
    /// Log line format (`AUTOREDEPLOY_LOG_FORMAT`).
    pub log_format: LogFormat,
}

/// Connection to the Rancher API.
#[derive(Debug, Clone)]
pub struct RancherSettings {
    /// API base, ending in `/v1` or `/v2-beta`.
    pub api_base: Url,
    /// The service collection to list and upgrade: `<base>/projects/<id>/services` or
    /// `<base>/services` for an environment-scoped key.
    pub services_url: Url,
    /// API access key, sent as the Basic auth user name.
    pub access_key: String,
    /// API secret key, sent as the Basic auth password; never logged.
    pub secret_key: SecretString,
    /// Bound on every single request to Rancher (`RANCHER_REQUEST_TIMEOUT_S`).
    pub request_timeout: Duration,
    /// How requests that may succeed later are retried.
    pub retry: RetrySettings,
    /// Extra trusted roots for https, in PEM (read from `RANCHER_CA_FILE`).
    pub ca_bundle: Option<Vec<u8>>,
    /// Skip certificate verification (`RANCHER_INSECURE_SKIP_VERIFY`); warned at every start.
    pub insecure_skip_verify: bool,
    /// Pages of the service list read at the same time (`RANCHER_LIST_CONCURRENCY`).
    pub list_window: usize,
    /// Requests to Rancher in flight at the same time, across all jobs
    /// (`RANCHER_MAX_CONCURRENT_REQUESTS`).
    pub max_requests: usize,
}

/// Retries of a Rancher request after a transport error, timeout, `409` or `5xx`.
#[derive(Debug, Clone, Copy)]
pub struct RetrySettings {
    /// Retries after the first attempt (`RANCHER_RETRY_ATTEMPTS`).
    pub attempts: usize,
    /// Longest pause between two attempts (`RANCHER_RETRY_MAX_DELAY_MS`).
    pub max_delay: Duration,
    /// Bound on all pauses of one request together (`RANCHER_RETRY_TOTAL_S`).
    pub total: Duration,
}

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
    /// Connections served at once; further ones wait to be accepted
    /// (`AUTOREDEPLOY_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Time a client has to send a request's head, and then its body
    /// (`AUTOREDEPLOY_READ_TIMEOUT_S`); an idle connection is closed after it too.
    pub read_timeout: Duration,
}

/// Runs again of a job stopped because Rancher stayed unreachable beyond the request
/// retries (or the journal could not be written): it goes on where it stopped.
#[derive(Debug, Clone, Copy)]
pub struct JobRetrySettings {
    /// Pause before the next run (`AUTOREDEPLOY_JOB_RETRY_S`).
    pub pause: Duration,
    /// Runs before the job is given up as failed (`AUTOREDEPLOY_JOB_RETRIES`).
    pub runs: u32,
}

/// What to do with a service whose upgrade is stuck or reported an error
/// (`RANCHER_UPGRADE_ON_FAILURE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Roll back to the previous launch config (`rollback`).
    Rollback,
    /// Cancel the upgrade and leave the service in `canceled-upgrade` (`cancel`).
    Cancel,
    /// Leave the service as it is (`leave`).
    Leave,
}

/// The opt-in rule.
#[derive(Debug, Clone)]
pub struct MatchSettings {
    /// Upgrade matching services that carry no label (`RANCHER_AUTOREDEPLOY_DEFAULT`).
    pub default_opt_in: bool,
    /// The per-service label that opts in (`"true"`) or out (`"false"`)
    /// (`RANCHER_AUTOREDEPLOY_LABEL_NAME`).
    pub label_name: String,
}

/// How Rancher's in-service upgrade is requested and followed.
#[derive(Debug, Clone)]
pub struct UpgradeSettings {
    /// Containers replaced at a time (`RANCHER_UPGRADE_BATCH_SIZE`).
    pub batch_size: u32,
    /// Pause between batches, in milliseconds (`RANCHER_UPGRADE_INTERVAL_MS`).
    pub interval_ms: u32,
    /// Start the new container before stopping the old one (`RANCHER_UPGRADE_START_FIRST`).
    pub start_first: bool,
    /// How often a transitioning service is polled (`RANCHER_UPGRADE_POLL_MS`).
    pub poll_interval: Duration,
    /// Bound on each wait for a transition to end (`RANCHER_UPGRADE_TIMEOUT_S`).
    pub timeout: Duration,
    /// Call `finishupgrade` once the service is `upgraded` (`RANCHER_FINISH_UPGRADE`).
    pub finish: bool,
    /// How many services are upgraded at the same time
    /// (`AUTOREDEPLOY_MAX_CONCURRENT_UPGRADES`).
    pub max_concurrent: usize,
    /// What to do when an upgrade is stuck or fails.
    pub on_failure: OnFailure,
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

/// The environment as strings and numbers, before validation. Field names are the variable
/// names in lower case, which is how `envy` maps them.
#[derive(Deserialize)]
struct RawSettings {
    bind_address: Option<String>,
    bind_port: Option<String>,
    rancher_host: Option<String>,
    rancher_project_id: Option<String>,
    rancher_api_key: Option<String>,
    rancher_api_secret: Option<SecretString>,
    cattle_url: Option<String>,
    cattle_access_key: Option<String>,
    cattle_secret_key: Option<SecretString>,
    rancher_autoredeploy_default: Option<String>,
    rancher_autoredeploy_label_name: Option<String>,
    docker_hub_key: Option<SecretString>,
    rancher_upgrade_batch_size: Option<String>,
    rancher_upgrade_interval_ms: Option<String>,
    rancher_upgrade_start_first: Option<String>,
    rancher_upgrade_poll_ms: Option<String>,
    rancher_upgrade_timeout_s: Option<String>,
    rancher_finish_upgrade: Option<String>,
    rancher_request_timeout_s: Option<String>,
    autoredeploy_max_concurrent_upgrades: Option<String>,
    autoredeploy_queue_size: Option<String>,
    autoredeploy_shutdown_grace_s: Option<String>,
    autoredeploy_log_format: Option<String>,
    autoredeploy_data_dir: Option<String>,
    autoredeploy_history_days: Option<String>,
    rancher_upgrade_on_failure: Option<String>,
    rancher_retry_attempts: Option<String>,
    rancher_retry_max_delay_ms: Option<String>,
    rancher_retry_total_s: Option<String>,
    rancher_ca_file: Option<String>,
    rancher_insecure_skip_verify: Option<String>,
    rancher_list_concurrency: Option<String>,
    rancher_max_concurrent_requests: Option<String>,
    autoredeploy_job_retry_s: Option<String>,
    autoredeploy_job_retries: Option<String>,
    autoredeploy_auth_failures_per_minute: Option<String>,
    autoredeploy_trusted_proxies: Option<String>,
    autoredeploy_allowed_repos: Option<String>,
    autoredeploy_max_connections: Option<String>,
    autoredeploy_read_timeout_s: Option<String>,
}

fn is_ours(name: &str) -> bool {
    [
        "BIND_",
        "RANCHER_",
        "CATTLE_",
        "AUTOREDEPLOY_",
        "DOCKER_HUB_KEY",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix))
}

/// Secrets that may also be given as `<NAME>_FILE`, the path of a file holding them (Docker
/// and Rancher secrets are mounted as files).
pub const FILE_SECRETS: [&str; 3] = ["DOCKER_HUB_KEY", "RANCHER_API_SECRET", "CATTLE_SECRET_KEY"];

/// Pages of the service list read at the same time, unless `RANCHER_LIST_CONCURRENCY` says.
const DEFAULT_LIST_WINDOW: usize = 8;

/// Requests to Rancher in flight at the same time, unless
/// `RANCHER_MAX_CONCURRENT_REQUESTS` says.
const DEFAULT_MAX_REQUESTS: usize = 128;

/// Shortest webhook key accepted.
pub const MIN_KEY_LENGTH: usize = 16;

/// Replaces each `<NAME>_FILE` of [`FILE_SECRETS`] by `<NAME>` holding the file's content,
/// without its trailing newline. Setting both is an error; neither message shows a secret.
fn secrets_from_files(
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

/// The label the original program used; kept so existing services keep their meaning.
pub const DEFAULT_LABEL_NAME: &str = "tech.manas.service.autoredeploy";

impl Settings {
    /// Reads the settings from the process environment. Variables that are not valid
    /// UTF-8 are refused if they are ours and ignored otherwise.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut vars = Vec::new();
        for (name, value) in std::env::vars_os() {
            match (name.into_string(), value.into_string()) {
                (Ok(name), Ok(value)) => vars.push((name, value)),
                (Ok(name), Err(_)) if is_ours(&name) => {
                    return Err(ConfigError(format!("{name} is not valid UTF-8")));
                }
                _ => {}
            }
        }
        Self::from_vars(vars)
    }

    /// Reads the settings from `(name, value)` pairs. Empty values count as unset.
    pub fn from_vars<I>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let vars = secrets_from_files(vars.into_iter().filter(|(_, v)| !v.is_empty()).collect())?;
        let raw: RawSettings = envy::from_iter(vars).map_err(|err| ConfigError(err.to_string()))?;
        raw.validate()
    }

    /// The socket address to listen on.
    pub fn listen_address(&self) -> std::net::SocketAddr {
        (self.bind_address, self.bind_port).into()
    }
}

impl RawSettings {
    fn validate(self) -> Result<Settings, ConfigError> {
        let webhook_keys = webhook_keys(self.docker_hub_key)?;
        let mut rancher = rancher_settings(
            RancherVars {
                host: self.rancher_host,
                api_key: self.rancher_api_key,
                api_secret: self.rancher_api_secret,
                cattle_url: self.cattle_url,
                cattle_access_key: self.cattle_access_key,
                cattle_secret_key: self.cattle_secret_key,
            },
            self.rancher_project_id,
            Duration::from_secs(parse_or(
                "RANCHER_REQUEST_TIMEOUT_S",
                self.rancher_request_timeout_s,
                30,
                1..=3600,
            )?),
            RetrySettings {
                attempts: parse_or(
                    "RANCHER_RETRY_ATTEMPTS",
                    self.rancher_retry_attempts,
                    6,
                    0..=100,
                )?,
                max_delay: Duration::from_millis(parse_or(
                    "RANCHER_RETRY_MAX_DELAY_MS",
                    self.rancher_retry_max_delay_ms,
                    10_000,
                    10..=600_000,
                )?),
                total: Duration::from_secs(parse_or(
                    "RANCHER_RETRY_TOTAL_S",
                    self.rancher_retry_total_s,
                    120,
                    1..=86_400,
                )?),
            },
        )?;
        rancher.list_window = parse_or(
            "RANCHER_LIST_CONCURRENCY",
            self.rancher_list_concurrency,
            DEFAULT_LIST_WINDOW,
            1..=64,
        )?;
        rancher.max_requests = parse_or(
            "RANCHER_MAX_CONCURRENT_REQUESTS",
            self.rancher_max_concurrent_requests,
            DEFAULT_MAX_REQUESTS,
            1..=4096,
        )?;
        rancher.insecure_skip_verify = parse_bool(
            "RANCHER_INSECURE_SKIP_VERIFY",
            self.rancher_insecure_skip_verify,
            false,
        )?;
        if let Some(path) = self.rancher_ca_file {
            let pem = std::fs::read(&path).map_err(|err| {
                ConfigError(format!("RANCHER_CA_FILE: cannot read {path}: {err}"))
            })?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(ConfigError(format!(
                    "RANCHER_CA_FILE: {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
                )));
            }
            rancher.ca_bundle = Some(pem);
        }
        let on_failure = match self.rancher_upgrade_on_failure.as_deref().map(str::trim) {
            None | Some("rollback") => OnFailure::Rollback,
            Some("cancel") => OnFailure::Cancel,
            Some("leave") => OnFailure::Leave,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "RANCHER_UPGRADE_ON_FAILURE",
                    "`rollback`, `cancel` or `leave`",
                    other,
                ));
            }
        };
        let upgrade = UpgradeSettings {
            batch_size: parse_or(
                "RANCHER_UPGRADE_BATCH_SIZE",
                self.rancher_upgrade_batch_size,
                1,
                1..=10_000,
            )?,
            interval_ms: parse_or(
                "RANCHER_UPGRADE_INTERVAL_MS",
                self.rancher_upgrade_interval_ms,
                2000,
                100..=86_400_000,
            )?,
            start_first: parse_bool(
                "RANCHER_UPGRADE_START_FIRST",
                self.rancher_upgrade_start_first,
                false,
            )?,
            poll_interval: Duration::from_millis(parse_or(
                "RANCHER_UPGRADE_POLL_MS",
                self.rancher_upgrade_poll_ms,
                1000,
                10..=600_000,
            )?),
            timeout: Duration::from_secs(parse_or(
                "RANCHER_UPGRADE_TIMEOUT_S",
                self.rancher_upgrade_timeout_s,
                600,
                1..=86_400,
            )?),
            finish: parse_bool("RANCHER_FINISH_UPGRADE", self.rancher_finish_upgrade, true)?,
            max_concurrent: parse_or(
                "AUTOREDEPLOY_MAX_CONCURRENT_UPGRADES",
                self.autoredeploy_max_concurrent_upgrades,
                16,
                1..=1024,
            )?,
            on_failure,
        };
        let bind_address = match self.bind_address {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(value) => value.parse().map_err(|_| {
                ConfigError::invalid(
                    "BIND_ADDRESS",
                    "an IP address such as 0.0.0.0 or ::",
                    &value,
                )
            })?,
        };
        let log_format = match self.autoredeploy_log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "AUTOREDEPLOY_LOG_FORMAT",
                    "`text` or `json`",
                    other,
                ));
            }
        };
        let label_name = self
            .rancher_autoredeploy_label_name
            .unwrap_or_else(|| DEFAULT_LABEL_NAME.to_owned());
        Ok(Settings {
            bind_address,
            bind_port: parse_or("BIND_PORT", self.bind_port, 8080, 0..=u16::MAX)?,
            webhook_keys,

            rancher,
            matching: MatchSettings {
                default_opt_in: parse_bool(
                    "RANCHER_AUTOREDEPLOY_DEFAULT",
                    self.rancher_autoredeploy_default,
                    true,
                )?,
                label_name,
            },
            upgrade,
            queue_size: parse_or(
                "AUTOREDEPLOY_QUEUE_SIZE",
                self.autoredeploy_queue_size,
                1024,
                1..=1_000_000,
            )?,
            shutdown_grace: Duration::from_secs(parse_or(
                "AUTOREDEPLOY_SHUTDOWN_GRACE_S",
                self.autoredeploy_shutdown_grace_s,
                30,
                0..=3600,
            )?),
            access: AccessSettings {
                auth_failures_per_minute: parse_or(
                    "AUTOREDEPLOY_AUTH_FAILURES_PER_MINUTE",
                    self.autoredeploy_auth_failures_per_minute,
                    5,
                    1..=1_000_000_000,
                )?,
                trusted_proxies: list(self.autoredeploy_trusted_proxies.as_deref())
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
                    .collect::<Result<_, _>>()?,
                allowed_repos: list(self.autoredeploy_allowed_repos.as_deref())
                    .map(|entry| {
                        glob::Pattern::new(entry).map_err(|_| {
                            ConfigError::invalid(
                                "AUTOREDEPLOY_ALLOWED_REPOS",
                                "comma-separated patterns such as myorg/* or nginx",
                                entry,
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
                max_connections: parse_or(
                    "AUTOREDEPLOY_MAX_CONNECTIONS",
                    self.autoredeploy_max_connections,
                    512,
                    1..=100_000,
                )?,
                read_timeout: Duration::from_secs(parse_or(
                    "AUTOREDEPLOY_READ_TIMEOUT_S",
                    self.autoredeploy_read_timeout_s,
                    10,
                    1..=3600,
                )?),
            },
            job_retry: JobRetrySettings {
                pause: Duration::from_secs(parse_or(
                    "AUTOREDEPLOY_JOB_RETRY_S",
                    self.autoredeploy_job_retry_s,
                    30,
                    1..=86_400,
                )?),
                runs: parse_or(
                    "AUTOREDEPLOY_JOB_RETRIES",
                    self.autoredeploy_job_retries,
                    20,
                    1..=10_000,
                )?,
            },
            data_dir: PathBuf::from(
                self.autoredeploy_data_dir
                    .unwrap_or_else(|| "data".to_owned()),
            ),
            history: Duration::from_secs(
                86_400
                    * parse_or(
                        "AUTOREDEPLOY_HISTORY_DAYS",
                        self.autoredeploy_history_days,
                        30,
                        1..=3650,
                    )?,
            ),
            log_format,
        })
    }
}

/// The Rancher-related variables, with the `CATTLE_*` ones Rancher injects into a container
/// that carries the agent-role labels.
struct RancherVars {
    host: Option<String>,
    api_key: Option<String>,
    api_secret: Option<SecretString>,
    cattle_url: Option<String>,
    cattle_access_key: Option<String>,
    cattle_secret_key: Option<SecretString>,
}

fn rancher_settings(
    vars: RancherVars,
    project_id: Option<String>,
    request_timeout: Duration,
    retry: RetrySettings,
) -> Result<RancherSettings, ConfigError> {
    let (host_variable, host) = match (vars.host, vars.cattle_url) {
        (Some(host), _) => ("RANCHER_HOST", host),
        (None, Some(url)) => ("CATTLE_URL", url),
        (None, None) => {
            return Err(ConfigError(
                "RANCHER_HOST is required (host[:port] or URL of the Rancher server); inside a \
                 Rancher stack with the agent-role labels, CATTLE_URL is used instead"
                    .into(),
            ));
        }
    };
    let (access_key, secret_key) = match (vars.api_key, vars.api_secret) {
        (Some(key), Some(secret)) => (key, secret),
        (Some(_), None) => {
            return Err(ConfigError(
                "RANCHER_API_SECRET is required when RANCHER_API_KEY is set".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError(
                "RANCHER_API_KEY is required when RANCHER_API_SECRET is set".into(),
            ));
        }
        (None, None) => match (vars.cattle_access_key, vars.cattle_secret_key) {
            (Some(key), Some(secret)) => (key, secret),
            _ => {
                return Err(ConfigError(
                    "RANCHER_API_KEY and RANCHER_API_SECRET are required (an environment API key \
                     from Rancher's API page); inside a Rancher stack with the agent-role labels, \
                     CATTLE_ACCESS_KEY and CATTLE_SECRET_KEY are used instead"
                        .into(),
                ));
            }
        },
    };
    let api_base = api_base_url(host_variable, &host)?;
    let services_url = services_url(&api_base, project_id.as_deref())?;
    Ok(RancherSettings {
        api_base,
        services_url,
        access_key,
        secret_key,
        request_timeout,
        retry,
        ca_bundle: None,
        insecure_skip_verify: false,
        list_window: DEFAULT_LIST_WINDOW,
        max_requests: DEFAULT_MAX_REQUESTS,
    })
}

/// `host[:port]` means `http://host[:port]`; a full URL is taken as it is. The API base is
/// `<it>/v1` unless the path already ends in `/v1` or `/v2-beta`.
fn api_base_url(variable: &str, value: &str) -> Result<Url, ConfigError> {
    let expected = "host[:port] or an http(s) URL of the Rancher server, without credentials, query or fragment";
    let with_scheme = if value.contains("://") {
        value.to_owned()
    } else {
        format!("http://{value}")
    };
    // The value may hold credentials: it is never echoed.
    let refused = || ConfigError(format!("{variable} must be {expected}"));
    let mut url = Url::parse(&with_scheme).map_err(|_| refused())?;
    let acceptable = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    if !acceptable {
        return Err(refused());
    }
    let path = url.path().trim_end_matches('/').to_owned();
    let path = if path.ends_with("/v1") || path.ends_with("/v2-beta") {
        path
    } else {
        format!("{path}/v1")
    };
    url.set_path(&path);
    Ok(url)
}

fn services_url(api_base: &Url, project_id: Option<&str>) -> Result<Url, ConfigError> {
    let suffix = match project_id {
        None => "/services".to_owned(),
        Some(id) if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()) => {
            format!("/projects/{id}/services")
        }
        Some(id) => {
            return Err(ConfigError::invalid(
                "RANCHER_PROJECT_ID",
                "an environment id such as 1a5 (letters and digits)",
                id,
            ));
        }
    };
    let mut url = api_base.clone();
    url.set_path(&format!("{}{suffix}", api_base.path()));
    Ok(url)
}

fn parse_or<T>(
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
fn list(value: Option<&str>) -> impl Iterator<Item = &str> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
}

fn parse_bool(variable: &str, value: Option<String>, default: bool) -> Result<bool, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn minimal() -> Vec<(String, String)> {
        vars(&[
            ("DOCKER_HUB_KEY", "hub-secret-value"),
            ("RANCHER_HOST", "rancher.example.com:8080"),
            ("RANCHER_PROJECT_ID", "1a5"),
            ("RANCHER_API_KEY", "ACCESSKEY"),
            ("RANCHER_API_SECRET", "rancher-secret-value"),
        ])
    }

    fn with(extra: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut all: Vec<_> = minimal()
            .into_iter()
            .filter(|(name, _)| !extra.iter().any(|(replaced, _)| replaced == name))
            .collect();
        all.extend(vars(extra));
        Settings::from_vars(all)
    }

    fn error_of(result: Result<Settings, ConfigError>) -> String {
        result.expect_err("settings should be refused").to_string()
    }

    #[test]
    fn defaults_match_the_original_program() {
        let settings = Settings::from_vars(minimal()).unwrap();
        assert_eq!(settings.listen_address().to_string(), "0.0.0.0:8080");
        assert!(settings.matching.default_opt_in);
        assert_eq!(
            settings.matching.label_name,
            "tech.manas.service.autoredeploy"
        );
        assert_eq!(
            settings.rancher.api_base.as_str(),
            "http://rancher.example.com:8080/v1"
        );
        assert_eq!(
            settings.rancher.services_url.as_str(),
            "http://rancher.example.com:8080/v1/projects/1a5/services"
        );
        assert_eq!(settings.upgrade.batch_size, 1);
        assert_eq!(settings.upgrade.interval_ms, 2000);
        assert!(!settings.upgrade.start_first);
        assert!(settings.upgrade.finish);
    }

    #[test]
    fn rancher_host_forms() {
        let base = |host: &str| {
            with(&[("RANCHER_HOST", host)])
                .unwrap()
                .rancher
                .api_base
                .to_string()
        };
        assert_eq!(base("10.0.0.5"), "http://10.0.0.5/v1");
        assert_eq!(
            base("https://rancher.example.com"),
            "https://rancher.example.com/v1"
        );
        assert_eq!(
            base("https://rancher.example.com/v2-beta/"),
            "https://rancher.example.com/v2-beta"
        );
        assert_eq!(
            base("http://proxy.local/rancher/v1"),
            "http://proxy.local/rancher/v1"
        );
        assert!(error_of(with(&[("RANCHER_HOST", "ftp://x")])).contains("RANCHER_HOST"));
        let leaked = error_of(with(&[("RANCHER_HOST", "https://user:topsecret@x")]));
        assert!(
            leaked.contains("RANCHER_HOST") && !leaked.contains("topsecret"),
            "{leaked}"
        );
    }

    #[test]
    fn without_project_id_the_environment_scoped_collection_is_used() {
        let settings = Settings::from_vars(
            minimal()
                .into_iter()
                .filter(|(k, _)| k != "RANCHER_PROJECT_ID"),
        )
        .unwrap();
        assert_eq!(
            settings.rancher.services_url.as_str(),
            "http://rancher.example.com:8080/v1/services"
        );
        assert!(
            error_of(with(&[("RANCHER_PROJECT_ID", "../admin")])).contains("RANCHER_PROJECT_ID")
        );
    }

    #[test]
    fn cattle_variables_stand_in_for_missing_rancher_ones() {
        let settings = Settings::from_vars(vars(&[
            ("DOCKER_HUB_KEY", "hub-secret-value"),
            ("CATTLE_URL", "http://rancher-server:8080/v1"),
            ("CATTLE_ACCESS_KEY", "AGENTKEY"),
            ("CATTLE_SECRET_KEY", "agent-secret"),
        ]))
        .unwrap();
        assert_eq!(
            settings.rancher.services_url.as_str(),
            "http://rancher-server:8080/v1/services"
        );
        assert_eq!(settings.rancher.access_key, "AGENTKEY");
        assert_eq!(settings.rancher.secret_key.expose_secret(), "agent-secret");
    }

    #[test]
    fn missing_required_values_name_the_variable() {
        let without = |name: &str| {
            error_of(Settings::from_vars(
                minimal().into_iter().filter(|(k, _)| k != name),
            ))
        };
        assert!(without("DOCKER_HUB_KEY").contains("DOCKER_HUB_KEY"));
        assert!(without("RANCHER_HOST").contains("RANCHER_HOST"));
        assert!(without("RANCHER_API_SECRET").contains("RANCHER_API_SECRET"));
        assert!(without("RANCHER_API_KEY").contains("RANCHER_API_KEY"));
        assert!(error_of(with(&[("DOCKER_HUB_KEY", "")])).contains("DOCKER_HUB_KEY"));
    }

    #[test]
    fn malformed_values_name_the_variable_and_the_expectation() {
        for (name, value) in [
            ("BIND_PORT", "eighty"),
            ("BIND_PORT", "70000"),
            ("BIND_ADDRESS", "localhost:80"),
            ("RANCHER_AUTOREDEPLOY_DEFAULT", "yes"),
            ("RANCHER_UPGRADE_BATCH_SIZE", "0"),
            ("RANCHER_UPGRADE_INTERVAL_MS", "50"),
            ("RANCHER_UPGRADE_START_FIRST", "1"),
            ("RANCHER_UPGRADE_POLL_MS", "-5"),
            ("RANCHER_UPGRADE_TIMEOUT_S", "soon"),
            ("RANCHER_FINISH_UPGRADE", "maybe"),
            ("AUTOREDEPLOY_QUEUE_SIZE", "0"),
            ("AUTOREDEPLOY_LOG_FORMAT", "xml"),
            ("AUTOREDEPLOY_HISTORY_DAYS", "0"),
            ("RANCHER_UPGRADE_ON_FAILURE", "panic"),
            ("RANCHER_RETRY_ATTEMPTS", "many"),
            ("RANCHER_RETRY_TOTAL_S", "0"),
            ("AUTOREDEPLOY_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("AUTOREDEPLOY_ALLOWED_REPOS", "myorg/[web"),
            ("AUTOREDEPLOY_AUTH_FAILURES_PER_MINUTE", "0"),
            ("AUTOREDEPLOY_MAX_CONNECTIONS", "0"),
            ("RANCHER_LIST_CONCURRENCY", "0"),
            ("RANCHER_MAX_CONCURRENT_REQUESTS", "0"),
            ("AUTOREDEPLOY_READ_TIMEOUT_S", "0"),
        ] {
            let message = error_of(with(&[(name, value)]));
            assert!(
                message.contains(name) && message.contains(value),
                "{message}"
            );
        }
    }

    #[test]
    fn secrets_can_come_from_files_without_their_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("hub-key");
        std::fs::write(&key_file, "from-a-file-0123456789\n").unwrap();
        let secret_file = dir.path().join("rancher-secret");
        std::fs::write(&secret_file, "rancher-secret-in-file\r\n").unwrap();
        let settings = Settings::from_vars(
            minimal()
                .into_iter()
                .filter(|(k, _)| k != "DOCKER_HUB_KEY" && k != "RANCHER_API_SECRET")
                .chain(vars(&[
                    ("DOCKER_HUB_KEY_FILE", key_file.to_str().unwrap()),
                    ("RANCHER_API_SECRET_FILE", secret_file.to_str().unwrap()),
                ])),
        )
        .unwrap();
        assert_eq!(
            settings.webhook_keys[0].expose_secret(),
            "from-a-file-0123456789"
        );
        assert_eq!(
            settings.rancher.secret_key.expose_secret(),
            "rancher-secret-in-file"
        );

        let both = error_of(with(&[("DOCKER_HUB_KEY_FILE", key_file.to_str().unwrap())]));
        assert!(
            both.contains("DOCKER_HUB_KEY or DOCKER_HUB_KEY_FILE, not both"),
            "{both}"
        );
        let missing = error_of(Settings::from_vars(
            minimal()
                .into_iter()
                .filter(|(k, _)| k != "RANCHER_API_SECRET")
                .chain(vars(&[("RANCHER_API_SECRET_FILE", "/nonexistent/secret")])),
        ));
        assert!(
            missing.contains("RANCHER_API_SECRET_FILE") && missing.contains("/nonexistent/secret"),
            "{missing}"
        );
    }

    #[test]
    fn several_keys_rotate_and_short_ones_are_refused() {
        let settings = with(&[(
            "DOCKER_HUB_KEY",
            "old-key-0123456789abcdef, new-key-0123456789abcdef",
        )])
        .unwrap();
        let keys: Vec<&str> = settings
            .webhook_keys
            .iter()
            .map(|k| k.expose_secret())
            .collect();
        assert_eq!(
            keys,
            ["old-key-0123456789abcdef", "new-key-0123456789abcdef"]
        );
        for short in [
            "shortkey",
            "long-enough-key-0123,short",
            "long-enough-key-0123,",
        ] {
            let refused = error_of(with(&[("DOCKER_HUB_KEY", short)]));
            assert!(
                refused.contains("at least 16 characters") && refused.contains("openssl rand"),
                "{refused}"
            );
            assert!(
                !refused.contains("shortkey") && !refused.contains("long-enough"),
                "{refused}"
            );
        }
    }

    #[test]
    fn a_ca_file_must_hold_pem_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("ca.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let refused = error_of(with(&[("RANCHER_CA_FILE", garbage.to_str().unwrap())]));
        assert!(
            refused.contains("RANCHER_CA_FILE") && refused.contains("no PEM certificate"),
            "{refused}"
        );
        let missing = error_of(with(&[("RANCHER_CA_FILE", "/nonexistent/ca.pem")]));
        assert!(
            missing.contains("RANCHER_CA_FILE: cannot read /nonexistent/ca.pem"),
            "{missing}"
        );
        let insecure = with(&[("RANCHER_INSECURE_SKIP_VERIFY", "true")]).unwrap();
        assert!(insecure.rancher.insecure_skip_verify);
    }

    #[test]
    fn debug_output_redacts_every_secret() {
        let settings = Settings::from_vars(minimal()).unwrap();
        let debug = format!("{settings:?}");
        assert!(!debug.contains("hub-secret-value"), "{debug}");
        assert!(!debug.contains("rancher-secret-value"), "{debug}");
        assert!(debug.contains("ACCESSKEY"));
    }
}
