//! The Rancher settings: how to reach Rancher's API, which services a push upgrades, and
//! how each upgrade is driven.
//!
//! The names of the original `rancher-autoredeploy` are kept, with the `CATTLE_*` variables
//! Rancher injects into a container that carries the agent-role labels standing in for
//! missing `RANCHER_*` ones.

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::ConfigError;
use super::vars::{ConnectionVars, MatchVars, RancherVars, UpgradeVars, parse_bool, parse_or};

/// Everything the Rancher target needs: where Rancher is, which of its services a push
/// upgrades, and how.
#[derive(Debug, Clone)]
pub struct RancherTarget {
    /// How to reach Rancher.
    pub connection: RancherSettings,
    /// Which services a push upgrades.
    pub matching: MatchSettings,
    /// How each upgrade is driven.
    pub upgrade: UpgradeSettings,
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
    /// What to do when an upgrade is stuck or fails.
    pub on_failure: OnFailure,
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

/// The label the original program used; kept so existing services keep their meaning.
pub const DEFAULT_LABEL_NAME: &str = "tech.manas.service.autoredeploy";

/// Pages of the service list read at the same time, unless `RANCHER_LIST_CONCURRENCY` says.
const DEFAULT_LIST_WINDOW: usize = 8;

/// Requests to Rancher in flight at the same time, unless
/// `RANCHER_MAX_CONCURRENT_REQUESTS` says.
const DEFAULT_MAX_REQUESTS: usize = 16;

/// Validates the Rancher target's variables.
pub(super) fn validate(vars: RancherVars) -> Result<RancherTarget, ConfigError> {
    Ok(RancherTarget {
        connection: connection(vars.connection)?,
        matching: matching(vars.matching)?,
        upgrade: upgrade(vars.upgrade)?,
    })
}

/// Validates how to reach Rancher.
fn connection(vars: ConnectionVars) -> Result<RancherSettings, ConfigError> {
    let ConnectionVars {
        rancher_host,
        rancher_project_id,
        rancher_api_key,
        rancher_api_secret,
        cattle_url,
        cattle_access_key,
        cattle_secret_key,
        rancher_request_timeout_s,
        rancher_retry_attempts,
        rancher_retry_max_delay_ms,
        rancher_retry_total_s,
        rancher_ca_file,
        rancher_insecure_skip_verify,
        rancher_list_concurrency,
        rancher_max_concurrent_requests,
    } = vars;
    let request_timeout = Duration::from_secs(parse_or(
        "RANCHER_REQUEST_TIMEOUT_S",
        rancher_request_timeout_s,
        30,
        1..=3600,
    )?);
    let retry = retry(
        rancher_retry_attempts,
        rancher_retry_max_delay_ms,
        rancher_retry_total_s,
    )?;
    let (host_variable, host) = host(rancher_host, cattle_url)?;
    let (access_key, secret_key) = credentials(
        rancher_api_key,
        rancher_api_secret,
        cattle_access_key,
        cattle_secret_key,
    )?;
    let api_base = api_base_url(host_variable, &host)?;
    let services_url = services_url(&api_base, rancher_project_id.as_deref())?;
    Ok(RancherSettings {
        api_base,
        services_url,
        access_key,
        secret_key,
        request_timeout,
        retry,
        list_window: parse_or(
            "RANCHER_LIST_CONCURRENCY",
            rancher_list_concurrency,
            DEFAULT_LIST_WINDOW,
            1..=64,
        )?,
        max_requests: parse_or(
            "RANCHER_MAX_CONCURRENT_REQUESTS",
            rancher_max_concurrent_requests,
            DEFAULT_MAX_REQUESTS,
            1..=4096,
        )?,
        insecure_skip_verify: parse_bool(
            "RANCHER_INSECURE_SKIP_VERIFY",
            rancher_insecure_skip_verify,
            false,
        )?,
        ca_bundle: rancher_ca_file.map(ca_bundle).transpose()?,
    })
}

/// Validates the opt-in rule.
fn matching(vars: MatchVars) -> Result<MatchSettings, ConfigError> {
    Ok(MatchSettings {
        default_opt_in: parse_bool(
            "RANCHER_AUTOREDEPLOY_DEFAULT",
            vars.rancher_autoredeploy_default,
            true,
        )?,
        label_name: vars
            .rancher_autoredeploy_label_name
            .unwrap_or_else(|| DEFAULT_LABEL_NAME.to_owned()),
    })
}

/// Validates how each upgrade is driven.
fn upgrade(vars: UpgradeVars) -> Result<UpgradeSettings, ConfigError> {
    Ok(UpgradeSettings {
        on_failure: on_failure(vars.rancher_upgrade_on_failure.as_deref())?,
        batch_size: parse_or(
            "RANCHER_UPGRADE_BATCH_SIZE",
            vars.rancher_upgrade_batch_size,
            1,
            1..=10_000,
        )?,
        interval_ms: parse_or(
            "RANCHER_UPGRADE_INTERVAL_MS",
            vars.rancher_upgrade_interval_ms,
            2000,
            100..=86_400_000,
        )?,
        start_first: parse_bool(
            "RANCHER_UPGRADE_START_FIRST",
            vars.rancher_upgrade_start_first,
            false,
        )?,
        poll_interval: Duration::from_millis(parse_or(
            "RANCHER_UPGRADE_POLL_MS",
            vars.rancher_upgrade_poll_ms,
            1000,
            10..=600_000,
        )?),
        timeout: Duration::from_secs(parse_or(
            "RANCHER_UPGRADE_TIMEOUT_S",
            vars.rancher_upgrade_timeout_s,
            600,
            1..=86_400,
        )?),
        finish: parse_bool("RANCHER_FINISH_UPGRADE", vars.rancher_finish_upgrade, true)?,
    })
}

/// `RANCHER_UPGRADE_ON_FAILURE`: `rollback` unless it says otherwise.
fn on_failure(value: Option<&str>) -> Result<OnFailure, ConfigError> {
    match value.map(str::trim) {
        None | Some("rollback") => Ok(OnFailure::Rollback),
        Some("cancel") => Ok(OnFailure::Cancel),
        Some("leave") => Ok(OnFailure::Leave),
        Some(other) => Err(ConfigError::invalid(
            "RANCHER_UPGRADE_ON_FAILURE",
            "`rollback`, `cancel` or `leave`",
            other,
        )),
    }
}

/// Retries of a single request.
fn retry(
    attempts: Option<String>,
    max_delay_ms: Option<String>,
    total_s: Option<String>,
) -> Result<RetrySettings, ConfigError> {
    Ok(RetrySettings {
        attempts: parse_or("RANCHER_RETRY_ATTEMPTS", attempts, 6, 0..=100)?,
        max_delay: Duration::from_millis(parse_or(
            "RANCHER_RETRY_MAX_DELAY_MS",
            max_delay_ms,
            10_000,
            10..=600_000,
        )?),
        total: Duration::from_secs(parse_or("RANCHER_RETRY_TOTAL_S", total_s, 120, 1..=86_400)?),
    })
}

/// The server's address and the variable it came from: `RANCHER_HOST`, else `CATTLE_URL`.
fn host(
    host: Option<String>,
    cattle_url: Option<String>,
) -> Result<(&'static str, String), ConfigError> {
    match (host, cattle_url) {
        (Some(host), _) => Ok(("RANCHER_HOST", host)),
        (None, Some(url)) => Ok(("CATTLE_URL", url)),
        (None, None) => Err(ConfigError(
            "RANCHER_HOST is required (host[:port] or URL of the Rancher server); inside a \
             Rancher stack with the agent-role labels, CATTLE_URL is used instead"
                .into(),
        )),
    }
}

/// The API key pair: `RANCHER_API_KEY` and `RANCHER_API_SECRET` together, else
/// `CATTLE_ACCESS_KEY` and `CATTLE_SECRET_KEY`.
fn credentials(
    api_key: Option<String>,
    api_secret: Option<SecretString>,
    cattle_access_key: Option<String>,
    cattle_secret_key: Option<SecretString>,
) -> Result<(String, SecretString), ConfigError> {
    match (api_key, api_secret) {
        (Some(key), Some(secret)) => Ok((key, secret)),
        (Some(_), None) => Err(ConfigError(
            "RANCHER_API_SECRET is required when RANCHER_API_KEY is set".into(),
        )),
        (None, Some(_)) => Err(ConfigError(
            "RANCHER_API_KEY is required when RANCHER_API_SECRET is set".into(),
        )),
        (None, None) => match (cattle_access_key, cattle_secret_key) {
            (Some(key), Some(secret)) => Ok((key, secret)),
            _ => Err(ConfigError(
                "RANCHER_API_KEY and RANCHER_API_SECRET are required (an environment API key \
                 from Rancher's API page); inside a Rancher stack with the agent-role labels, \
                 CATTLE_ACCESS_KEY and CATTLE_SECRET_KEY are used instead"
                    .into(),
            )),
        },
    }
}

/// The PEM certificates of `RANCHER_CA_FILE`.
fn ca_bundle(path: String) -> Result<Vec<u8>, ConfigError> {
    let pem = std::fs::read(&path)
        .map_err(|err| ConfigError(format!("RANCHER_CA_FILE: cannot read {path}: {err}")))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(ConfigError(format!(
            "RANCHER_CA_FILE: {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )));
    }
    Ok(pem)
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

/// The service collection: per project with `RANCHER_PROJECT_ID`, else the key's own.
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
