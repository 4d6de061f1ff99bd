//! What happened to each unit a push concerned, and to the push as a whole, and who is
//! told:
//!
//! * this file logs each end as one line, counts it in the [`metrics`], and broadcasts it
//!   to whoever follows along (the tests);
//! * `delivery` sends what the journal's outbox holds: notifications to the configured
//!   channels and Docker Hub callbacks, retried until they arrive or their time runs out;
//! * `messages` writes each channel's document, `beanstalk` puts messages into a tube;
//! * [`metrics`] holds the counters of `GET /metrics`.

mod beanstalk;
mod delivery;
mod messages;
pub mod metrics;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::domain::{ImageRef, Outcome, UnitEnd, UnitRef};
use crate::journal::JobId;
use crate::platform::ScanSummary;
pub use delivery::Delivery;
use metrics::Metrics;

/// The end of one unit's handling for one push.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitOutcome {
    /// The job that handled it.
    pub job: JobId,
    /// Which unit.
    pub unit: UnitRef,
    /// Its name.
    pub name: String,
    /// The pushed image.
    pub image: ImageRef,
    /// How it ended, and why.
    pub outcome: Outcome,
    /// Time from the decision to deploy (or skip) to the end.
    pub duration: Duration,
}

/// The end of one push's job: its scans and the tally of its units.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    /// The job.
    pub job: JobId,
    /// The pushed image.
    pub image: ImageRef,
    /// The walks through the targets, added up, or why one stopped early.
    pub scan: Result<ScanSummary, String>,
    /// Units upgraded.
    pub upgraded: usize,
    /// Units that already ran the pushed content.
    pub up_to_date: usize,
    /// Units skipped although they run the image.
    pub skipped: usize,
    /// Units whose upgrade failed (rolled back, cancelled and left included).
    pub failed: usize,
    /// Time from taking the push off the queue to the last unit's end.
    pub duration: Duration,
    /// For each target with a unit that was deployed (not skipped): the time from the
    /// push to that target's last unit's end.
    pub deployed_after: Vec<(crate::domain::TargetKind, Duration)>,
}

/// Something that has ended.
#[derive(Debug, Clone, PartialEq)]
pub enum DeployEvent {
    /// One unit is done with.
    Unit(UnitOutcome),
    /// One push is done with; every one of its units was reported before.
    Job(JobOutcome),
}

/// Publishes outcomes: logs each one and broadcasts it to subscribers.
#[derive(Debug, Clone)]
pub struct OutcomeReporter {
    /// Subscribers that lag behind lose the oldest events, never block the deploys.
    sender: broadcast::Sender<DeployEvent>,
    /// Where ends are counted.
    metrics: Arc<Metrics>,
}

impl OutcomeReporter {
    /// A reporter counting into `metrics`, whose slow subscribers may miss outcomes beyond
    /// `capacity`.
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> Self {
        let (sender, _) = broadcast::channel(capacity);
        Self { sender, metrics }
    }

    /// A new stream of every outcome reported from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<DeployEvent> {
        self.sender.subscribe()
    }

    /// Logs the unit's outcome as one line and passes it on.
    pub fn report_unit(&self, outcome: UnitOutcome) {
        let duration_ms = outcome.duration.as_millis() as u64;
        let result = outcome.outcome.end.as_str();
        let reason = outcome.outcome.reason.as_deref().unwrap_or("");
        let (job, target, id, name, image) = (
            outcome.job,
            outcome.unit.target.as_str(),
            &outcome.unit.id,
            &outcome.name,
            &outcome.image,
        );
        match outcome.outcome.end {
            end if end.is_failure() => tracing::error!(
                %job, target, unit_id = %id, unit = %name, %image, result, reason, duration_ms,
                "not upgraded"
            ),
            UnitEnd::Skipped => tracing::info!(
                %job, target, unit_id = %id, unit = %name, %image, result, reason, duration_ms,
                "skipped"
            ),
            UnitEnd::UpToDate => tracing::info!(
                %job, target, unit_id = %id, unit = %name, %image, result, duration_ms,
                "up to date"
            ),
            _ => tracing::info!(
                %job, target, unit_id = %id, unit = %name, %image, result, reason, duration_ms,
                "upgraded"
            ),
        }
        self.metrics.unit_ended(&outcome);
        // No subscriber is the normal case in production.
        let _ = self.sender.send(DeployEvent::Unit(outcome));
    }

    /// Logs the job's tally as one line and passes it on.
    pub fn report_job(&self, outcome: JobOutcome) {
        let duration_ms = outcome.duration.as_millis() as u64;
        let (job, image) = (outcome.job, &outcome.image);
        let (upgraded, up_to_date, skipped, failed) = (
            outcome.upgraded,
            outcome.up_to_date,
            outcome.skipped,
            outcome.failed,
        );
        match &outcome.scan {
            Ok(scan) => tracing::info!(
                %job, %image, pages = scan.pages, listed = scan.listed, upgraded, up_to_date,
                skipped, failed, passed_over = scan.passed_over, unreadable = scan.unreadable,
                duration_ms, "push handled"
            ),
            Err(error) => tracing::error!(
                %job, %image, %error, upgraded, up_to_date, skipped, failed, duration_ms,
                "push handled only in part"
            ),
        }
        self.metrics.job_ended(&outcome);
        let _ = self.sender.send(DeployEvent::Job(outcome));
    }
}
