//! What a target platform must do for the deploy core, and the platforms themselves, one
//! module each. A platform is the only code that speaks its API; the core sees only the
//! types of this module and of [`crate::domain`].
//!
//! For one push, the core asks each platform to [`scan`](Platform::scan) for the units
//! that run the pushed image, records them, and has the platform
//! [`drive`](Platform::drive) each one from the step the journal last recorded to an end.
//! A platform records each of its own steps, with an opaque checkpoint of its own, through
//! the [`StepLog`] it is handed, *before* taking that step: a process killed at any moment
//! resumes from the checkpoint without doing anything twice.

pub mod containers;
pub mod engine;
pub mod rancher;
pub mod swarm;

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use tokio::time::Instant;

use crate::domain::{ImageRef, Outcome, TargetKind, UnitRef};
use crate::journal::{JobId, Journal, JournalError, UnitRecord};

/// A future a platform returns; boxed, so that platforms can be held as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A target platform.
pub trait Platform: Send + Sync + fmt::Debug {
    /// Which platform this is.
    fn target(&self) -> TargetKind;

    /// Logs what the target is set to at start, warning about risky settings.
    fn warn_about_its_settings(&self) -> BoxFuture<'_, ()>;

    /// Starts a walk through the platform's workloads for `image`.
    fn scan(&self, image: &ImageRef) -> Box<dyn Scan>;

    /// Starts a walk for a job that concerns `unit` only, with `image`. By default the
    /// walk of [`scan`](Platform::scan), of which the core keeps `unit`; a platform whose
    /// requests set a unit's image, whatever it runs now, finds the unit itself.
    fn scan_only(&self, unit: &UnitRef, image: &ImageRef) -> Box<dyn Scan> {
        let _ = unit;
        self.scan(image)
    }

    /// The tags its opted-in units run, each with the digests it runs it at when they are
    /// known, for the safety re-check. By default none: the re-check leaves it out.
    fn in_use(&self) -> BoxFuture<'_, Result<Vec<InUse>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Carries one unit from the step the journal last recorded (`unit.step`, with
    /// `unit.checkpoint`) to an end, recording each step through `log` before taking it.
    /// `prefetched` is what the scan read of the unit moments ago, given only when nothing
    /// had to wait since: it may stand in for a fresh read. `digest` is the one the push
    /// says the tag names now, when it says so: a unit that runs it is up to date.
    fn drive<'a>(
        &'a self,
        unit: &'a UnitRecord,
        prefetched: Option<Prefetched>,
        image: &'a ImageRef,
        digest: Option<&'a str>,
        log: &'a StepLog,
    ) -> BoxFuture<'a, Progress>;
}

/// A tag an opted-in unit runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InUse {
    /// The image, by its tag.
    pub image: ImageRef,
    /// The digests the unit's image is known by in the tag's repository: one when the
    /// platform pins it, none when it is not known.
    pub digests: Vec<String>,
}

/// Finds a workload by the name a request gives it (`POST /notify/{container}`).
pub trait NamedUnits: Send + Sync + fmt::Debug {
    /// The workload named `name`, and what it runs.
    fn find<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Lookup>;
}

/// What a search by name found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The unit, and the image reference it runs, which a redeploy pulls again.
    Found {
        /// Which unit.
        unit: UnitRef,
        /// Its image, with its tag.
        image: ImageRef,
    },
    /// Nothing has that name.
    NotFound,
    /// Its label opts it out: why.
    OptedOut(String),
    /// It cannot be redeployed as it is (stopped, or run from an image without a tag):
    /// why.
    Unfit(String),
    /// The platform could not be asked: why.
    Unavailable(String),
}

/// One walk through a platform's workloads.
pub trait Scan: Send {
    /// The candidates of the next batch read (a page), or `None` once the walk is over.
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<Vec<Candidate>>, ScanError>>;

    /// What the walk has seen so far.
    fn summary(&self) -> ScanSummary;
}

/// Why a walk stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanError {
    /// The platform could not be reached for longer than the retries: walk again later.
    Later(String),
    /// The walk cannot succeed (credentials refused, answers unreadable).
    Failed(String),
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Later(reason) | Self::Failed(reason) => f.write_str(reason),
        }
    }
}

/// Counts from one walk through a platform.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanSummary {
    /// Pages (or other batches) read.
    pub pages: usize,
    /// Workloads listed, readable or not.
    pub listed: usize,
    /// Entries that are not workloads this platform deploys (Rancher's DNS and external
    /// services, …), passed over.
    pub passed_over: usize,
    /// Entries that could not be read and were passed over.
    pub unreadable: usize,
}

/// A unit the pushed image concerns, as a scan found it.
pub struct Candidate {
    /// Which unit.
    pub unit: UnitRef,
    /// Its name, for people.
    pub name: String,
    /// Deploy it, or why not.
    pub plan: Plan,
}

/// What a scan decided about a candidate.
pub enum Plan {
    /// Deploy it; what was read of it may stand in for a fresh read if it is used at once.
    Deploy(Prefetched),
    /// Leave it alone; the reason says why.
    Skip(String),
}

/// What a scan read of a unit, opaque to the core and handed back to the platform that
/// made it. It is dropped as soon as the unit has to wait for anything.
pub struct Prefetched {
    /// The platform's own copy.
    pub copy: Box<dyn Any + Send + Sync>,
    /// When it was asked for: the copy is at least as recent.
    pub asked_at: Instant,
}

impl fmt::Debug for Prefetched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prefetched")
            .field("asked_at", &self.asked_at)
            .finish_non_exhaustive()
    }
}

/// How driving a unit stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// It has an end.
    Ended(Outcome),
    /// It failed because the platform refused autoredeploy's credentials: nothing else can
    /// succeed with them, so the job fails too.
    Refused(String),
    /// The platform could not be reached, or the journal written, for longer than the
    /// retries: resume later from the last recorded step.
    Later(String),
    /// The process is shutting down: resume at the next start.
    Interrupted,
}

/// Where a platform records the steps of one unit, each before it is taken.
#[derive(Debug, Clone)]
pub struct StepLog {
    journal: Journal,
    job: JobId,
    unit: UnitRef,
}

impl StepLog {
    /// The log of `unit` in `job`.
    pub fn new(journal: Journal, job: JobId, unit: UnitRef) -> Self {
        Self { journal, job, unit }
    }

    /// Records `step` with `detail` for the history and the platform's `checkpoint`
    /// (kept from the step before when `None`).
    pub async fn record(
        &self,
        step: &'static str,
        detail: Option<String>,
        checkpoint: Option<String>,
    ) -> Result<(), JournalError> {
        self.journal
            .record_step(self.job, &self.unit, step, detail, checkpoint)
            .await
    }
}
