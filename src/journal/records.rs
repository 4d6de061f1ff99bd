//! What the journal holds, and the queries that read it back.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Serialize, Serializer};

/// A job's number, as given in the `202` answer and used by `/jobs/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A push written to the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The job that will carry it through.
    pub job: JobId,
    /// Whether it was merged into a job already waiting for the same image.
    pub coalesced: bool,
}

/// A job to start or resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingJob {
    /// Its number.
    pub id: JobId,
    /// The pushed image, normalised.
    pub image: String,
    /// It was running when the process stopped.
    pub resuming: bool,
    /// Its walk through the environment had reached the end.
    pub scan_complete: bool,
}

/// Where a service stands within a job. Every step is written before it is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// To be upgraded; nothing sent to Rancher yet.
    Planned,
    /// Finishing an upgrade someone left in `upgraded`, before ours.
    FinishingPrevious,
    /// Our upgrade is being (or has been) posted.
    Upgrading,
    /// Rancher reached `upgraded`; finishing is next.
    Upgraded,
    /// Finished: `active` on the new launch config.
    Finished,
    /// Left in `upgraded` because `RANCHER_FINISH_UPGRADE=false`.
    LeftUpgraded,
    /// A failed upgrade is being rolled back.
    RollingBack,
    /// A failed upgrade is being canceled.
    Canceling,
    /// A failed upgrade was rolled back to the previous launch config.
    RolledBack,
    /// A failed upgrade was canceled and left in `canceled-upgrade`.
    Canceled,
    /// The upgrade failed; the reason says where.
    Failed,
    /// Runs the image but was not upgraded; the reason says why.
    Skipped,
}

impl Step {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::FinishingPrevious => "finishing-previous",
            Self::Upgrading => "upgrading",
            Self::Upgraded => "upgraded",
            Self::Finished => "finished",
            Self::LeftUpgraded => "left-upgraded",
            Self::RollingBack => "rolling-back",
            Self::Canceling => "canceling",
            Self::RolledBack => "rolled-back",
            Self::Canceled => "canceled",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "planned" => Self::Planned,
            "finishing-previous" => Self::FinishingPrevious,
            "upgrading" => Self::Upgrading,
            "upgraded" => Self::Upgraded,
            "finished" => Self::Finished,
            "left-upgraded" => Self::LeftUpgraded,
            "rolling-back" => Self::RollingBack,
            "canceling" => Self::Canceling,
            "rolled-back" => Self::RolledBack,
            "canceled" => Self::Canceled,
            "failed" => Self::Failed,
            "skipped" => Self::Skipped,
            _ => return None,
        })
    }

    /// Whether the service is done with for this job.
    pub fn is_end(self) -> bool {
        matches!(
            self,
            Self::Finished
                | Self::LeftUpgraded
                | Self::RolledBack
                | Self::Canceled
                | Self::Failed
                | Self::Skipped
        )
    }

    /// Ends that carry a reason: everything but success.
    pub fn is_unsuccessful_end(self) -> bool {
        matches!(
            self,
            Self::RolledBack | Self::Canceled | Self::Failed | Self::Skipped
        )
    }
}

impl rusqlite::types::FromSql for Step {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let name = value.as_str()?;
        Step::parse(name).ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(format!("unknown step {name}").into())
        })
    }
}

/// The `version` of each launch config about to be upgraded (`""` for the primary, the
/// sidekick's name otherwise). Rancher gives every upgraded launch config a new version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Versions(pub BTreeMap<String, String>);

impl Versions {
    pub(super) fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_default()
    }

    fn from_json(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok().map(Self)
    }
}

/// Lifecycle of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting to be started.
    Queued,
    /// Being worked on (or interrupted, to be resumed at the next start).
    Running,
    /// Every service it concerns has an outcome.
    Done,
    /// The environment could not be walked to the end; `error` says why.
    Failed,
}

impl rusqlite::types::FromSql for JobState {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        match value.as_str()? {
            "queued" => Ok(Self::Queued),
            "running" => Ok(Self::Running),
            "done" => Ok(Self::Done),
            "failed" => Ok(Self::Failed),
            other => Err(rusqlite::types::FromSqlError::Other(
                format!("unknown job state {other}").into(),
            )),
        }
    }
}

/// Milliseconds since the epoch, shown as an RFC 3339 time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time(pub i64);

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(self.0.max(0) as u64);
        humantime::format_rfc3339_millis(at).fmt(f)
    }
}

/// One line of the job history.
#[derive(Debug, Clone, Serialize)]
pub struct JobSummary {
    /// Its number.
    pub id: JobId,
    /// The pushed image, normalised.
    pub image: String,
    /// Who pushed last, when the registry said.
    pub pusher: Option<String>,
    /// Pushes merged into this job.
    pub pushes: i64,
    /// Where it stands.
    pub state: JobState,
    /// When the first push arrived.
    pub received_at: Time,
    /// When work on it began.
    pub started_at: Option<Time>,
    /// When it ended.
    pub finished_at: Option<Time>,
    /// Why its scan could not be completed.
    pub error: Option<String>,
    /// Services upgraded.
    pub upgraded: i64,
    /// Services whose upgrade failed (rolled back and canceled included).
    pub failed: i64,
    /// Services skipped.
    pub skipped: i64,
    /// Services not yet done with.
    pub pending: i64,
}

/// One job with everything recorded about it.
#[derive(Debug, Clone, Serialize)]
pub struct JobDetail {
    /// The history line.
    #[serde(flatten)]
    pub summary: JobSummary,
    /// Pages of services read.
    pub pages: Option<i64>,
    /// Services listed.
    pub listed: Option<i64>,
    /// Every service the job concerns, with its steps.
    pub services: Vec<ServiceRecord>,
}

/// A service within a job.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceRecord {
    /// Rancher id.
    pub service_id: String,
    /// Service name.
    pub service_name: String,
    /// Where it stands.
    pub step: Step,
    /// Why it failed or was skipped.
    pub reason: Option<String>,
    /// Launch config versions before our upgrade was posted.
    #[serde(skip)]
    pub versions_before: Option<Versions>,
    /// When it was planned.
    pub planned_at: Time,
    /// When its last step was recorded.
    pub updated_at: Time,
    /// Every step, oldest first (only in a job's detail).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepRecord>,
}

/// One recorded step.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// The step.
    pub step: Step,
    /// When it was recorded.
    pub at: Time,
    /// What it was about (the reason of a failure, a skipped service's reason, …).
    pub detail: Option<String>,
}

const SUMMARY_COLUMNS: &str = "j.id, j.image, j.pusher, j.pushes, j.state, j.received_at, j.started_at, j.finished_at, j.error,
    COALESCE(SUM(s.step IN ('finished', 'left-upgraded')), 0),
    COALESCE(SUM(s.step IN ('failed', 'rolled-back', 'canceled')), 0),
    COALESCE(SUM(s.step = 'skipped'), 0),
    COALESCE(SUM(s.step NOT IN ('finished', 'left-upgraded', 'failed', 'rolled-back', 'canceled', 'skipped')), 0),
    j.pages, j.listed";

fn summary_of(row: &Row<'_>) -> rusqlite::Result<JobSummary> {
    Ok(JobSummary {
        id: JobId(row.get(0)?),
        image: row.get(1)?,
        pusher: row.get(2)?,
        pushes: row.get(3)?,
        state: row.get(4)?,
        received_at: Time(row.get(5)?),
        started_at: row.get::<_, Option<i64>>(6)?.map(Time),
        finished_at: row.get::<_, Option<i64>>(7)?.map(Time),
        error: row.get(8)?,
        upgraded: row.get(9)?,
        failed: row.get(10)?,
        skipped: row.get(11)?,
        pending: row.get(12)?,
    })
}

/// Recent jobs, newest first.
pub fn list_jobs(
    db: &Connection,
    limit: usize,
    before: Option<JobId>,
) -> rusqlite::Result<Vec<JobSummary>> {
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM jobs j LEFT JOIN job_services s ON s.job_id = j.id
         WHERE ?1 IS NULL OR j.id < ?1 GROUP BY j.id ORDER BY j.id DESC LIMIT ?2"
    );
    let mut statement = db.prepare(&sql)?;
    let rows = statement.query_map(params![before.map(|id| id.0), limit as i64], summary_of)?;
    rows.collect()
}

/// One job with its services and their steps.
pub fn job_detail(db: &Connection, job: JobId) -> rusqlite::Result<Option<JobDetail>> {
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM jobs j LEFT JOIN job_services s ON s.job_id = j.id
         WHERE j.id = ?1 GROUP BY j.id"
    );
    let found = db
        .query_row(&sql, params![job.0], |row| {
            Ok((summary_of(row)?, row.get(13)?, row.get(14)?))
        })
        .optional()?;
    let Some((summary, pages, listed)) = found else {
        return Ok(None);
    };
    Ok(Some(JobDetail {
        summary,
        pages,
        listed,
        services: services_of(db, job, true)?,
    }))
}

/// The services of a job, with their steps when `with_steps`.
pub(super) fn services_of(
    db: &Connection,
    job: JobId,
    with_steps: bool,
) -> rusqlite::Result<Vec<ServiceRecord>> {
    let mut statement = db.prepare(
        "SELECT service_id, service_name, step, reason, versions_before, planned_at, updated_at
         FROM job_services WHERE job_id = ?1 ORDER BY planned_at, service_id",
    )?;
    let rows = statement.query_map(params![job.0], |row| {
        Ok(ServiceRecord {
            service_id: row.get(0)?,
            service_name: row.get(1)?,
            step: row.get(2)?,
            reason: row.get(3)?,
            versions_before: row
                .get::<_, Option<String>>(4)?
                .as_deref()
                .and_then(Versions::from_json),
            planned_at: Time(row.get(5)?),
            updated_at: Time(row.get(6)?),
            steps: Vec::new(),
        })
    })?;
    let mut services = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    if with_steps {
        let mut statement = db.prepare(
            "SELECT step, at, detail FROM service_steps WHERE job_id = ?1 AND service_id = ?2 ORDER BY rowid",
        )?;
        for service in &mut services {
            let steps = statement.query_map(params![job.0, service.service_id], |row| {
                Ok(StepRecord {
                    step: row.get(0)?,
                    at: Time(row.get(1)?),
                    detail: row.get(2)?,
                })
            })?;
            service.steps = steps.collect::<rusqlite::Result<_>>()?;
        }
    }
    Ok(services)
}
