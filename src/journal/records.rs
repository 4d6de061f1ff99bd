//! What the journal holds, and the queries that read it back.

use std::fmt;
use std::time::{Duration, SystemTime};

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use rusqlite::{Connection, Row, params};
use serde::{Serialize, Serializer};

use crate::domain::{ImageRef, Outcome, TargetKind, UnitEnd, UnitRef};

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
#[derive(Debug, Clone, PartialEq)]
pub struct PendingJob {
    /// Its number.
    pub id: JobId,
    /// The pushed image.
    pub image: ImageRef,
    /// It was running when the process stopped, or paused.
    pub resuming: bool,
    /// The one unit it concerns, when it is not a push of the image to every unit.
    pub only: Option<UnitRef>,
    /// The digest the last push merged into it says the tag names, when it says so.
    pub digest: Option<String>,
    /// When its first push arrived.
    pub received_at: Time,
}

/// Lifecycle of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting to be started.
    Queued,
    /// Being worked on (or interrupted, to be resumed at the next start).
    Running,
    /// Every unit it concerns has an end.
    Done,
    /// Every unit it concerns has an end, but the job failed as a whole; `error` says why.
    Failed,
}

impl FromSql for JobState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_str()? {
            "queued" => Ok(Self::Queued),
            "running" => Ok(Self::Running),
            "done" => Ok(Self::Done),
            "failed" => Ok(Self::Failed),
            other => Err(FromSqlError::Other(
                format!("unknown job state {other}").into(),
            )),
        }
    }
}

/// Reads a stored name with `parse`, or fails naming `what` it should have been.
fn parsed<T>(value: ValueRef<'_>, what: &str, parse: fn(&str) -> Option<T>) -> FromSqlResult<T> {
    let name = value.as_str()?;
    parse(name).ok_or_else(|| FromSqlError::Other(format!("unknown {what} {name}").into()))
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
    /// The sender of the last push merged into it.
    pub source: String,
    /// Who pushed last, when the sender said.
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
    /// Why it failed as a whole.
    pub error: Option<String>,
    /// Units upgraded.
    pub upgraded: i64,
    /// Units that already ran the pushed content.
    pub up_to_date: i64,
    /// Units whose upgrade failed (rolled back, cancelled and left included).
    pub failed: i64,
    /// Units skipped.
    pub skipped: i64,
    /// Units without an end yet.
    pub pending: i64,
}

/// How far one target's scan of a job got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ScanRecord {
    /// The target scanned.
    pub target: TargetKind,
    /// Whether the walk reached its end (or stopped for good, then with `error`).
    pub complete: bool,
    /// Pages read.
    pub pages: Option<i64>,
    /// Workloads listed.
    pub listed: Option<i64>,
    /// Why the walk stopped before its end.
    pub error: Option<String>,
}

/// Which units of a job to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitPage {
    /// At most this many.
    pub limit: usize,
    /// Those after this unit number (`seq`).
    pub after: Option<i64>,
}

/// One job with everything recorded about it.
#[derive(Debug, Clone, Serialize)]
pub struct JobDetail {
    /// The history line.
    #[serde(flatten)]
    pub summary: JobSummary,
    /// Pages read, over all targets.
    pub pages: Option<i64>,
    /// Workloads listed, over all targets.
    pub listed: Option<i64>,
    /// Each target's scan.
    pub scans: Vec<ScanRecord>,
    /// A page of the units the job concerns, with their steps, in the order planned.
    pub units: Vec<UnitRecord>,
}

/// A unit within a job.
#[derive(Debug, Clone, Serialize)]
pub struct UnitRecord {
    /// Its number in the journal, to page through a job's units.
    pub seq: i64,
    /// Its target.
    pub target: TargetKind,
    /// Its id on the target.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The last step recorded: its platform's step, or its end.
    pub step: String,
    /// How it ended, once it has.
    pub end: Option<UnitEnd>,
    /// Why, for every end but a plain `upgraded`.
    pub reason: Option<String>,
    /// The platform's checkpoint of its last step.
    #[serde(skip)]
    pub checkpoint: Option<String>,
    /// When it was planned.
    pub planned_at: Time,
    /// When its last step was recorded.
    pub updated_at: Time,
    /// Every step, oldest first (only in a job's detail).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepRecord>,
}

impl UnitRecord {
    /// The unit it is about.
    pub fn unit(&self) -> UnitRef {
        UnitRef {
            target: self.target,
            id: self.id.clone(),
        }
    }
}

/// One recorded step.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// The step.
    pub step: String,
    /// When it was recorded.
    pub at: Time,
    /// What it was about (the reason of a failure, a skipped unit's reason, …).
    pub detail: Option<String>,
}

/// Jobs to work on: running (to resume) first, then queued, oldest first.
pub(super) fn runnable(db: &Connection) -> rusqlite::Result<Vec<PendingJob>> {
    let mut statement = db.prepare(
        "SELECT id, image, state, only_unit, digest, received_at FROM jobs WHERE state IN ('running', 'queued')
         ORDER BY state = 'running' DESC, id",
    )?;
    let rows = statement.query_map([], |row| {
        let image: String = row.get(1)?;
        Ok(PendingJob {
            id: JobId(row.get(0)?),
            image: ImageRef::parse(&image).map_err(|err| {
                rusqlite::Error::FromSqlConversionFailure(
                    1,
                    rusqlite::types::Type::Text,
                    err.into(),
                )
            })?,
            resuming: row.get::<_, String>(2)? == "running",
            only: match row.get::<_, Option<String>>(3)? {
                None => None,
                Some(only) => Some(UnitRef::parse(&only).ok_or_else(|| {
                    rusqlite::Error::FromSqlConversionFailure(
                        3,
                        rusqlite::types::Type::Text,
                        format!("`{only}` is not a unit").into(),
                    )
                })?),
            },
            digest: row.get(4)?,
            received_at: Time(row.get(5)?),
        })
    })?;
    rows.collect()
}

/// The scans of a job.
pub(super) fn scans_of(db: &Connection, job: JobId) -> rusqlite::Result<Vec<ScanRecord>> {
    let mut statement = db.prepare_cached(
        "SELECT target, complete, pages, listed, error FROM job_scans WHERE job_id = ?1 ORDER BY target",
    )?;
    let rows = statement.query_map(params![job.0], |row| {
        Ok(ScanRecord {
            target: parsed(row.get_ref(0)?, "target", TargetKind::parse)
                .map_err(|err| from_sql(0, err))?,
            complete: row.get(1)?,
            pages: row.get(2)?,
            listed: row.get(3)?,
            error: row.get(4)?,
        })
    })?;
    rows.collect()
}

/// The journal's number of a unit of a job.
pub(super) fn unit_seq(db: &Connection, job: JobId, unit: &UnitRef) -> rusqlite::Result<i64> {
    db.prepare_cached(
        "SELECT seq FROM job_units WHERE job_id = ?1 AND target = ?2 AND unit_id = ?3",
    )?
    .query_row(params![job.0, unit.target.as_str(), unit.id], |row| {
        row.get(0)
    })
}

/// Records the end of unit `seq`.
pub(super) fn end_unit(
    db: &Connection,
    seq: i64,
    outcome: &Outcome,
    now: i64,
) -> rusqlite::Result<()> {
    let end = outcome.end.as_str();
    db.prepare_cached(
        "UPDATE job_units SET step = ?2, end_state = ?2, reason = ?3, updated_at = ?4 WHERE seq = ?1",
    )?
    .execute(params![seq, end, outcome.reason, now])?;
    db.prepare_cached(
        "INSERT INTO unit_steps (unit_seq, step, at, detail) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![seq, end, now, outcome.reason])?;
    Ok(())
}

const UNIT_COLUMNS: &str = "u.seq, u.target, u.unit_id, u.name, u.step, u.end_state, u.reason, u.checkpoint, u.planned_at, u.updated_at";

/// Reads the unit columns that start at `first`.
fn unit_at(row: &Row<'_>, first: usize) -> rusqlite::Result<UnitRecord> {
    Ok(UnitRecord {
        seq: row.get(first)?,
        target: parsed(row.get_ref(first + 1)?, "target", TargetKind::parse)
            .map_err(|err| from_sql(first + 1, err))?,
        id: row.get(first + 2)?,
        name: row.get(first + 3)?,
        step: row.get(first + 4)?,
        end: match row.get_ref(first + 5)? {
            ValueRef::Null => None,
            value => {
                Some(parsed(value, "end", UnitEnd::parse).map_err(|err| from_sql(first + 5, err))?)
            }
        },
        reason: row.get(first + 6)?,
        checkpoint: row.get(first + 7)?,
        planned_at: Time(row.get(first + 8)?),
        updated_at: Time(row.get(first + 9)?),
        steps: Vec::new(),
    })
}

fn from_sql(column: usize, err: FromSqlError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, err.into())
}

/// The units of a job, in the order planned, without their steps.
pub(super) fn units_of(db: &Connection, job: JobId) -> rusqlite::Result<Vec<UnitRecord>> {
    let mut statement = db.prepare_cached(&format!(
        "SELECT {UNIT_COLUMNS} FROM job_units u WHERE u.job_id = ?1 ORDER BY u.seq"
    ))?;
    let rows = statement.query_map(params![job.0], |row| unit_at(row, 0))?;
    rows.collect()
}

/// The history line's columns, for a job aliased `j`; the counts come from its units.
pub(super) const SUMMARY_COLUMNS: &str =
    "j.id, j.image, j.source, j.pusher, j.pushes, j.state, j.received_at,
    j.started_at, j.finished_at, j.error,
    (SELECT COUNT(*) FROM job_units c WHERE c.job_id = j.id AND c.end_state = 'upgraded'),
    (SELECT COUNT(*) FROM job_units c WHERE c.job_id = j.id AND c.end_state = 'up-to-date'),
    (SELECT COUNT(*) FROM job_units c WHERE c.job_id = j.id
        AND c.end_state IN ('failed', 'rolled-back', 'cancelled', 'left')),
    (SELECT COUNT(*) FROM job_units c WHERE c.job_id = j.id AND c.end_state = 'skipped'),
    (SELECT COUNT(*) FROM job_units c WHERE c.job_id = j.id AND c.end_state IS NULL)";

/// How many columns [`SUMMARY_COLUMNS`] has.
pub(super) const SUMMARY_WIDTH: usize = 15;

pub(super) fn summary_of(row: &Row<'_>) -> rusqlite::Result<JobSummary> {
    Ok(JobSummary {
        id: JobId(row.get(0)?),
        image: row.get(1)?,
        source: row.get(2)?,
        pusher: row.get(3)?,
        pushes: row.get(4)?,
        state: row.get(5)?,
        received_at: Time(row.get(6)?),
        started_at: row.get::<_, Option<i64>>(7)?.map(Time),
        finished_at: row.get::<_, Option<i64>>(8)?.map(Time),
        error: row.get(9)?,
        upgraded: row.get(10)?,
        up_to_date: row.get(11)?,
        failed: row.get(12)?,
        skipped: row.get(13)?,
        pending: row.get(14)?,
    })
}

/// Recent jobs, newest first.
pub fn list_jobs(
    db: &Connection,
    limit: usize,
    before: Option<JobId>,
) -> rusqlite::Result<Vec<JobSummary>> {
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM jobs j WHERE ?1 IS NULL OR j.id < ?1 ORDER BY j.id DESC LIMIT ?2"
    );
    let mut statement = db.prepare_cached(&sql)?;
    let rows = statement.query_map(params![before.map(|id| id.0), limit as i64], summary_of)?;
    rows.collect()
}

/// One job with a page of its units and their steps, read with one query: a row per step
/// of each unit of the page (or one row for a unit without steps, or for a job without
/// units), each repeating the job's columns.
pub fn job_detail(
    db: &Connection,
    job: JobId,
    page: UnitPage,
) -> rusqlite::Result<Option<JobDetail>> {
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS},
            (SELECT json_group_array(json_object('target', target,
                 'complete', json(CASE WHEN complete THEN 'true' ELSE 'false' END),
                 'pages', pages, 'listed', listed, 'error', error))
             FROM (SELECT * FROM job_scans WHERE job_id = j.id ORDER BY target)),
            {UNIT_COLUMNS}, s.step, s.at, s.detail
         FROM jobs j
         LEFT JOIN (SELECT * FROM job_units WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3) u
            ON 1
         LEFT JOIN unit_steps s ON s.unit_seq = u.seq
         WHERE j.id = ?1
         ORDER BY u.seq, s.rowid"
    );
    let mut statement = db.prepare_cached(&sql)?;
    let mut rows = statement.query(params![job.0, page.after.unwrap_or(0), page.limit as i64])?;
    let mut detail: Option<JobDetail> = None;
    let units_at = SUMMARY_WIDTH + 1;
    let steps_at = units_at + 10;
    while let Some(row) = rows.next()? {
        let detail = match &mut detail {
            Some(detail) => detail,
            None => {
                let scans: String = row.get(SUMMARY_WIDTH)?;
                let scans: Vec<ScanRecord> = serde_json::from_str(&scans).map_err(|err| {
                    rusqlite::Error::FromSqlConversionFailure(
                        SUMMARY_WIDTH,
                        rusqlite::types::Type::Text,
                        err.into(),
                    )
                })?;
                let total = |pick: fn(&ScanRecord) -> Option<i64>| {
                    scans.iter().filter_map(pick).reduce(|a, b| a + b)
                };
                detail.insert(JobDetail {
                    summary: summary_of(row)?,
                    pages: total(|scan| scan.pages),
                    listed: total(|scan| scan.listed),
                    scans,
                    units: Vec::new(),
                })
            }
        };
        let Some(seq) = row.get::<_, Option<i64>>(units_at)? else {
            continue;
        };
        if detail.units.last().is_none_or(|unit| unit.seq != seq) {
            detail.units.push(unit_at(row, units_at)?);
        }
        if let (Some(step), Some(unit)) = (
            row.get::<_, Option<String>>(steps_at)?,
            detail.units.last_mut(),
        ) {
            unit.steps.push(StepRecord {
                step,
                at: Time(row.get(steps_at + 1)?),
                detail: row.get(steps_at + 2)?,
            });
        }
    }
    Ok(detail)
}
