//! The safety re-check: every `AUTOREDEPLOY_RECHECK_INTERVAL`, the digest each tag the
//! opted-in workloads run is read from its registry, and a tag that names another digest
//! than a workload runs is journaled as a push (source `recheck`), which the deploy core
//! then carries out as any other. A missed webhook is thus repaired within one interval,
//! without pulling anything that did not change.

pub mod manifest;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::domain::{ImageRef, PushEvent, SourceKind};
use crate::journal::Journal;
use crate::platform::Platform;
use crate::shutdown::ShutdownSignal;
use manifest::ManifestClient;

/// What the re-check needs.
pub struct Recheck {
    /// The targets whose workloads are looked at.
    pub platforms: Vec<Arc<dyn Platform>>,
    /// Where the pushes it finds are written.
    pub journal: Journal,
    /// Rung for each push written.
    pub wake: Arc<Notify>,
    /// Reads digests from the registries.
    pub manifests: ManifestClient,
    /// Time between two runs.
    pub interval: Duration,
    /// Most jobs waiting to be started.
    pub queue_size: usize,
}

impl Recheck {
    /// Runs once per interval, the first after one interval, until the shutdown.
    pub async fn run(self, shutdown: ShutdownSignal) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = shutdown.triggered() => return,
            }
            let pushed = self.once().await;
            tracing::info!(pushed, "re-check done");
        }
    }

    /// Compares every tag in use with its registry, and journals a push for each that
    /// moved; returns how many were journaled.
    pub async fn once(&self) -> usize {
        // Each tag once, with the digests each of its workloads is known by (those known).
        let mut in_use: BTreeMap<String, (ImageRef, Vec<Vec<String>>)> = BTreeMap::new();
        for platform in &self.platforms {
            match platform.in_use().await {
                Ok(found) => {
                    for unit in found {
                        let entry = in_use
                            .entry(unit.image.to_string())
                            .or_insert_with(|| (unit.image.clone(), Vec::new()));
                        if !unit.digests.is_empty() {
                            entry.1.push(unit.digests);
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(target = %platform.target(), %error, "re-check: the workloads could not be listed");
                }
            }
        }
        let mut pushed = 0;
        for (name, (image, running)) in in_use {
            if running.is_empty() {
                continue;
            }
            let current = match self.manifests.digest(&image).await {
                Ok(current) => current,
                Err(error) => {
                    tracing::warn!(image = name, %error, "re-check: the tag's digest could not be read");
                    continue;
                }
            };
            let runs_current = |digests: &Vec<String>| {
                digests
                    .iter()
                    .any(|digest| digest.eq_ignore_ascii_case(&current))
            };
            if running.iter().all(runs_current) {
                continue;
            }
            let push =
                PushEvent::announced(image, Some(current.clone()), SourceKind::Recheck, None);
            match self.journal.accept(&push, self.queue_size).await {
                Ok(accepted) => {
                    pushed += 1;
                    self.wake.notify_one();
                    tracing::info!(image = name, digest = current, job = %accepted.job, "re-check: the tag names a digest some workload does not run");
                }
                Err(error) => {
                    tracing::warn!(image = name, %error, "re-check: the push could not be journaled");
                }
            }
        }
        pushed
    }
}
