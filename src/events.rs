//! What happened to each service a push concerned, and to the push as a whole: one log line
//! each, and a broadcast stream for whoever wants to follow along (the tests, later the
//! history and metrics).

use std::time::Duration;

use tokio::sync::broadcast;

use crate::journal::JobId;
use crate::platform::rancher::scan::ScanSummary;

/// The end of one service's handling for one push.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceOutcome {
    /// The job that handled it.
    pub job: JobId,
    /// Rancher id, e.g. `1s6`.
    pub service_id: String,
    /// Service name.
    pub service_name: String,
    /// The pushed image, normalised.
    pub image: String,
    /// What happened.
    pub result: OutcomeResult,
    /// Time from the decision to upgrade (or skip) to the end.
    pub duration: Duration,
}

/// How one service's handling ended.
#[derive(Debug, Clone, PartialEq)]
pub enum OutcomeResult {
    /// Upgraded and finished: the service is `active` on the new image.
    Upgraded,
    /// Upgraded and left in `upgraded`, because `RANCHER_FINISH_UPGRADE=false`.
    UpgradedNotFinished,
    /// Runs the image but was deliberately not upgraded; the reason says why.
    Skipped(String),
    /// The upgrade was attempted and did not complete; the reason says where it stopped.
    Failed(String),
}

impl OutcomeResult {
    /// A short word for the log: `upgraded`, `upgraded-not-finished`, `skipped`, `failed`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Upgraded => "upgraded",
            Self::UpgradedNotFinished => "upgraded-not-finished",
            Self::Skipped(_) => "skipped",
            Self::Failed(_) => "failed",
        }
    }

    /// The reason, for skipped and failed services.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Skipped(reason) | Self::Failed(reason) => Some(reason),
            Self::Upgraded | Self::UpgradedNotFinished => None,
        }
    }
}

/// The end of one push's job: the scan and the tally of its services.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    /// The job.
    pub job: JobId,
    /// The pushed image, normalised.
    pub image: String,
    /// The walk through the environment, or why it stopped early.
    pub scan: Result<ScanSummary, String>,
    /// Services upgraded (finished or not).
    pub upgraded: usize,
    /// Services skipped although they run the image.
    pub skipped: usize,
    /// Services whose upgrade failed.
    pub failed: usize,
    /// Time from taking the push off the queue to the last service's end.
    pub duration: Duration,
}

/// Something that has ended.
#[derive(Debug, Clone, PartialEq)]
pub enum DeployEvent {
    /// One service is done with.
    Service(ServiceOutcome),
    /// One push is done with; every one of its services was reported before.
    Job(JobOutcome),
}

/// Publishes outcomes: logs each one and broadcasts it to subscribers.
#[derive(Debug, Clone)]
pub struct OutcomeReporter {
    /// Subscribers that lag behind lose the oldest events, never block the deploys.
    sender: broadcast::Sender<DeployEvent>,
}

impl OutcomeReporter {
    /// A reporter whose slow subscribers may miss outcomes beyond `capacity`.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity);
        Self { sender }
    }

    /// A new stream of every outcome reported from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<DeployEvent> {
        self.sender.subscribe()
    }

    /// Logs the service's outcome as one line and passes it on.
    pub fn report_service(&self, outcome: ServiceOutcome) {
        let duration_ms = outcome.duration.as_millis() as u64;
        let result = outcome.result.label();
        let reason = outcome.result.reason().unwrap_or("");
        match &outcome.result {
            OutcomeResult::Failed(_) => tracing::error!(
                job = %outcome.job, service_id = %outcome.service_id, service = %outcome.service_name,
                image = %outcome.image, result, reason, duration_ms, "service not upgraded"
            ),
            OutcomeResult::Skipped(_) => tracing::info!(
                job = %outcome.job, service_id = %outcome.service_id, service = %outcome.service_name,
                image = %outcome.image, result, reason, duration_ms, "service skipped"
            ),
            _ => tracing::info!(
                job = %outcome.job, service_id = %outcome.service_id, service = %outcome.service_name,
                image = %outcome.image, result, duration_ms, "service upgraded"
            ),
        }
        // No subscriber is the normal case in production.
        let _ = self.sender.send(DeployEvent::Service(outcome));
    }

    /// Logs the job's tally as one line and passes it on.
    pub fn report_job(&self, outcome: JobOutcome) {
        let duration_ms = outcome.duration.as_millis() as u64;
        match &outcome.scan {
            Ok(scan) => tracing::info!(
                job = %outcome.job, image = %outcome.image, pages = scan.pages, listed = scan.listed,
                upgraded = outcome.upgraded, skipped = outcome.skipped, failed = outcome.failed,
                without_launch_config = scan.without_launch_config,
                unreadable = scan.unreadable, duration_ms, "push handled"
            ),
            Err(error) => tracing::error!(
                job = %outcome.job, image = %outcome.image, %error, upgraded = outcome.upgraded,
                skipped = outcome.skipped, failed = outcome.failed, duration_ms,
                "push handled only in part: the service list could not be read to the end"
            ),
        }
        let _ = self.sender.send(DeployEvent::Job(outcome));
    }
}
