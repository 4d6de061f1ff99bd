//! Per-unit turns: a unit is handled by one job at a time, so autoredeploy never trips over
//! its own upgrade in progress.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

use crate::domain::UnitRef;

/// The turns on every unit some job holds or waits for.
#[derive(Debug, Default, Clone)]
pub struct UnitTurns {
    /// Entries exist only while some job holds or waits for the unit.
    locks: Arc<Mutex<HashMap<UnitRef, Arc<tokio::sync::Mutex<()>>>>>,
    /// When a turn on any unit was last released.
    last_release: Arc<Mutex<Option<Instant>>>,
}

/// A job's turn on a unit; the entry is tidied away when nobody else waits.
#[derive(Debug)]
pub struct Turn {
    guard: Option<OwnedMutexGuard<()>>,
    turns: UnitTurns,
    unit: UnitRef,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl UnitTurns {
    /// The lock of `unit`, created if nobody holds or waits for it.
    fn entry(&self, unit: &UnitRef) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(locked(&self.locks).entry(unit.clone()).or_default())
    }

    /// Whether a turn on any unit has been released since `moment`: what was read of a
    /// unit before then may have been changed by another job since.
    pub fn released_since(&self, moment: Instant) -> bool {
        locked(&self.last_release).is_some_and(|released| released >= moment)
    }

    /// The turn on `unit` if nobody holds it now.
    pub fn try_take(&self, unit: &UnitRef) -> Option<Turn> {
        let guard = self.entry(unit).try_lock_owned().ok()?;
        Some(self.turn(unit, guard))
    }

    /// The turn on `unit`, once the job before has released it.
    pub async fn take(&self, unit: &UnitRef) -> Turn {
        let guard = self.entry(unit).lock_owned().await;
        self.turn(unit, guard)
    }

    fn turn(&self, unit: &UnitRef, guard: OwnedMutexGuard<()>) -> Turn {
        Turn {
            guard: Some(guard),
            turns: self.clone(),
            unit: unit.clone(),
        }
    }

    /// Units some job holds or waits for.
    #[cfg(test)]
    fn len(&self) -> usize {
        locked(&self.locks).len()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        *locked(&self.turns.last_release) = Some(Instant::now());
        drop(self.guard.take());
        let mut locks = locked(&self.turns.locks);
        if locks
            .get(&self.unit)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.unit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TargetKind;
    use std::time::Duration;

    fn unit(id: &str) -> UnitRef {
        UnitRef {
            target: TargetKind::Rancher,
            id: id.into(),
        }
    }

    #[tokio::test]
    async fn one_turn_at_a_time_per_unit_and_none_kept_after_use() {
        let turns = UnitTurns::default();
        let first = turns.try_take(&unit("1s1")).expect("free");
        assert!(turns.try_take(&unit("1s1")).is_none(), "held");
        let other = turns.try_take(&unit("1s2")).expect("other units are free");
        let waiting = tokio::spawn({
            let turns = turns.clone();
            async move { turns.take(&unit("1s1")).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiting.is_finished(), "waits for the first turn");
        let before = Instant::now();
        drop(first);
        let second = waiting.await.unwrap();
        assert!(turns.released_since(before));
        drop((second, other));
        assert_eq!(turns.len(), 0, "entries are tidied away");
    }
}
