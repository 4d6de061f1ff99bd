//! How jobs are run, whatever the target: how many upgrades at once, the queue in front of
//! the jobs, their retries, the grace they get at shutdown, and the journal that records
//! them.

use std::path::PathBuf;
use std::time::Duration;

use super::ConfigError;
use super::vars::{DeployVars, parse_or};

/// How jobs are run, the same for every target.
#[derive(Debug, Clone)]
pub struct DeploySettings {
    /// How many units may have an upgrade in progress at the same time (from the upgrade
    /// request to the unit's end), across all pushes and targets; `None`, the default, sets
    /// no bound (`AUTOREDEPLOY_MAX_CONCURRENT_UPGRADES`).
    pub max_concurrent_upgrades: Option<usize>,
    /// How many jobs may wait to be started (`AUTOREDEPLOY_QUEUE_SIZE`).
    pub queue_size: usize,
    /// How jobs that cannot be carried on for now are run again.
    pub job_retry: JobRetrySettings,
    /// How long running upgrades may go on after a shutdown signal
    /// (`AUTOREDEPLOY_SHUTDOWN_GRACE_S`).
    pub shutdown_grace: Duration,
    /// How often the tags that opted-in containers and Swarm services run are read from
    /// their registries, to redeploy those a missed push left behind; `None`, the
    /// default, never (`AUTOREDEPLOY_RECHECK_INTERVAL`).
    pub recheck_interval: Option<Duration>,
}

/// Runs again of a job whose run could not reach its end (a target unreachable beyond
/// the request retries, the journal unwritable, a run that panicked): it goes on where it
/// stopped, and is given up after the last run.
#[derive(Debug, Clone, Copy)]
pub struct JobRetrySettings {
    /// Pause before the next run (`AUTOREDEPLOY_JOB_RETRY_S`).
    pub pause: Duration,
    /// Runs before the job is given up as failed (`AUTOREDEPLOY_JOB_RETRIES`).
    pub runs: u32,
}

/// The job settings, validated, before they are placed in [`super::Settings`].
pub(super) struct DeploySection {
    /// How jobs are run.
    pub deploy: DeploySettings,
    /// `AUTOREDEPLOY_DATA_DIR`.
    pub data_dir: PathBuf,
    /// `AUTOREDEPLOY_HISTORY_DAYS`.
    pub history: Duration,
}

/// `AUTOREDEPLOY_RECHECK_INTERVAL`: a duration such as `24h` or `30m`, from a second to
/// thirty days.
fn recheck_interval(value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value.trim())
        .ok()
        .filter(|interval| {
            (Duration::from_secs(1)..=Duration::from_secs(30 * 86_400)).contains(interval)
        })
        .ok_or_else(|| {
            ConfigError::invalid(
                "AUTOREDEPLOY_RECHECK_INTERVAL",
                "a duration from 1s to 30d, such as 24h or 30m",
                value,
            )
        })
}

/// Validates the job variables.
pub(super) fn validate(vars: DeployVars) -> Result<DeploySection, ConfigError> {
    Ok(DeploySection {
        deploy: DeploySettings {
            max_concurrent_upgrades: vars
                .autoredeploy_max_concurrent_upgrades
                .map(|value| {
                    parse_or(
                        "AUTOREDEPLOY_MAX_CONCURRENT_UPGRADES",
                        Some(value),
                        0,
                        1..=100_000,
                    )
                })
                .transpose()?,
            queue_size: parse_or(
                "AUTOREDEPLOY_QUEUE_SIZE",
                vars.autoredeploy_queue_size,
                1024,
                1..=1_000_000,
            )?,
            shutdown_grace: Duration::from_secs(parse_or(
                "AUTOREDEPLOY_SHUTDOWN_GRACE_S",
                vars.autoredeploy_shutdown_grace_s,
                30,
                0..=3600,
            )?),
            recheck_interval: vars
                .autoredeploy_recheck_interval
                .map(|value| recheck_interval(&value))
                .transpose()?,
            job_retry: JobRetrySettings {
                pause: Duration::from_secs(parse_or(
                    "AUTOREDEPLOY_JOB_RETRY_S",
                    vars.autoredeploy_job_retry_s,
                    30,
                    1..=86_400,
                )?),
                runs: parse_or(
                    "AUTOREDEPLOY_JOB_RETRIES",
                    vars.autoredeploy_job_retries,
                    20,
                    1..=10_000,
                )?,
            },
        },
        data_dir: PathBuf::from(
            vars.autoredeploy_data_dir
                .unwrap_or_else(|| "data".to_owned()),
        ),
        history: Duration::from_secs(
            86_400
                * parse_or(
                    "AUTOREDEPLOY_HISTORY_DAYS",
                    vars.autoredeploy_history_days,
                    30,
                    1..=3650,
                )?,
        ),
    })
}
