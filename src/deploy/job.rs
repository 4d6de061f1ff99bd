//! One run of a job: resume the units the journal holds, scan each platform not yet
//! scanned, plan what the scans find, and end the job once every unit has an end.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Deployer;
use super::dispatch::Pause;
use crate::domain::{Outcome, TargetKind, UnitEnd, UnitRef};
use crate::events::{JobOutcome, UnitOutcome};
use crate::journal::{PendingJob, UnitRecord};
use crate::platform::{Candidate, Plan, Platform, Progress, ScanError, ScanSummary};

/// What a run has found out about the job as a whole.
#[derive(Default)]
struct RunState {
    /// Why the job fails as a whole (a scan stopped for good, credentials refused).
    error: Option<String>,
    /// Why the run cannot reach the job's end now.
    later: Option<String>,
    /// The shutdown stopped something.
    interrupted: bool,
    /// The scans of this run, per target.
    scans: HashMap<TargetKind, ScanSummary>,
}

impl Deployer {
    /// Carries `job` as far as it goes now. `Ok` once it has ended (recorded and reported).
    pub(super) async fn run_job(self: &Arc<Self>, job: &PendingJob) -> Result<(), Pause> {
        // Shared by every unit in flight, which each hold it for their whole upgrade.
        let job = &Arc::new(job.clone());
        let started = Instant::now();
        let mut units = JoinSet::new();
        let mut known = HashSet::new();
        for record in self.journal.units(job.id).await? {
            known.insert(record.unit());
            if record.end.is_none() {
                self.resume(job, record, &mut units);
            }
        }
        let mut run = RunState::default();
        let scans = self.journal.scans(job.id).await?;
        for platform in &self.platforms {
            let target = platform.target();
            if job.only.as_ref().is_some_and(|only| only.target != target) {
                continue;
            }
            if scans
                .iter()
                .any(|scan| scan.target == target && scan.complete)
            {
                continue;
            }
            self.scan(job, platform, &mut known, &mut units, &mut run)
                .await;
            if run.interrupted || run.later.is_some() {
                break;
            }
        }
        // Whatever happened to the scans, the units already started run to their end.
        while let Some(ended) = units.join_next().await {
            match ended {
                Ok(Progress::Ended(_)) => {}
                Ok(Progress::Refused(reason)) => run.error = Some(reason),
                Ok(Progress::Later(reason)) => run.later = Some(reason),
                Ok(Progress::Interrupted) => run.interrupted = true,
                Err(error) => {
                    run.later = Some(format!("a unit's task ended abnormally: {error}"));
                }
            }
        }
        if run.interrupted {
            tracing::info!(job = %job.id, image = %job.image, "job interrupted by the shutdown; it resumes at the next start");
            return Err(Pause::Interrupted);
        }
        if let Some(reason) = run.later {
            return Err(Pause::Later(reason));
        }
        self.finish(job, run.error, run.scans, started).await
    }

    /// Drives again a unit the journal has without an end.
    fn resume(
        self: &Arc<Self>,
        job: &Arc<PendingJob>,
        unit: UnitRecord,
        units: &mut JoinSet<Progress>,
    ) {
        match self.platform(unit.target) {
            Some(platform) => {
                let drive = Arc::clone(self).drive_unit(
                    Arc::clone(platform),
                    Arc::clone(job),
                    Box::new(unit),
                    None,
                );
                units.spawn(drive);
            }
            None => {
                let reason = format!(
                    "the {} target is not configured any more (AUTOREDEPLOY_TARGETS)",
                    unit.target
                );
                let deployer = Arc::clone(self);
                let job = job.clone();
                units.spawn(async move {
                    let outcome = Outcome::failed(reason);
                    deployer
                        .end_unit(&job, &unit, outcome, Instant::now())
                        .await
                });
            }
        }
    }

    /// Walks one platform, recording and starting each unit the push concerns.
    async fn scan(
        self: &Arc<Self>,
        job: &Arc<PendingJob>,
        platform: &Arc<dyn Platform>,
        known: &mut HashSet<UnitRef>,
        units: &mut JoinSet<Progress>,
        run: &mut RunState,
    ) {
        let target = platform.target();
        let mut scan = match &job.only {
            Some(unit) => platform.scan_only(unit, &job.image),
            None => platform.scan(&job.image),
        };
        loop {
            if self.shutdown.is_triggered() {
                run.interrupted = true;
                return;
            }
            match scan.next_batch().await {
                Ok(Some(candidates)) => {
                    let fresh = candidates
                        .into_iter()
                        .filter(|candidate| {
                            job.only.as_ref().is_none_or(|only| *only == candidate.unit)
                        })
                        .filter(|candidate| known.insert(candidate.unit.clone()))
                        .collect();
                    if let Err(error) = self.plan(job, platform, fresh, units).await {
                        run.later = Some(error.to_string());
                        return;
                    }
                }
                Ok(None) => {
                    let summary = scan.summary();
                    let recorded = self
                        .journal
                        .end_scan(job.id, target, summary.pages, summary.listed, None)
                        .await;
                    match recorded {
                        Ok(()) => {
                            run.scans.insert(target, summary);
                        }
                        Err(error) => run.later = Some(error.to_string()),
                    }
                    return;
                }
                Err(ScanError::Later(reason)) => {
                    run.later = Some(reason);
                    return;
                }
                Err(ScanError::Failed(reason)) => {
                    let summary = scan.summary();
                    let recorded = self
                        .journal
                        .end_scan(
                            job.id,
                            target,
                            summary.pages,
                            summary.listed,
                            Some(reason.clone()),
                        )
                        .await;
                    match recorded {
                        Ok(()) => run.error = Some(reason),
                        Err(error) => run.later = Some(error.to_string()),
                    }
                    return;
                }
            }
        }
    }

    /// Records a page's candidates in one write, then starts the deploys and reports the
    /// skipped units.
    async fn plan(
        self: &Arc<Self>,
        job: &Arc<PendingJob>,
        platform: &Arc<dyn Platform>,
        candidates: Vec<Candidate>,
        units: &mut JoinSet<Progress>,
    ) -> Result<(), crate::journal::JournalError> {
        if candidates.is_empty() {
            return Ok(());
        }
        let mut planned: HashMap<UnitRef, UnitRecord> = self
            .journal
            .plan_units(job.id, &candidates)
            .await?
            .into_iter()
            .map(|record| (record.unit(), record))
            .collect();
        for candidate in candidates {
            let Some(record) = planned.remove(&candidate.unit) else {
                continue;
            };
            match candidate.plan {
                Plan::Deploy(prefetched) => {
                    let drive = Arc::clone(self).drive_unit(
                        Arc::clone(platform),
                        Arc::clone(job),
                        Box::new(record),
                        Some(prefetched),
                    );
                    units.spawn(drive);
                }
                Plan::Skip(reason) => self.reporter.report_unit(UnitOutcome {
                    job: job.id,
                    unit: candidate.unit,
                    name: candidate.name,
                    image: job.image.clone(),
                    outcome: Outcome::skipped(reason),
                    duration: std::time::Duration::ZERO,
                }),
            }
        }
        Ok(())
    }

    /// Ends a job every unit of which has an end, and reports it.
    async fn finish(
        &self,
        job: &PendingJob,
        error: Option<String>,
        scanned: HashMap<TargetKind, ScanSummary>,
        started: Instant,
    ) -> Result<(), Pause> {
        let scans = self.journal.scans(job.id).await?;
        let error = error.or_else(|| scans.iter().find_map(|scan| scan.error.clone()));
        self.journal
            .finish_job(job.id, error.clone(), &self.notices)
            .await?;
        self.notices_written.notify_one();
        // Targets scanned in an earlier run count with what the journal kept of them.
        let mut total = ScanSummary::default();
        for scan in &scans {
            let summary = scanned
                .get(&scan.target)
                .cloned()
                .unwrap_or_else(|| ScanSummary {
                    pages: scan.pages.unwrap_or_default() as usize,
                    listed: scan.listed.unwrap_or_default() as usize,
                    ..ScanSummary::default()
                });
            total.pages += summary.pages;
            total.listed += summary.listed;
            total.passed_over += summary.passed_over;
            total.unreadable += summary.unreadable;
        }
        self.report_job(job, error.map_or(Ok(total), Err), started)
            .await;
        Ok(())
    }

    /// Ends a job whose runs are used up: every unit without an end is recorded failed
    /// with `reason` and reported, and so is the job.
    pub(super) async fn give_up(&self, job: &PendingJob, reason: String) -> Result<(), Pause> {
        let started = Instant::now();
        let unfinished = self
            .journal
            .give_up(job.id, reason.clone(), &self.notices)
            .await?;
        self.notices_written.notify_one();
        for record in unfinished {
            self.reporter.report_unit(UnitOutcome {
                job: job.id,
                unit: record.unit(),
                name: record.name,
                image: job.image.clone(),
                outcome: Outcome::failed(reason.clone()),
                duration: std::time::Duration::ZERO,
            });
        }
        self.report_job(job, Err(reason), started).await;
        Ok(())
    }

    /// Reports the job's tally, as the journal has it.
    async fn report_job(
        &self,
        job: &PendingJob,
        scan: Result<ScanSummary, String>,
        started: Instant,
    ) {
        let units = match self.journal.units(job.id).await {
            Ok(units) => units,
            Err(error) => {
                tracing::warn!(job = %job.id, %error, "cannot read the job's units for its tally");
                Vec::new()
            }
        };
        let ends: Vec<UnitEnd> = units.iter().filter_map(|unit| unit.end).collect();
        // Per target, from the push to the end of its last unit that was deployed.
        let mut deployed_after: Vec<(TargetKind, std::time::Duration)> = Vec::new();
        for unit in units
            .iter()
            .filter(|unit| unit.end.is_some_and(|end| end != UnitEnd::Skipped))
        {
            let after = std::time::Duration::from_millis(
                (unit.updated_at.0 - job.received_at.0).max(0) as u64,
            );
            match deployed_after
                .iter_mut()
                .find(|(target, _)| *target == unit.target)
            {
                Some((_, latest)) => *latest = (*latest).max(after),
                None => deployed_after.push((unit.target, after)),
            }
        }
        let count = |wanted: fn(UnitEnd) -> bool| ends.iter().filter(|end| wanted(**end)).count();
        self.reporter.report_job(JobOutcome {
            job: job.id,
            image: job.image.clone(),
            scan,
            upgraded: count(|end| end == UnitEnd::Upgraded),
            up_to_date: count(|end| end == UnitEnd::UpToDate),
            skipped: count(|end| end == UnitEnd::Skipped),
            failed: count(UnitEnd::is_failure),
            duration: started.elapsed(),
            deployed_after,
        });
    }
}
