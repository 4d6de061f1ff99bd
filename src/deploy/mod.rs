//! Runs the jobs of the journal: one per push (or per group of coalesced pushes). A job
//! walks the environment, records each service it concerns, and upgrades them concurrently
//! (bounded); a job interrupted by a shutdown or a crash is resumed at the next start from
//! where the journal says it stood.
//!
//! Jobs for different images run side by side; a job for an image that is already being
//! deployed waits for that job to end. Two jobs that reach the same service take turns on
//! it, so autoredeploy never trips over its own upgrade in progress.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedMutexGuard, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::{JobRetrySettings, MatchSettings};
use crate::domain::ImageRef;
use crate::events::{JobOutcome, OutcomeReporter, OutcomeResult, ServiceOutcome};
use crate::journal::{JobId, Journal, JournalError, PendingJob, PlannedService, Step};
use crate::platform::rancher::scan::{Decision, ScanSummary, Scanner};
use crate::platform::rancher::upgrade::{Assignment, Ending, Upgrader};
use crate::platform::rancher::{RancherClient, Service};
use crate::shutdown::ShutdownSignal;

/// Jobs worked on at the same time. Jobs for different images overlap their scans and
/// waits; more would only crowd the upgrade slots.
pub const MAX_RUNNING_JOBS: usize = 4;

/// How long to wait before reading the journal again after it failed.
const JOURNAL_RETRY: Duration = Duration::from_secs(1);

/// Everything a job needs, shared by all jobs.
#[derive(Debug)]
pub struct Deployer {
    /// Rancher API, for the scans.
    client: RancherClient,
    /// Drives each service's upgrade.
    upgrader: Upgrader,
    /// The opt-in rule.
    rule: MatchSettings,
    /// Jobs, services and steps.
    journal: Journal,
    /// Where outcomes go.
    reporter: OutcomeReporter,
    /// Rung when a push is accepted.
    wake: Arc<Notify>,
    /// Bounds the number of services being upgraded at once, across all jobs.
    upgrade_slots: Arc<Semaphore>,
    /// One turn at a time per service.
    service_locks: ServiceLocks,
    /// Stops taking jobs, and lets running ones stop between two steps.
    shutdown: ShutdownSignal,
    /// How jobs that cannot be carried on for now are run again.
    job_retry: JobRetrySettings,
}

/// The parts a [`Deployer`] is made of.
#[derive(Debug)]
pub struct DeployerParts {
    /// Rancher API, for the scans.
    pub client: RancherClient,
    /// Drives each service's upgrade.
    pub upgrader: Upgrader,
    /// The opt-in rule.
    pub rule: MatchSettings,
    /// Jobs, services and steps.
    pub journal: Journal,
    /// Where outcomes go.
    pub reporter: OutcomeReporter,
    /// Rung when a push is accepted.
    pub wake: Arc<Notify>,
    /// Most services upgraded at once.
    pub max_concurrent: usize,
    /// The shutdown signal.
    pub shutdown: ShutdownSignal,
    /// How jobs that cannot be carried on for now are run again.
    pub job_retry: JobRetrySettings,
}

/// How one job's run ended.
enum JobEnd {
    /// Every service it concerns has an outcome (or it failed as a whole: then `error`).
    Ended {
        error: Option<String>,
        scan: Option<ScanSummary>,
    },
    /// Stopped by the shutdown; resumed at the next start.
    Interrupted,
    /// Rancher unreachable or the journal unwritable beyond the retries; run again later.
    Deferred(String),
}

/// What the dispatcher does with a job once its run has ended.
enum AfterRun {
    /// Nothing: it ended, or waits for the next start.
    Nothing,
    /// Run it again after a pause.
    Retry,
}

impl Deployer {
    /// Assembles a deployer.
    pub fn new(parts: DeployerParts) -> Self {
        Self {
            client: parts.client,
            upgrader: parts.upgrader,
            rule: parts.rule,
            journal: parts.journal,
            reporter: parts.reporter,
            wake: parts.wake,
            upgrade_slots: Arc::new(Semaphore::new(parts.max_concurrent)),
            service_locks: ServiceLocks::default(),
            shutdown: parts.shutdown,
            job_retry: parts.job_retry,
        }
    }

    /// Starts and resumes jobs until the shutdown; then lets running jobs reach the end of
    /// their current step, for at most `grace`. What is left stays in the journal.
    pub async fn run(self, grace: Duration) {
        let deployer = Arc::new(self);
        let mut jobs = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, (JobId, String)> = HashMap::new();
        // Jobs that could not be carried on for now: how often, and not before when.
        let mut deferred: HashMap<JobId, (u32, Instant)> = HashMap::new();
        loop {
            match deployer.journal.runnable().await {
                Ok(runnable) => {
                    for job in runnable {
                        if running.len() >= MAX_RUNNING_JOBS {
                            break;
                        }
                        let busy = running
                            .values()
                            .any(|(id, image)| *id == job.id || *image == job.image);
                        let waiting = deferred
                            .get(&job.id)
                            .is_some_and(|(_, not_before)| *not_before > Instant::now());
                        if busy || waiting {
                            continue;
                        }
                        // Marked running before any work, so that a push arriving from now on
                        // makes a follow-up job instead of merging into this one.
                        if let Err(error) = deployer.journal.start_job(job.id).await {
                            tracing::error!(job = %job.id, %error, "cannot start the job; trying again");
                            deployer.wake_later(JOURNAL_RETRY);
                            break;
                        }
                        let attempt = deferred.get(&job.id).map_or(0, |(count, _)| *count);
                        let entry = (job.id, job.image.clone());
                        let task = jobs.spawn(Arc::clone(&deployer).deploy(job, attempt));
                        running.insert(task.id(), entry);
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
                    let (id, after) = match ended {
                        Ok((task, after)) => (task, after),
                        Err(error) => {
                            tracing::error!(%error, "a deploy job ended abnormally; it is run again later");
                            (error.id(), AfterRun::Retry)
                        }
                    };
                    let Some((job, _)) = running.remove(&id) else { continue };
                    match after {
                        AfterRun::Nothing => {
                            deferred.remove(&job);
                        }
                        AfterRun::Retry => {
                                                        let count = deferred.get(&job).map_or(0, |(count, _)| *count) + 1;
                            let pause = deployer.job_retry.pause;
                            deferred.insert(job, (count, Instant::now() + pause));
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
                let id = ended
                    .as_ref()
                    .map_or_else(|error| error.id(), |(id, _)| *id);
                running.remove(&id);
            }
        })
        .await;
        if drained.is_err() {
            for (job, image) in running.values() {
                tracing::warn!(job = %job, image = %image, "shutting down: a Rancher request was still running after AUTOREDEPLOY_SHUTDOWN_GRACE_S; the job resumes at the next start");
            }
            jobs.shutdown().await;
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

    /// One run of a job, from where the journal says it stands to its end (or the shutdown,
    /// or a pause when Rancher cannot be reached). `attempt` counts the earlier pauses.
    async fn deploy(self: Arc<Self>, job: PendingJob, attempt: u32) -> AfterRun {
        let started = Instant::now();
        let id = job.id;
        if job.resuming || attempt > 0 {
            tracing::info!(job = %id, image = %job.image, attempt, "resuming a job");
        } else {
            tracing::info!(job = %id, image = %job.image, "deploying push");
        }
        let (error, scan) = match self.run_job(&job).await {
            JobEnd::Interrupted => {
                tracing::info!(job = %id, image = %job.image, "job interrupted by the shutdown; it resumes at the next start");
                return AfterRun::Nothing;
            }
            JobEnd::Deferred(reason) if attempt + 1 < self.job_retry.runs => {
                tracing::warn!(job = %id, image = %job.image, %reason, retry_in_s = self.job_retry.pause.as_secs(), "job paused; it goes on where it stopped");
                return AfterRun::Retry;
            }
            JobEnd::Deferred(reason) => (
                Some(format!(
                    "{reason}; gave up after {} runs {} s apart (AUTOREDEPLOY_JOB_RETRIES)",
                    self.job_retry.runs,
                    self.job_retry.pause.as_secs()
                )),
                None,
            ),
            JobEnd::Ended { error, scan } => (error, scan),
        };
        if let Err(journal_error) = self.journal.finish_job(id, error.clone()).await {
            tracing::error!(job = %id, error = %journal_error, "cannot record the end of the job; it is run again later");
            return AfterRun::Retry;
        }
        let detail = self.journal.job(id).await.ok().flatten();
        let count = |pick: fn(&crate::journal::JobSummary) -> i64| {
            detail.as_ref().map_or(0, |d| pick(&d.summary) as usize)
        };
        let scan = match (error, scan) {
            (Some(error), _) => Err(error),
            (None, Some(scan)) => Ok(scan),
            (None, None) => Ok(ScanSummary {
                pages: detail.as_ref().and_then(|d| d.pages).unwrap_or_default() as usize,
                listed: detail.as_ref().and_then(|d| d.listed).unwrap_or_default() as usize,
                ..ScanSummary::default()
            }),
        };
        self.reporter.report_job(JobOutcome {
            job: id,
            image: job.image.clone(),
            scan,
            upgraded: count(|s| s.upgraded),
            skipped: count(|s| s.skipped),
            failed: count(|s| s.failed),
            duration: started.elapsed(),
        });
        AfterRun::Nothing
    }

    async fn run_job(self: &Arc<Self>, job: &PendingJob) -> JobEnd {
        let image = match ImageRef::parse(&job.image) {
            Ok(image) => image,
            Err(error) => {
                return JobEnd::Ended {
                    error: Some(error.to_string()),
                    scan: None,
                };
            }
        };
        let mut upgrades = JoinSet::new();
        let mut known = HashSet::new();
        let services = match self.journal.services(job.id).await {
            Ok(services) => services,
            Err(error) => return JobEnd::Deferred(error.to_string()),
        };
        for record in services {
            known.insert(record.service_id.clone());
            if !record.step.is_end() {
                let assignment = Assignment {
                    job: job.id,
                    service_id: record.service_id,
                    service_name: record.service_name,
                    step: record.step,
                    versions_before: record.versions_before,
                };
                upgrades.spawn(Arc::clone(self).upgrade_one(assignment, None, image.clone()));
            }
        }

        let mut scan = None;
        let mut end = None;
        if !job.scan_complete {
            match self.scan(job.id, &image, &mut known, &mut upgrades).await {
                Ok(summary) => scan = summary,
                Err(stopped) => end = Some(stopped),
            }
        }
        // Whatever happened to the scan, the upgrades already started run to their end.
        let mut interrupted = matches!(end, Some(JobEnd::Interrupted));
        let mut deferred = match &end {
            Some(JobEnd::Deferred(reason)) => Some(reason.clone()),
            _ => None,
        };
        let mut error = match end {
            Some(JobEnd::Ended { error, .. }) => error,
            _ => None,
        };
        while let Some(ended) = upgrades.join_next().await {
            match ended {
                Ok(Ending::Done(_)) => {}
                Ok(Ending::Rejected(reason)) => error = Some(reason),
                Ok(Ending::Interrupted) => interrupted = true,
                Ok(Ending::Deferred(reason)) => deferred = Some(reason),
                Err(panic) => {
                    deferred = Some(format!("a service upgrade ended abnormally: {panic}"))
                }
            }
        }
        if interrupted {
            JobEnd::Interrupted
        } else if let Some(error) = error {
            JobEnd::Ended {
                error: Some(error),
                scan,
            }
        } else if let Some(reason) = deferred {
            JobEnd::Deferred(reason)
        } else {
            JobEnd::Ended { error: None, scan }
        }
    }

    /// Walks the environment, recording and starting each service the push concerns.
    /// Returns the walk's summary, or how the job has to end instead.
    async fn scan(
        self: &Arc<Self>,
        job: JobId,
        image: &ImageRef,
        known: &mut HashSet<String>,
        upgrades: &mut JoinSet<Ending>,
    ) -> Result<Option<ScanSummary>, JobEnd> {
        let mut scanner = Scanner::new(&self.client, image, &self.rule);
        loop {
            if self.shutdown.is_triggered() {
                return Err(JobEnd::Interrupted);
            }
            match scanner.next_page().await {
                Ok(Some(decisions)) => {
                    let fresh = decisions
                        .into_iter()
                        .filter(|decision| known.insert(decision.service_id().to_owned()))
                        .collect();
                    self.plan(job, fresh, image, upgrades)
                        .await
                        .map_err(|error| JobEnd::Deferred(error.to_string()))?;
                }
                Ok(None) => {
                    let summary = scanner.summary().clone();
                    self.journal
                        .complete_scan(job, summary.pages, summary.listed)
                        .await
                        .map_err(|error| JobEnd::Deferred(error.to_string()))?;
                    return Ok(Some(summary));
                }
                Err(error) if error.is_retryable() => {
                    return Err(JobEnd::Deferred(error.to_string()));
                }
                Err(error) => {
                    return Err(JobEnd::Ended {
                        error: Some(error.to_string()),
                        scan: None,
                    });
                }
            }
        }
    }

    /// Records a page's decisions in one write, then starts the upgrades and reports the
    /// skipped services.
    async fn plan(
        self: &Arc<Self>,
        job: JobId,
        decisions: Vec<Decision>,
        image: &ImageRef,
        upgrades: &mut JoinSet<Ending>,
    ) -> Result<(), JournalError> {
        if decisions.is_empty() {
            return Ok(());
        }
        let planned = decisions
            .iter()
            .map(|decision| match decision {
                Decision::Upgrade {
                    service_id,
                    service_name,
                    ..
                } => PlannedService {
                    service_id: service_id.clone(),
                    service_name: service_name.clone(),
                    step: Step::Planned,
                    detail: None,
                },
                Decision::Skip {
                    service_id,
                    service_name,
                    reason,
                } => PlannedService {
                    service_id: service_id.clone(),
                    service_name: service_name.clone(),
                    step: Step::Skipped,
                    detail: Some(reason.clone()),
                },
            })
            .collect();
        self.journal.plan_services(job, planned).await?;
        for decision in decisions {
            match decision {
                Decision::Upgrade {
                    service_id,
                    service_name,
                    listed,
                    asked_at,
                } => {
                    let assignment = Assignment {
                        job,
                        service_id,
                        service_name,
                        step: Step::Planned,
                        versions_before: None,
                    };
                    let upgrade = Arc::clone(self).upgrade_one(
                        assignment,
                        Some((listed, asked_at)),
                        image.clone(),
                    );
                    upgrades.spawn(upgrade);
                }
                Decision::Skip {
                    service_id,
                    service_name,
                    reason,
                } => self.reporter.report_service(ServiceOutcome {
                    job,
                    service_id,
                    service_name,
                    image: image.to_string(),
                    result: OutcomeResult::Skipped(reason),
                    duration: Duration::ZERO,
                }),
            }
        }
        Ok(())
    }

    /// One service: wait for its turn and a slot, upgrade, report.
    ///
    /// `listed` is the service as listed, and when the page was asked for. It stands in for
    /// a fresh read only if the turn and a slot are free at once and no job has released a
    /// turn on any service since the page was asked for; otherwise another job may have
    /// changed the service since.
    async fn upgrade_one(
        self: Arc<Self>,
        assignment: Assignment,
        listed: Option<(Box<Service>, Instant)>,
        image: ImageRef,
    ) -> Ending {
        let started = Instant::now();
        let id = assignment.service_id.clone();
        let turn_at_once = self.service_locks.try_lock(&id);
        // A slot is never held while waiting for a turn: always the turn first, then a slot.
        let slot_at_once = match &turn_at_once {
            Some(_) => Arc::clone(&self.upgrade_slots).try_acquire_owned().ok(),
            None => None,
        };
        let (_turn, _slot, listed) = match (turn_at_once, slot_at_once) {
            (Some(turn), Some(slot)) => {
                let listed = listed
                    .filter(|(_, asked_at)| !self.service_locks.released_since(*asked_at))
                    .map(|(service, _)| service);
                (turn, Ok(slot), listed)
            }
            (turn, _) => {
                let waited = async {
                    let turn = match turn {
                        Some(turn) => turn,
                        None => self.service_locks.lock(&id).await,
                    };
                    let slot = Arc::clone(&self.upgrade_slots).acquire_owned().await;
                    (turn, slot)
                };
                let (turn, slot) = tokio::select! {
                    held = waited => held,
                    () = self.shutdown.triggered() => return Ending::Interrupted,
                };
                // Waiting makes the listed copy old: the upgrader reads the service again.
                (turn, slot, None)
            }
        };
        let ending = self.upgrader.upgrade(&assignment, listed, &image).await;
        let result = match &ending {
            Ending::Done(result) => Some(result.clone()),
            Ending::Rejected(reason) => Some(OutcomeResult::Failed(reason.clone())),
            Ending::Interrupted | Ending::Deferred(_) => None,
        };
        if let Some(result) = result {
            self.reporter.report_service(ServiceOutcome {
                job: assignment.job,
                service_id: assignment.service_id,
                service_name: assignment.service_name,
                image: image.to_string(),
                result,
                duration: started.elapsed(),
            });
        }
        ending
    }
}

/// Per-service turns: a service is handled by one job at a time.
#[derive(Debug, Default, Clone)]
struct ServiceLocks {
    /// Entries exist only while some job holds or waits for the service.
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// When a turn on any service was last released.
    last_release: Arc<Mutex<Option<Instant>>>,
}

/// A job's turn on a service; the entry is tidied away when nobody else waits.
struct ServiceTurn {
    guard: Option<OwnedMutexGuard<()>>,
    locks: ServiceLocks,
    id: String,
}

impl ServiceLocks {
    /// The lock of `id`, created if nobody holds or waits for it.
    fn entry(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(locks.entry(id.to_owned()).or_default())
    }

    /// Whether a turn on any service has been released since `moment`.
    fn released_since(&self, moment: Instant) -> bool {
        self.last_release
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some_and(|released| released >= moment)
    }

    /// The turn on `id` if nobody holds it now.
    fn try_lock(&self, id: &str) -> Option<ServiceTurn> {
        let guard = self.entry(id).try_lock_owned().ok()?;
        Some(ServiceTurn {
            guard: Some(guard),
            locks: self.clone(),
            id: id.to_owned(),
        })
    }

    async fn lock(&self, id: &str) -> ServiceTurn {
        let guard = self.entry(id).lock_owned().await;
        ServiceTurn {
            guard: Some(guard),
            locks: self.clone(),
            id: id.to_owned(),
        }
    }
}

impl Drop for ServiceTurn {
    fn drop(&mut self) {
        *self
            .locks
            .last_release
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now());
        drop(self.guard.take());
        let mut locks = self
            .locks
            .locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if locks
            .get(&self.id)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.id);
        }
    }
}
