//! The journal: an embedded SQLite database that makes accepted pushes durable.
//!
//! A push is written here before it is answered `202`; each job then records, per target,
//! how far its scan got, the units it planned and every step of each one, *before* the step
//! is taken. After a crash, [`Journal::runnable`] and [`Journal::units`] tell where each job
//! stopped, and the deploy core resumes it from there.
//!
//! One thread owns the writing connection. Calls are queued to it and run in batches, one
//! transaction (and one `fsync`) per batch, so many pushes arriving at once share the cost.
//! The history (`/jobs`) is read on a connection of its own, off that thread, so reading it
//! never delays a push.

mod migrations;
mod outbox;
mod reader;
mod records;
mod writer;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::{OptionalExtension, params};

pub use outbox::{Channel, JobNotice, Notice, NoticePlan};
pub use records::{
    Accepted, JobDetail, JobId, JobState, JobSummary, PendingJob, ScanRecord, StepRecord, Time,
    UnitPage, UnitRecord, job_detail, list_jobs,
};

use crate::domain::{Outcome, PushEvent, TargetKind, UnitEnd, UnitRef};
use crate::platform::{Candidate, Plan};
use reader::Reader;
use writer::Writer;

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "autoredeploy.sqlite3";

/// File locked by the server that uses the data directory.
const LOCK_FILE: &str = "autoredeploy.lock";

/// The journal could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The data directory cannot be used; the message says which and why.
    #[error("{0}")]
    Unusable(String),
    /// A statement failed.
    #[error("journal: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A batch of writes could not be committed.
    #[error("journal: could not commit: {0}")]
    Commit(String),
    /// The journal thread has stopped.
    #[error("journal: the journal thread has stopped")]
    Closed,
    /// A job was to be ended while one of its units has no end.
    #[error("journal: job {0} still has units without an end, so it is not ended")]
    Unfinished(JobId),
}

/// Why a push was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// As many jobs as `AUTOREDEPLOY_QUEUE_SIZE` are waiting already.
    #[error("the queue of pending pushes is full")]
    QueueFull,
    /// The push could not be written.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// The step every unit starts at.
pub const PLANNED: &str = "planned";

/// Handle to the journal; cheap to clone.
#[derive(Debug, Clone)]
pub struct Journal {
    writer: Writer,
    reader: Reader,
    /// Held locked for the life of the process: two servers on one journal would both run
    /// its jobs.
    _lock: std::sync::Arc<std::fs::File>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

impl Journal {
    /// Opens (creating if needed) the journal in `directory`, upgrading a journal of an
    /// earlier release in place, and fails with a message that names the directory if it
    /// cannot be used.
    pub fn open(directory: &Path) -> Result<Self, JournalError> {
        let unusable = |what: &str, err: &dyn std::fmt::Display| {
            JournalError::Unusable(format!(
                "AUTOREDEPLOY_DATA_DIR {}: {what}: {err}; it must be a writable directory \
                 (in a container, mount a volume at /data)",
                directory.display()
            ))
        };
        std::fs::create_dir_all(directory).map_err(|err| unusable("cannot be created", &err))?;
        let lock = std::fs::File::create(directory.join(LOCK_FILE))
            .map_err(|err| unusable("cannot be written", &err))?;
        if let Err(err) = lock.try_lock() {
            return Err(JournalError::Unusable(format!(
                "AUTOREDEPLOY_DATA_DIR {} is in use by another autoredeploy ({err}); \
                 only one server may use a data directory",
                directory.display()
            )));
        }
        let path: PathBuf = directory.join(DATABASE_FILE);
        let mut connection = rusqlite::Connection::open(&path)
            .map_err(|err| unusable("the journal cannot be opened", &err))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA busy_timeout = 5000;",
            )
            .map_err(|err| unusable("the journal cannot be written", &err))?;
        migrations::migrate(&mut connection).map_err(|err| {
            JournalError::Unusable(format!(
                "the journal {} cannot be used: {err}",
                path.display()
            ))
        })?;
        let reader = Reader::open(&path)
            .map_err(|err| unusable("the journal cannot be opened for reading", &err))?;
        Ok(Self {
            writer: Writer::start(connection)
                .map_err(|err| unusable("the journal thread cannot be started", &err))?,
            reader,
            _lock: std::sync::Arc::new(lock),
        })
    }

    /// Whether the journal can still be written (its thread is running).
    pub fn is_alive(&self) -> bool {
        self.writer.is_alive()
    }

    /// Writes an accepted push: merged into the job already queued for the same image, or a
    /// new queued job if fewer than `queue_limit` are waiting.
    pub async fn accept(
        &self,
        push: &PushEvent,
        queue_limit: usize,
    ) -> Result<Accepted, AcceptError> {
        let image = push.image.to_string();
        let pusher = push.pusher.clone();
        let source = push.source.as_str();
        let digest = push.digest.clone();
        let callback = push.callback_url.as_ref().map(url::Url::to_string);
        let remember_callback = move |db: &rusqlite::Connection, job: i64| {
            db.execute(
                "INSERT OR IGNORE INTO job_callbacks (job_id, url) SELECT ?1, ?2 WHERE ?2 IS NOT NULL",
                params![job, callback],
            )
        };
        let only = push.only.as_ref().map(UnitRef::to_string);
        let result = self
            .writer
            .call(move |db| {
                let now = now_ms();
                let queued: Option<i64> = db
                    .query_row(
                        "SELECT id FROM jobs WHERE state = 'queued' AND image = ?1 AND only_unit IS ?2
                         ORDER BY id LIMIT 1",
                        params![image, only],
                        |row| row.get(0),
                    )
                    .optional()?;
                if let Some(id) = queued {
                    db.execute(
                        "UPDATE jobs SET pushes = pushes + 1, last_push_at = ?2, pusher = COALESCE(?3, pusher),
                                source = ?4, digest = ?5 WHERE id = ?1",
                        params![id, now, pusher, source, digest],
                    )?;
                    remember_callback(db, id)?;
                    return Ok(Some(Accepted { job: JobId(id), coalesced: true }));
                }
                let waiting: i64 =
                    db.query_row("SELECT COUNT(*) FROM jobs WHERE state = 'queued'", [], |row| row.get(0))?;
                if waiting as usize >= queue_limit {
                    return Ok(None);
                }
                db.execute(
                    "INSERT INTO jobs (image, pusher, pushes, state, received_at, last_push_at, source, digest, only_unit)
                     VALUES (?1, ?2, 1, 'queued', ?3, ?3, ?4, ?5, ?6)",
                    params![image, pusher, now, source, digest, only],
                )?;
                let id = db.last_insert_rowid();
                remember_callback(db, id)?;
                Ok(Some(Accepted { job: JobId(id), coalesced: false }))
            })
            .await?;
        result.ok_or(AcceptError::QueueFull)
    }

    /// Jobs to work on, oldest first: those that were running when the process stopped
    /// (to resume), then those queued.
    pub async fn runnable(&self) -> Result<Vec<PendingJob>, JournalError> {
        self.writer.call(records::runnable).await
    }

    /// Marks a job as started (kept on resume).
    pub async fn start_job(&self, job: JobId) -> Result<(), JournalError> {
        self.writer
            .call(move |db| {
                db.execute(
                    "UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, ?2) WHERE id = ?1",
                    params![job.0, now_ms()],
                )
                .map(drop)
            })
            .await
    }

    /// How far each target's scan of a job got.
    pub async fn scans(&self, job: JobId) -> Result<Vec<ScanRecord>, JournalError> {
        self.writer.call(move |db| records::scans_of(db, job)).await
    }

    /// Records the end of a target's scan: complete, or stopped for good with `error`.
    pub async fn end_scan(
        &self,
        job: JobId,
        target: TargetKind,
        pages: usize,
        listed: usize,
        error: Option<String>,
    ) -> Result<(), JournalError> {
        self.writer
            .call(move |db| {
                db.execute(
                    "INSERT INTO job_scans (job_id, target, complete, pages, listed, error)
                     VALUES (?1, ?2, 1, ?3, ?4, ?5)
                     ON CONFLICT (job_id, target) DO UPDATE
                     SET complete = 1, pages = ?3, listed = ?4, error = ?5",
                    params![job.0, target.as_str(), pages as i64, listed as i64, error],
                )
                .map(drop)
            })
            .await
    }

    /// Ends a job, and writes the notices `plan` owes for it in the same transaction;
    /// `error` says why it failed as a whole (a scan stopped for good, the platform
    /// refused the credentials). A job with a unit that has no end is not ended: that would
    /// leave the unit without an outcome for ever.
    pub async fn finish_job(
        &self,
        job: JobId,
        error: Option<String>,
        plan: &NoticePlan,
    ) -> Result<(), JournalError> {
        let plan = plan.clone();
        self.writer
            .call(move |db| {
                let state = if error.is_some() { "failed" } else { "done" };
                let now = now_ms();
                let ended = db.execute(
                    "UPDATE jobs SET state = ?2, finished_at = ?3, error = ?4 WHERE id = ?1
                     AND NOT EXISTS (SELECT 1 FROM job_units WHERE job_id = ?1 AND end_state IS NULL)",
                    params![job.0, state, now, error],
                )?;
                if ended == 1 {
                    outbox::enqueue(db, job, error.is_some(), &plan, now)?;
                }
                Ok(ended)
            })
            .await
            .and_then(|ended| match ended {
                0 => Err(JournalError::Unfinished(job)),
                _ => Ok(()),
            })
    }

    /// Records the units a scan found, each planned, or ended at once when it is to be
    /// skipped, in one transaction (a page's worth costs one write to disk). Returns the
    /// records of those that were new: a unit the journal has already is left as it is.
    pub async fn plan_units(
        &self,
        job: JobId,
        candidates: &[Candidate],
    ) -> Result<Vec<UnitRecord>, JournalError> {
        let units: Vec<(UnitRef, String, Option<Outcome>)> = candidates
            .iter()
            .map(|candidate| {
                let ended = match &candidate.plan {
                    Plan::Deploy(_) => None,
                    Plan::Skip(reason) => Some(Outcome::skipped(reason.clone())),
                };
                (candidate.unit.clone(), candidate.name.clone(), ended)
            })
            .collect();
        self.writer
            .call(move |db| {
                let now = now_ms();
                let mut new = Vec::new();
                let mut insert = db.prepare_cached(
                    "INSERT OR IGNORE INTO job_units (job_id, target, unit_id, name, step, end_state, reason, planned_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
                )?;
                let mut step = db.prepare_cached(
                    "INSERT INTO unit_steps (unit_seq, step, at, detail) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (unit, name, ended) in units {
                    let (step_name, end, reason) = match &ended {
                        Some(outcome) => (outcome.end.as_str(), Some(outcome.end), outcome.reason.clone()),
                        None => (PLANNED, None, None),
                    };
                    let inserted = insert.execute(params![
                        job.0,
                        unit.target.as_str(),
                        unit.id,
                        name,
                        step_name,
                        end.map(UnitEnd::as_str),
                        reason,
                        now
                    ])?;
                    if inserted == 1 {
                        let seq = db.last_insert_rowid();
                        step.execute(params![seq, step_name, now, reason])?;
                        new.push(UnitRecord {
                            seq,
                            target: unit.target,
                            id: unit.id,
                            name,
                            step: step_name.to_owned(),
                            end,
                            reason,
                            checkpoint: None,
                            planned_at: records::Time(now),
                            updated_at: records::Time(now),
                            steps: Vec::new(),
                        });
                    }
                }
                Ok(new)
            })
            .await
    }

    /// Records a unit's next step, before it is taken, with its platform's `checkpoint`
    /// (the one before is kept when `None`).
    pub async fn record_step(
        &self,
        job: JobId,
        unit: &UnitRef,
        step: &'static str,
        detail: Option<String>,
        checkpoint: Option<String>,
    ) -> Result<(), JournalError> {
        let unit = unit.clone();
        self.writer
            .call(move |db| {
                let seq = records::unit_seq(db, job, &unit)?;
                let now = now_ms();
                db.execute(
                    "UPDATE job_units SET step = ?2, updated_at = ?3, checkpoint = COALESCE(?4, checkpoint)
                     WHERE seq = ?1",
                    params![seq, step, now, checkpoint],
                )?;
                db.execute(
                    "INSERT INTO unit_steps (unit_seq, step, at, detail) VALUES (?1, ?2, ?3, ?4)",
                    params![seq, step, now, detail],
                )?;
                Ok(())
            })
            .await
    }

    /// Records a unit's end.
    pub async fn end_unit(
        &self,
        job: JobId,
        unit: &UnitRef,
        outcome: &Outcome,
    ) -> Result<(), JournalError> {
        let unit = unit.clone();
        let outcome = outcome.clone();
        self.writer
            .call(move |db| {
                let seq = records::unit_seq(db, job, &unit)?;
                records::end_unit(db, seq, &outcome, now_ms())
            })
            .await
    }

    /// Gives a job up: every unit of it without an end is ended failed with `reason`, and
    /// the job failed with it, with the notices `plan` owes for it, in one transaction.
    /// Returns those units as they were.
    pub async fn give_up(
        &self,
        job: JobId,
        reason: String,
        plan: &NoticePlan,
    ) -> Result<Vec<UnitRecord>, JournalError> {
        let plan = plan.clone();
        self.writer
            .call(move |db| {
                let unfinished: Vec<UnitRecord> = records::units_of(db, job)?
                    .into_iter()
                    .filter(|unit| unit.end.is_none())
                    .collect();
                let now = now_ms();
                let outcome = Outcome::failed(reason.clone());
                for unit in &unfinished {
                    records::end_unit(db, unit.seq, &outcome, now)?;
                }
                db.execute(
                    "UPDATE jobs SET state = 'failed', finished_at = ?2, error = ?3 WHERE id = ?1",
                    params![job.0, now, reason],
                )?;
                outbox::enqueue(db, job, true, &plan, now)?;
                Ok(unfinished)
            })
            .await
    }

    /// The units a job has planned, with where each one stands (without their steps).
    pub async fn units(&self, job: JobId) -> Result<Vec<UnitRecord>, JournalError> {
        self.writer.call(move |db| records::units_of(db, job)).await
    }

    /// Recent jobs, newest first: at most `limit`, older than job `before` when given.
    pub async fn list_jobs(
        &self,
        limit: usize,
        before: Option<JobId>,
    ) -> Result<Vec<JobSummary>, JournalError> {
        self.reader
            .read(move |db| records::list_jobs(db, limit, before))
            .await
    }

    /// One job with a page of its units (each with its steps): at most `limit` units,
    /// those after unit number `after`.
    pub async fn job(&self, job: JobId, page: UnitPage) -> Result<Option<JobDetail>, JournalError> {
        self.reader
            .read(move |db| records::job_detail(db, job, page))
            .await
    }

    /// Takes the notices due now, oldest first, at most `limit`: each is not due again for
    /// `lease`, the time its attempt may take (then it is, if the attempt never recorded its
    /// end, as after a crash).
    pub async fn claim_notices(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Notice>, JournalError> {
        self.writer
            .call(move |db| {
                let now = now_ms();
                let due = outbox::due(db, now, limit)?;
                let mut lease_until =
                    db.prepare_cached("UPDATE outbox SET next_at = ?2 WHERE id = ?1")?;
                for notice in &due {
                    lease_until.execute(params![notice.id, now + lease.as_millis() as i64])?;
                }
                Ok(due)
            })
            .await
    }

    /// How long until the next notice is due (zero if one is due now), if one waits.
    pub async fn next_notice_in(&self) -> Result<Option<Duration>, JournalError> {
        let next = self.writer.call(outbox::next_due).await?;
        Ok(next.map(|at| Duration::from_millis((at - now_ms()).max(0) as u64)))
    }

    /// Makes `notices` due now again: their attempts were cut short.
    pub async fn release_notices(&self, notices: Vec<i64>) -> Result<(), JournalError> {
        if notices.is_empty() {
            return Ok(());
        }
        self.writer
            .call(move |db| {
                let mut release =
                    db.prepare_cached("UPDATE outbox SET next_at = ?2 WHERE id = ?1")?;
                let now = now_ms();
                for notice in notices {
                    release.execute(params![notice, now])?;
                }
                Ok(())
            })
            .await
    }

    /// Deletes a notice: delivered, or given up.
    pub async fn remove_notice(&self, notice: i64) -> Result<(), JournalError> {
        self.writer
            .call(move |db| {
                db.execute("DELETE FROM outbox WHERE id = ?1", params![notice])
                    .map(drop)
            })
            .await
    }

    /// Records a failed attempt at a notice, to be made again after `pause`.
    pub async fn retry_notice(
        &self,
        notice: i64,
        pause: Duration,
        error: String,
    ) -> Result<(), JournalError> {
        self.writer
            .call(move |db| {
                db.execute(
                    "UPDATE outbox SET attempts = attempts + 1, next_at = ?2, last_error = ?3
                     WHERE id = ?1",
                    params![notice, now_ms() + pause.as_millis() as i64, error],
                )
                .map(drop)
            })
            .await
    }

    /// A job as its notices tell it, if it is still in the journal.
    pub async fn job_notice(&self, job: JobId) -> Result<Option<JobNotice>, JournalError> {
        self.reader
            .read(move |db| outbox::job_notice(db, job))
            .await
    }

    /// How many jobs wait to be started.
    pub async fn queue_depth(&self) -> Result<usize, JournalError> {
        self.reader
            .read(|db| {
                db.query_row(
                    "SELECT COUNT(*) FROM jobs WHERE state = 'queued'",
                    [],
                    |row| row.get::<_, i64>(0),
                )
            })
            .await
            .map(|depth| depth as usize)
    }

    /// Deletes ended jobs that ended more than `age` ago, except those with a notice still
    /// in the outbox; returns how many.
    pub async fn prune(&self, age: Duration) -> Result<usize, JournalError> {
        self.writer
            .call(move |db| {
                let cutoff = now_ms() - age.as_millis() as i64;
                db.execute(
                    "DELETE FROM jobs WHERE state IN ('done', 'failed') AND finished_at < ?1
                     AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.job_id = jobs.id)",
                    params![cutoff],
                )
            })
            .await
    }
}

/// Reads the journal without starting a writer, for `autoredeploy jobs`.
pub fn read_only(directory: &Path) -> Result<rusqlite::Connection, JournalError> {
    let path = directory.join(DATABASE_FILE);
    if !path.exists() {
        return Err(JournalError::Unusable(format!(
            "no journal at {} (set AUTOREDEPLOY_DATA_DIR to the data directory of the server)",
            path.display()
        )));
    }
    let connection =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    let version = migrations::version_of(&connection)?;
    if version != migrations::CURRENT_VERSION {
        return Err(JournalError::Unusable(format!(
            "the journal at {} has version {version}, this release reads version {}: start the \
             server of this release once to upgrade it",
            path.display(),
            migrations::CURRENT_VERSION
        )));
    }
    Ok(connection)
}

#[cfg(test)]
mod tests;
