//! Runs one job per queued push: scan the environment, upgrade the matching services
//! concurrently (bounded), report each outcome and the job's tally.
//!
//! Jobs run side by side; two jobs that reach the same service take turns on it, so
//! autoredeploy never trips over its own upgrade in progress.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedMutexGuard, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::MatchSettings;
use crate::domain::PushEvent;
use crate::outcome::{JobOutcome, OutcomeReporter, OutcomeResult, ServiceOutcome};
use crate::planner::{self, Decision, UpgradePlan};
use crate::queue::PushReceiver;
use crate::rancher::RancherClient;
use crate::upgrader::Upgrader;

/// Pushes worked on at the same time. Jobs for different images overlap their scans and
/// waits; more would only crowd the upgrade slots.
pub const MAX_RUNNING_JOBS: usize = 4;

/// Everything a job needs, shared by all jobs.
#[derive(Debug)]
pub struct Deployer {
    /// Rancher API, for the scan.
    client: RancherClient,
    /// Drives each service's upgrade.
    upgrader: Upgrader,
    /// The opt-in rule.
    rule: MatchSettings,
    /// Where outcomes go.
    reporter: OutcomeReporter,
    /// Bounds the number of services being upgraded at once, across all jobs.
    upgrade_slots: Arc<Semaphore>,
    /// One turn at a time per service.
    service_locks: ServiceLocks,
}

impl Deployer {
    /// A deployer that upgrades at most `max_concurrent` services at a time.
    pub fn new(
        client: RancherClient,
        upgrader: Upgrader,
        rule: MatchSettings,
        reporter: OutcomeReporter,
        max_concurrent: usize,
    ) -> Self {
        Self {
            client,
            upgrader,
            rule,
            reporter,
            upgrade_slots: Arc::new(Semaphore::new(max_concurrent)),
            service_locks: ServiceLocks::default(),
        }
    }

    /// Takes pushes off the queue until `shutdown` completes, then lets running jobs go on
    /// for at most `grace` and reports every push that was not carried through.
    ///
    /// At most [`MAX_RUNNING_JOBS`] pushes are worked on at once; the others wait in the
    /// queue, which is what makes a full queue answer `503`.
    pub async fn run(
        self,
        mut queue: PushReceiver,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
    ) {
        let deployer = Arc::new(self);
        let mut jobs = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                push = queue.next(), if jobs.len() < MAX_RUNNING_JOBS => match push {
                    Some(push) => {
                        let image = push.image.to_string();
                        let job = jobs.spawn(Arc::clone(&deployer).deploy(push));
                        running.insert(job.id(), image);
                    }
                    None => break,
                },
                Some(ended) = jobs.join_next_with_id(), if !jobs.is_empty() => {
                    forget_job(&mut running, ended);
                }
                () = &mut shutdown => break,
            }
        }
        for push in queue.close() {
            tracing::error!(image = %push.image, "shutting down: this accepted push was not started; push the image again to deploy it");
        }
        if jobs.is_empty() {
            return;
        }
        tracing::info!(
            jobs = jobs.len(),
            grace_s = grace.as_secs(),
            "shutting down: waiting for running upgrades"
        );
        let drained = tokio::time::timeout(grace, async {
            while let Some(ended) = jobs.join_next_with_id().await {
                forget_job(&mut running, ended);
            }
        })
        .await;
        if drained.is_err() {
            for image in running.values() {
                tracing::error!(image = %image, "shutting down: the deploy of this push was cut off after AUTOREDEPLOY_SHUTDOWN_GRACE_S; check its services in Rancher and push again");
            }
            jobs.shutdown().await;
        }
    }

    /// One push, from scan to the last service's outcome.
    async fn deploy(self: Arc<Self>, push: PushEvent) {
        let started = Instant::now();
        let image = push.image.to_string();
        tracing::info!(image = %image, pusher = push.pusher.as_deref().unwrap_or(""), "deploying push");
        let mut upgrades = JoinSet::new();
        let mut skipped = 0;
        let scan = planner::scan(
            &self.client,
            &push.image,
            &self.rule,
            |decision| match decision {
                Decision::Upgrade(plan) => {
                    upgrades.spawn(Arc::clone(&self).upgrade_one(plan, push.clone()));
                }
                Decision::Skip {
                    service_id,
                    service_name,
                    reason,
                } => {
                    skipped += 1;
                    self.reporter.report_service(ServiceOutcome {
                        service_id,
                        service_name,
                        image: image.clone(),
                        result: OutcomeResult::Skipped(reason),
                        duration: Duration::ZERO,
                    });
                }
            },
        )
        .await;
        let (mut upgraded, mut failed) = (0, 0);
        while let Some(result) = upgrades.join_next().await {
            match result {
                Ok(OutcomeResult::Upgraded | OutcomeResult::UpgradedNotFinished) => upgraded += 1,
                Ok(OutcomeResult::Skipped(_)) => skipped += 1,
                Ok(OutcomeResult::Failed(_)) => failed += 1,
                Err(error) => {
                    tracing::error!(image = %push.image, %error, "a service upgrade ended abnormally");
                    failed += 1;
                }
            }
        }
        self.reporter.report_job(JobOutcome {
            image,
            scan: scan.map_err(|err| err.to_string()),
            upgraded,
            skipped,
            failed,
            duration: started.elapsed(),
        });
    }

    /// One service: wait for its turn and a slot, upgrade, report.
    async fn upgrade_one(self: Arc<Self>, plan: UpgradePlan, push: PushEvent) -> OutcomeResult {
        let started = Instant::now();
        let service_id = plan.service_id.clone();
        let service_name = plan.service_name.clone();
        let _turn = self.service_locks.lock(&service_id).await;
        let result = match Arc::clone(&self.upgrade_slots).acquire_owned().await {
            Ok(_slot) => self.upgrader.upgrade(plan, &push.image).await,
            Err(_) => OutcomeResult::Failed("autoredeploy is shutting down".into()),
        };
        self.reporter.report_service(ServiceOutcome {
            service_id,
            service_name,
            image: push.image.to_string(),
            result: result.clone(),
            duration: started.elapsed(),
        });
        result
    }
}

fn forget_job(
    running: &mut HashMap<tokio::task::Id, String>,
    ended: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
) {
    match ended {
        Ok((id, ())) => {
            running.remove(&id);
        }
        Err(error) => {
            let image = running.remove(&error.id()).unwrap_or_default();
            tracing::error!(image = %image, %error, "a deploy job ended abnormally; its push may be only partly deployed");
        }
    }
}

/// Per-service turns: a service is handled by one job at a time.
#[derive(Debug, Default, Clone)]
struct ServiceLocks {
    /// Entries exist only while some job holds or waits for the service.
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// A job's turn on a service; the entry is tidied away when nobody else waits.
struct ServiceTurn {
    guard: Option<OwnedMutexGuard<()>>,
    locks: ServiceLocks,
    id: String,
}

impl ServiceLocks {
    async fn lock(&self, id: &str) -> ServiceTurn {
        let lock = {
            let mut locks = self
                .locks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            Arc::clone(locks.entry(id.to_owned()).or_default())
        };
        let guard = lock.lock_owned().await;
        ServiceTurn {
            guard: Some(guard),
            locks: self.clone(),
            id: id.to_owned(),
        }
    }
}

impl Drop for ServiceTurn {
    fn drop(&mut self) {
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
