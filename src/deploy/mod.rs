//! The deploy core: runs the journal's jobs, one per push (or per group of coalesced
//! pushes), on every configured platform. It knows nothing of any platform but the
//! [`Platform`] trait.
//!
//! * `dispatch` takes jobs from the journal in order: jobs for different images run side
//!   by side, a job for an image waits until every earlier job for it has ended (paused
//!   ones included), and a job that cannot be carried on for now is run again later, at
//!   most `AUTOREDEPLOY_JOB_RETRIES` times, then given up with every unit's end recorded.
//! * `job` carries one job: it resumes the units the journal holds, scans each platform,
//!   records each page's units in one write, and ends the job once every unit has an end.
//! * `unit` drives one unit: its turn, a slot, its platform's upgrade, its end.
//! * `turns` gives each unit to one job at a time.

mod dispatch;
mod job;
mod turns;
mod unit;

use std::sync::Arc;

use tokio::sync::{Notify, Semaphore};

use crate::config::JobRetrySettings;
use crate::events::OutcomeReporter;
use crate::journal::{Journal, NoticePlan};
use crate::platform::Platform;
use crate::shutdown::ShutdownSignal;
use turns::UnitTurns;

pub use dispatch::MAX_RUNNING_JOBS;

/// Everything the jobs share.
#[derive(Debug)]
pub struct Deployer {
    /// The targets, in the order each job scans them.
    platforms: Vec<Arc<dyn Platform>>,
    /// Jobs, units and steps.
    journal: Journal,
    /// Where outcomes go.
    reporter: OutcomeReporter,
    /// Rung when a push is accepted.
    wake: Arc<Notify>,
    /// Bounds the number of units being deployed at once, across all jobs, when the
    /// operator asked for a bound.
    upgrade_slots: Option<Arc<Semaphore>>,
    /// One job at a time per unit.
    turns: UnitTurns,
    /// Stops taking jobs, and lets running ones stop between two steps.
    shutdown: ShutdownSignal,
    /// How jobs that cannot be carried on for now are run again.
    job_retry: JobRetrySettings,
    /// The notices an ended job writes to the outbox.
    notices: NoticePlan,
    /// Rung when an ended job has written notices.
    notices_written: Arc<Notify>,
}

/// The parts a [`Deployer`] is made of.
#[derive(Debug)]
pub struct DeployerParts {
    /// The targets, in the order each job scans them.
    pub platforms: Vec<Arc<dyn Platform>>,
    /// Jobs, units and steps.
    pub journal: Journal,
    /// Where outcomes go.
    pub reporter: OutcomeReporter,
    /// Rung when a push is accepted.
    pub wake: Arc<Notify>,
    /// Most units deployed at once; `None` for no bound.
    pub max_concurrent: Option<usize>,
    /// The shutdown signal.
    pub shutdown: ShutdownSignal,
    /// How jobs that cannot be carried on for now are run again.
    pub job_retry: JobRetrySettings,
    /// The notices an ended job writes to the outbox.
    pub notices: NoticePlan,
    /// Rung when an ended job has written notices.
    pub notices_written: Arc<Notify>,
}

impl Deployer {
    /// Assembles a deployer.
    pub fn new(parts: DeployerParts) -> Self {
        Self {
            platforms: parts.platforms,
            journal: parts.journal,
            reporter: parts.reporter,
            wake: parts.wake,
            upgrade_slots: parts
                .max_concurrent
                .map(|most| Arc::new(Semaphore::new(most))),
            turns: UnitTurns::default(),
            shutdown: parts.shutdown,
            job_retry: parts.job_retry,
            notices: parts.notices,
            notices_written: parts.notices_written,
        }
    }

    /// The platform of `target`, if it is configured.
    fn platform(&self, target: crate::domain::TargetKind) -> Option<&Arc<dyn Platform>> {
        self.platforms
            .iter()
            .find(|platform| platform.target() == target)
    }
}

#[cfg(test)]
mod tests;
