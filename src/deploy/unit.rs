//! One unit of a job: its turn, a slot, its platform's upgrade, its end recorded and
//! reported.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::Deployer;
use crate::domain::Outcome;
use crate::events::UnitOutcome;
use crate::journal::{PendingJob, UnitRecord};
use crate::platform::{Platform, Prefetched, Progress, StepLog};

impl Deployer {
    /// Waits for the unit's turn and a slot, has its platform drive it, and records and
    /// reports its end.
    ///
    /// `prefetched` (what the scan read of it, and when) stands in for a fresh read only if
    /// the turn and a slot are free at once and no job has released a turn on any unit
    /// since it was read; otherwise it is dropped before waiting, so a waiting unit holds
    /// nothing of what was listed.
    pub(super) async fn drive_unit(
        self: Arc<Self>,
        platform: Arc<dyn Platform>,
        job: Arc<PendingJob>,
        unit: Box<UnitRecord>,
        prefetched: Option<Prefetched>,
    ) -> Progress {
        let unit_ref = unit.unit();
        let started = Instant::now();
        let turn_at_once = self.turns.try_take(&unit_ref);
        // A slot is never held while waiting for a turn: always the turn first, then a slot.
        let slot_at_once = match &turn_at_once {
            Some(_) => self.try_slot(),
            None => None,
        };
        let (_turn, _slot, prefetched) = match (turn_at_once, slot_at_once) {
            (Some(turn), Some(slot)) => {
                let fresh = prefetched.filter(|copy| !self.turns.released_since(copy.asked_at));
                (turn, slot, fresh)
            }
            (turn, _) => {
                drop(prefetched);
                // Boxed: a unit in flight keeps its future's size for its whole upgrade.
                let waited = Box::pin(async {
                    let held = async {
                        let turn = match turn {
                            Some(turn) => turn,
                            None => self.turns.take(&unit_ref).await,
                        };
                        (turn, self.slot().await)
                    };
                    tokio::select! {
                        held = held => Some(held),
                        () = self.shutdown.triggered() => None,
                    }
                });
                let Some((turn, slot)) = waited.await else {
                    return Progress::Interrupted;
                };
                (turn, slot, None)
            }
        };
        let log = StepLog::new(self.journal.clone(), job.id, unit_ref);
        let progress = platform
            .drive(&unit, prefetched, &job.image, job.digest.as_deref(), &log)
            .await;
        drop(log);
        // Boxed: only needed at the end, not while the unit is driven.
        match progress {
            Progress::Ended(outcome) => {
                Box::pin(self.end_unit(&job, &unit, outcome, started)).await
            }
            Progress::Refused(reason) => {
                let outcome = Outcome::failed(reason.clone());
                match Box::pin(self.end_unit(&job, &unit, outcome, started)).await {
                    Progress::Ended(_) => Progress::Refused(reason),
                    other => other,
                }
            }
            other => other,
        }
    }

    /// A slot if one is free now (`Some(None)` when slots are not bounded).
    fn try_slot(&self) -> Option<Option<OwnedSemaphorePermit>> {
        match &self.upgrade_slots {
            None => Some(None),
            Some(slots) => Arc::clone(slots).try_acquire_owned().ok().map(Some),
        }
    }

    /// A slot, once one is free (`None` when slots are not bounded).
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        let slots = Arc::clone(self.upgrade_slots.as_ref()?);
        match slots.acquire_owned().await {
            Ok(permit) => Some(permit),
            Err(_) => unreachable!("the upgrade slots are never closed"),
        }
    }

    /// Records the unit's end and reports it; if the end cannot be recorded, the unit is
    /// driven again later, and its platform finds the same end from where it stands.
    pub(super) async fn end_unit(
        &self,
        job: &PendingJob,
        unit: &UnitRecord,
        outcome: Outcome,
        started: Instant,
    ) -> Progress {
        let unit_ref = unit.unit();
        if let Err(error) = self.journal.end_unit(job.id, &unit_ref, &outcome).await {
            return Progress::Later(format!("{error}; the end of {unit_ref} was not recorded"));
        }
        self.reporter.report_unit(UnitOutcome {
            job: job.id,
            unit: unit_ref,
            name: unit.name.clone(),
            image: job.image.clone(),
            outcome: outcome.clone(),
            duration: started.elapsed(),
        });
        Progress::Ended(outcome)
    }
}
