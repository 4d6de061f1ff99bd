//! Takes jobs from the journal and runs them, in order per image.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Deployer;
use crate::journal::{JobId, PendingJob};

/// Jobs worked on at the same time. Jobs for different images overlap their scans and
/// waits; more would only crowd the upgrade slots.
pub const MAX_RUNNING_JOBS: usize = 4;

/// How long to wait before reading the journal again after it failed.
const JOURNAL_RETRY: Duration = Duration::from_secs(1);

/// How a run of a job stopped short of the job's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Pause {
    /// A platform could not be reached, or the journal written, beyond the retries: run
    /// the job again later, from where the journal says it stands.
    Later(String),
    /// The process is shutting down: the job resumes at the next start.
    Interrupted,
}

impl From<crate::journal::JournalError> for Pause {
    fn from(error: crate::journal::JournalError) -> Self {
        Pause::Later(error.to_string())
    }
}

/// A job whose last run did not reach its end.
#[derive(Debug, Clone)]
struct Paused {
    /// Runs so far.
    runs: u32,
    /// Not run again before this.
    until: Instant,
    /// Why the last run stopped.
    reason: String,
}

/// The jobs of `runnable` (in the journal's order: running ones first, then queued ones,
/// oldest first) to start now, at most `room`: for each image only the first job, and
/// only if it is neither running nor paused. A later job for the same image waits for it,
/// so two pushes of one image are deployed in the order they came.
fn startable<'a>(
    runnable: &'a [PendingJob],
    running: &HashSet<JobId>,
    paused: &HashMap<JobId, Paused>,
    now: Instant,
    room: usize,
) -> Vec<&'a PendingJob> {
    let mut claimed = HashSet::new();
    runnable
        .iter()
        .filter(|job| claimed.insert(&job.image))
        .filter(|job| !running.contains(&job.id))
        .filter(|job| paused.get(&job.id).is_none_or(|pause| pause.until <= now))
        .take(room)
        .collect()
}

impl Deployer {
    /// Starts and resumes jobs until the shutdown; then lets running jobs reach the end of
    /// their current step, for at most `grace`. What is left stays in the journal.
    pub async fn run(self, grace: Duration) {
        let deployer = Arc::new(self);
        let mut jobs = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, PendingJob> = HashMap::new();
        let mut paused: HashMap<JobId, Paused> = HashMap::new();
        while !deployer.shutdown.is_triggered() {
            match deployer.journal.runnable().await {
                Ok(runnable) => {
                    let ids = running.values().map(|job| job.id).collect();
                    let room = MAX_RUNNING_JOBS.saturating_sub(running.len());
                    for job in startable(&runnable, &ids, &paused, Instant::now(), room) {
                        // Marked running before any work, so that a push arriving from now
                        // on makes a follow-up job instead of merging into this one.
                        if let Err(error) = deployer.journal.start_job(job.id).await {
                            tracing::error!(job = %job.id, %error, "cannot start the job; trying again");
                            deployer.wake_later(JOURNAL_RETRY);
                            break;
                        }
                        let before = paused.get(&job.id).map(|p| (p.runs, p.reason.clone()));
                        let task = jobs.spawn(Arc::clone(&deployer).carry(job.clone(), before));
                        running.insert(task.id(), job.clone());
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "cannot read the queue of jobs; trying again");
                    deployer.wake_later(JOURNAL_RETRY);
                }
            }
            tokio::select! {
                () = deployer.wake.notified() => {}
                Some(ended) = jobs.join_next_with_id(), if !jobs.is_empty() => {
                    let (task, result) = match ended {
                        Ok((task, result)) => (task, result),
                        Err(error) if error.is_cancelled() => (error.id(), Err(Pause::Interrupted)),
                        Err(error) => {
                            let reason = format!("the job's task ended abnormally: {error}");
                            tracing::error!(%reason, "a deploy job panicked; it counts as a failed run");
                            (error.id(), Err(Pause::Later(reason)))
                        }
                    };
                    let Some(job) = running.remove(&task) else { continue };
                    match result {
                        Ok(()) | Err(Pause::Interrupted) => {
                            paused.remove(&job.id);
                        }
                        Err(Pause::Later(reason)) => {
                            let before = paused.get(&job.id);
                            let runs = before.map_or(0, |p| p.runs) + 1;
                            let limit = deployer.job_retry.runs;
                            let (pause, reason) = if runs < limit {
                                tracing::warn!(job = %job.id, image = %job.image, %reason, retry_in_s = deployer.job_retry.pause.as_secs(), "job paused; it goes on where it stopped");
                                (deployer.job_retry.pause, reason)
                            } else if runs == limit {
                                // The last run: the job is given up at once.
                                (Duration::ZERO, reason)
                            } else {
                                tracing::error!(job = %job.id, image = %job.image, error = %reason, "cannot record that the job is given up; trying again");
                                let last_run = before.map_or(reason, |p| p.reason.clone());
                                (deployer.job_retry.pause, last_run)
                            };
                            paused.insert(job.id, Paused { runs, until: Instant::now() + pause, reason });
                            deployer.wake_later(pause);
                        }
                    }
                }
                () = deployer.shutdown.triggered() => break,
            }
        }
        if jobs.is_empty() {
            return;
        }
        tracing::info!(
            jobs = jobs.len(),
            "shutting down: letting running steps end"
        );
        let drained = tokio::time::timeout(grace, async {
            while let Some(ended) = jobs.join_next_with_id().await {
                let task = ended
                    .as_ref()
                    .map_or_else(|error| error.id(), |(task, _)| *task);
                running.remove(&task);
            }
        })
        .await;
        if drained.is_err() {
            for job in running.values() {
                tracing::warn!(job = %job.id, image = %job.image, "shutting down: a request was still running after AUTOREDEPLOY_SHUTDOWN_GRACE_S; the job resumes at the next start");
            }
            jobs.shutdown().await;
        }
    }

    /// One run of a job, or, once its runs are used up, its end as failed. `before` is how
    /// many runs it had, and why the last one stopped.
    async fn carry(
        self: Arc<Self>,
        job: PendingJob,
        before: Option<(u32, String)>,
    ) -> Result<(), Pause> {
        match before {
            Some((runs, reason)) if runs >= self.job_retry.runs => {
                let reason = format!(
                    "{reason}; gave up after {runs} runs {} s apart (AUTOREDEPLOY_JOB_RETRIES)",
                    self.job_retry.pause.as_secs()
                );
                self.give_up(&job, reason).await
            }
            Some((runs, _)) => {
                tracing::info!(job = %job.id, image = %job.image, attempt = runs, "resuming a job");
                self.run_job(&job).await
            }
            None => {
                if job.resuming {
                    tracing::info!(job = %job.id, image = %job.image, "resuming a job");
                } else {
                    tracing::info!(job = %job.id, image = %job.image, "deploying push");
                }
                self.run_job(&job).await
            }
        }
    }

    /// Rings the dispatcher after `delay`.
    fn wake_later(&self, delay: Duration) {
        let wake = Arc::clone(&self.wake);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            wake.notify_one();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ImageRef;

    fn job(id: i64, image: &str, resuming: bool) -> PendingJob {
        PendingJob {
            id: JobId(id),
            image: ImageRef::parse(image).unwrap(),
            resuming,
            only: None,
            digest: None,
            received_at: crate::journal::Time(0),
        }
    }

    fn ids(jobs: Vec<&PendingJob>) -> Vec<i64> {
        jobs.iter().map(|job| job.id.0).collect()
    }

    #[test]
    fn one_job_per_image_at_a_time_in_the_order_they_came() {
        let runnable = [
            job(1, "web", true),
            job(2, "api", false),
            job(3, "web", false),
            job(4, "worker", false),
        ];
        let now = Instant::now();
        let none = HashMap::new();
        assert_eq!(
            ids(startable(&runnable, &HashSet::new(), &none, now, 10)),
            [1, 2, 4]
        );
        let running = HashSet::from([JobId(1)]);
        assert_eq!(
            ids(startable(&runnable, &running, &none, now, 10)),
            [2, 4],
            "job 3 waits for job 1"
        );
        assert_eq!(
            ids(startable(&runnable, &HashSet::new(), &none, now, 2)),
            [1, 2]
        );
    }

    #[test]
    fn a_paused_job_holds_its_image_until_it_runs_again() {
        let runnable = [
            job(1, "web", true),
            job(2, "web", false),
            job(3, "api", false),
        ];
        let now = Instant::now();
        let paused = HashMap::from([(
            JobId(1),
            Paused {
                runs: 1,
                until: now + Duration::from_secs(30),
                reason: "unreachable".into(),
            },
        )]);
        assert_eq!(
            ids(startable(&runnable, &HashSet::new(), &paused, now, 10)),
            [3],
            "neither the paused job nor the one behind it"
        );
        let later = now + Duration::from_secs(30);
        assert_eq!(
            ids(startable(&runnable, &HashSet::new(), &paused, later, 10)),
            [1, 3]
        );
    }
}
