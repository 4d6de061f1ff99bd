//! The journal: an embedded SQLite database that makes accepted pushes durable.
//!
//! A push is written here before it is answered `202`; each job then records the services
//! it planned and every step of each one, *before* the step is taken against Rancher. After
//! a crash, [`Journal::runnable`] and [`Journal::services`] tell where each job stopped, and
//! the deployer resumes it from there.
//!
//! One thread owns the database connection. Calls are queued to it and run in batches, one
//! transaction (and one `fsync`) per batch, so many pushes arriving at once share the cost.

mod records;
mod writer;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::{OptionalExtension, params};

pub use records::{
    Accepted, JobDetail, JobId, JobState, JobSummary, PendingJob, ServiceRecord, Step, StepRecord,
    Versions,
};

use crate::domain::PushEvent;
use writer::Writer;

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "autoredeploy.sqlite3";

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

/// A service a job concerns, as first recorded.
#[derive(Debug, Clone)]
pub struct PlannedService {
    /// Rancher id.
    pub service_id: String,
    /// Service name.
    pub service_name: String,
    /// Its first step: planned, or already ended (skipped).
    pub step: Step,
    /// Why, for a service that ends there.
    pub detail: Option<String>,
}

/// Handle to the journal; cheap to clone.
#[derive(Debug, Clone)]
pub struct Journal {
    writer: Writer,
    /// Held locked for the life of the process: two servers on one journal would both run
    /// its jobs.
    _lock: std::sync::Arc<std::fs::File>,
}

/// File locked by the server that uses the data directory.
const LOCK_FILE: &str = "autoredeploy.lock";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

impl Journal {
    /// Opens (creating if needed) the journal in `directory`, and fails with a message that
    /// names the directory if it cannot be written.
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
        let connection = rusqlite::Connection::open(&path)
            .map_err(|err| unusable("the journal cannot be opened", &err))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA busy_timeout = 5000;",
            )
            .and_then(|()| connection.execute_batch(include_str!("schema.sql")))
            .map_err(|err| unusable("the journal cannot be written", &err))?;
        Ok(Self {
            writer: Writer::start(connection)
                .map_err(|err| unusable("the journal thread cannot be started", &err))?,
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
        let result = self
            .writer
            .call(move |db| {
                let now = now_ms();
                let queued: Option<i64> = db
                    .query_row(
                        "SELECT id FROM jobs WHERE state = 'queued' AND image = ?1 ORDER BY id LIMIT 1",
                        params![image],
                        |row| row.get(0),
                    )
                    .optional()?;
                if let Some(id) = queued {
                    db.execute(
                        "UPDATE jobs SET pushes = pushes + 1, last_push_at = ?2, pusher = COALESCE(?3, pusher) WHERE id = ?1",
                        params![id, now, pusher],
                    )?;
                    return Ok(Some(Accepted { job: JobId(id), coalesced: true }));
                }
                let waiting: i64 =
                    db.query_row("SELECT COUNT(*) FROM jobs WHERE state = 'queued'", [], |row| row.get(0))?;
                if waiting as usize >= queue_limit {
                    return Ok(None);
                }
                db.execute(
                    "INSERT INTO jobs (image, pusher, pushes, state, received_at, last_push_at) VALUES (?1, ?2, 1, 'queued', ?3, ?3)",
                    params![image, pusher, now],
                )?;
                Ok(Some(Accepted { job: JobId(db.last_insert_rowid()), coalesced: false }))
            })
            .await?;
        result.ok_or(AcceptError::QueueFull)
    }

    /// Jobs to work on, oldest first: those that were running when the process stopped
    /// (to resume), then those queued.
    pub async fn runnable(&self) -> Result<Vec<PendingJob>, JournalError> {
        self.writer
            .call(|db| {
                let mut statement = db.prepare(
                    "SELECT id, image, state, scan_complete FROM jobs WHERE state IN ('running', 'queued')
                     ORDER BY state = 'running' DESC, id",
                )?;
                let rows = statement.query_map([], |row| {
                    Ok(PendingJob {
                        id: JobId(row.get(0)?),
                        image: row.get(1)?,
                        resuming: row.get::<_, String>(2)? == "running",
                        scan_complete: row.get(3)?,
                    })
                })?;
                rows.collect()
            })
            .await
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

    /// Records that the walk through the environment reached its end.
    pub async fn complete_scan(
        &self,
        job: JobId,
        pages: usize,
        listed: usize,
    ) -> Result<(), JournalError> {
        self.writer
            .call(move |db| {
                db.execute(
                    "UPDATE jobs SET scan_complete = 1, pages = ?2, listed = ?3 WHERE id = ?1",
                    params![job.0, pages as i64, listed as i64],
                )
                .map(drop)
            })
            .await
    }

    /// Ends a job: `error` is set when its scan could not be completed.
    pub async fn finish_job(&self, job: JobId, error: Option<String>) -> Result<(), JournalError> {
        self.writer
            .call(move |db| {
                let state = if error.is_some() { "failed" } else { "done" };
                db.execute(
                    "UPDATE jobs SET state = ?2, finished_at = ?3, error = ?4 WHERE id = ?1",
                    params![job.0, state, now_ms(), error],
                )
                .map(drop)
            })
            .await
    }

    /// Records services the job concerns, each at its first step, in one transaction (a
    /// page's worth costs one write to disk). Returns how many were new: a resumed walk or a
    /// service listed twice finds some already there, and leaves them as they are.
    pub async fn plan_services(
        &self,
        job: JobId,
        services: Vec<PlannedService>,
    ) -> Result<usize, JournalError> {
        self.writer
            .call(move |db| {
                let now = now_ms();
                let mut new = 0;
                for planned in &services {
                    let step = planned.step;
                    let reason = step
                        .is_unsuccessful_end()
                        .then(|| planned.detail.clone())
                        .flatten();
                    let inserted = db.execute(
                        "INSERT OR IGNORE INTO job_services (job_id, service_id, service_name, step, reason, planned_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                        params![job.0, planned.service_id, planned.service_name, step.as_str(), reason, now],
                    )?;
                    if inserted == 1 {
                        db.execute(
                            "INSERT INTO service_steps (job_id, service_id, step, at, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                            params![job.0, planned.service_id, step.as_str(), now, planned.detail],
                        )?;
                        new += 1;
                    }
                }
                Ok(new)
            })
            .await
    }

    /// Records a service's next step, before it is taken. `versions` are the versions of the
    /// launch configs about to be upgraded, so a resumed job can tell whether Rancher applied
    /// an upgrade whose answer it never saw.
    pub async fn record_step(
        &self,
        job: JobId,
        service_id: &str,
        step: Step,
        detail: Option<String>,
        versions: Option<&Versions>,
    ) -> Result<(), JournalError> {
        let service_id = service_id.to_owned();
        let versions = versions.map(Versions::to_json);
        self.writer
            .call(move |db| {
                let now = now_ms();
                let reason = step.is_unsuccessful_end().then(|| detail.clone()).flatten();
                db.execute(
                    "UPDATE job_services SET step = ?3, updated_at = ?4, reason = ?5,
                            versions_before = COALESCE(?6, versions_before)
                     WHERE job_id = ?1 AND service_id = ?2",
                    params![job.0, service_id, step.as_str(), now, reason, versions],
                )?;
                db.execute(
                    "INSERT INTO service_steps (job_id, service_id, step, at, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![job.0, service_id, step.as_str(), now, detail],
                )?;
                Ok(())
            })
            .await
    }

    /// The services a job has planned, with where each one stands.
    pub async fn services(&self, job: JobId) -> Result<Vec<ServiceRecord>, JournalError> {
        self.writer
            .call(move |db| records::services_of(db, job, false))
            .await
    }

    /// Recent jobs, newest first: at most `limit`, older than job `before` when given.
    pub async fn list_jobs(
        &self,
        limit: usize,
        before: Option<JobId>,
    ) -> Result<Vec<JobSummary>, JournalError> {
        self.writer
            .call(move |db| records::list_jobs(db, limit, before))
            .await
    }

    /// One job with every service's steps.
    pub async fn job(&self, job: JobId) -> Result<Option<JobDetail>, JournalError> {
        self.writer
            .call(move |db| records::job_detail(db, job))
            .await
    }

    /// Deletes ended jobs that ended more than `age` ago; returns how many.
    pub async fn prune(&self, age: Duration) -> Result<usize, JournalError> {
        self.writer
            .call(move |db| {
                let cutoff = now_ms() - age.as_millis() as i64;
                db.execute(
                    "DELETE FROM jobs WHERE state IN ('done', 'failed') AND finished_at < ?1",
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
    Ok(connection)
}

pub use records::{job_detail, list_jobs};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ImageRef;

    fn push(image: &str) -> PushEvent {
        PushEvent {
            image: ImageRef::parse(image).unwrap(),
            pusher: Some("ci".into()),
        }
    }

    #[tokio::test]
    async fn pushes_of_a_waiting_image_merge_and_the_queue_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let first = journal.accept(&push("myorg/web"), 2).await.unwrap();
        let again = journal
            .accept(&push("docker.io/myorg/web:latest"), 2)
            .await
            .unwrap();
        assert_eq!((again.job, again.coalesced), (first.job, true));
        let other = journal.accept(&push("myorg/api"), 2).await.unwrap();
        assert!(!other.coalesced);
        assert!(matches!(
            journal.accept(&push("myorg/third"), 2).await,
            Err(AcceptError::QueueFull)
        ));
        // A merge adds no waiting job, so it is accepted even with the queue full.
        assert!(
            journal
                .accept(&push("myorg/api"), 2)
                .await
                .unwrap()
                .coalesced
        );
        let jobs = journal.list_jobs(10, None).await.unwrap();
        assert_eq!(
            jobs.iter()
                .map(|j| (j.image.as_str(), j.pushes))
                .collect::<Vec<_>>(),
            [
                ("docker.io/myorg/api:latest", 2),
                ("docker.io/myorg/web:latest", 2)
            ]
        );
    }

    #[tokio::test]
    async fn a_running_job_gets_a_follow_up_instead_of_more_pushes() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let first = journal.accept(&push("myorg/web"), 10).await.unwrap().job;
        journal.start_job(first).await.unwrap();
        let follow_up = journal.accept(&push("myorg/web"), 10).await.unwrap();
        assert!(!follow_up.coalesced);
        assert_ne!(follow_up.job, first);
        assert_eq!(
            journal.accept(&push("myorg/web"), 10).await.unwrap().job,
            follow_up.job
        );
        let runnable = journal.runnable().await.unwrap();
        assert_eq!(
            runnable
                .iter()
                .map(|j| (j.id, j.resuming))
                .collect::<Vec<_>>(),
            [(first, true), (follow_up.job, false)]
        );
    }

    #[tokio::test]
    async fn steps_survive_a_reopen_and_tell_where_a_service_stood() {
        let dir = tempfile::tempdir().unwrap();
        let job = {
            let journal = Journal::open(dir.path()).unwrap();
            let job = journal.accept(&push("myorg/web"), 10).await.unwrap().job;
            journal.start_job(job).await.unwrap();
            let web = || PlannedService {
                service_id: "1s1".into(),
                service_name: "web".into(),
                step: Step::Planned,
                detail: None,
            };
            assert_eq!(journal.plan_services(job, vec![web()]).await.unwrap(), 1);
            assert_eq!(journal.plan_services(job, vec![web()]).await.unwrap(), 0);
            let versions = Versions([(String::new(), "0".to_owned())].into());
            journal
                .record_step(job, "1s1", Step::Upgrading, None, Some(&versions))
                .await
                .unwrap();
            let kept = PlannedService {
                service_id: "1s2".into(),
                service_name: "kept".into(),
                step: Step::Skipped,
                detail: Some("label is \"false\"".into()),
            };
            journal.plan_services(job, vec![kept]).await.unwrap();
            job
        };
        let journal = Journal::open(dir.path()).unwrap();
        let services = journal.services(job).await.unwrap();
        assert_eq!(services[0].step, Step::Upgrading);
        assert_eq!(services[0].versions_before.as_ref().unwrap().0[""], "0");
        assert_eq!(services[1].reason.as_deref(), Some("label is \"false\""));
        let detail = journal.job(job).await.unwrap().unwrap();
        assert_eq!(detail.summary.state, JobState::Running);
        assert_eq!((detail.summary.skipped, detail.summary.pending), (1, 1));
        let steps: Vec<Step> = detail.services[0].steps.iter().map(|s| s.step).collect();
        assert_eq!(steps, [Step::Planned, Step::Upgrading]);
    }

    #[tokio::test]
    async fn ended_jobs_are_pruned_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let ended = journal.accept(&push("myorg/web"), 10).await.unwrap().job;
        journal.start_job(ended).await.unwrap();
        journal.finish_job(ended, None).await.unwrap();
        let waiting = journal.accept(&push("myorg/api"), 10).await.unwrap().job;
        assert_eq!(journal.prune(Duration::from_secs(3600)).await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(journal.prune(Duration::ZERO).await.unwrap(), 1);
        let left: Vec<JobId> = journal
            .list_jobs(10, None)
            .await
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(left, [waiting]);
    }

    #[tokio::test]
    async fn a_failing_call_does_not_undo_the_others_of_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let failing = journal
            .writer
            .call(|db| db.execute("INSERT INTO nowhere VALUES (1)", []));
        let push = push("myorg/web");
        let accepted = journal.accept(&push, 10);
        let (failed, accepted) = tokio::join!(failing, accepted);
        assert!(failed.is_err());
        let job = accepted.unwrap().job;
        drop(journal);
        let reopened = Journal::open(dir.path()).unwrap();
        assert_eq!(reopened.list_jobs(10, None).await.unwrap()[0].id, job);
    }

    #[test]
    fn a_directory_in_use_by_another_server_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Journal::open(dir.path()).unwrap();
        let error = Journal::open(dir.path()).unwrap_err().to_string();
        assert!(error.contains("in use by another autoredeploy"), "{error}");
        drop(first);
    }

    #[test]
    fn an_unwritable_directory_is_refused_by_name() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let error = Journal::open(&file.path().join("data"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("AUTOREDEPLOY_DATA_DIR") && error.contains("writable"),
            "{error}"
        );
    }
}
