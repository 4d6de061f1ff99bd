//! Walks the environment's services page by page and decides, per service, what a push means.
//!
//! Pages are judged as they arrive and dropped: memory does not grow with the number of
//! services, and upgrades can start while later pages are still being read.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use super::matching::{self, Verdict};
use super::paging::{Advance, Walk};
use super::{Listed, PageEnd, RancherClient, RancherError, Service, SkippedEntry};
use crate::config::MatchSettings;
use crate::domain::{ImageRef, TargetKind, UnitRef};
use crate::platform::{BoxFuture, Candidate, Plan, Prefetched, Scan, ScanError, ScanSummary};

/// One walk through the environment for one pushed image: the pages the paging rules ask for are
/// read concurrently, at most `list_window` at a time, each judged entry by entry as it
/// arrives.
#[derive(Debug)]
pub struct Scanner {
    client: RancherClient,
    pushed: Arc<ImageRef>,
    rule: Arc<MatchSettings>,
    /// Pages read at the same time.
    window: usize,
    walk: Walk,
    /// Pages being read.
    reading: JoinSet<PageReading>,
    /// Offsets of the pages being read, to abandon those beyond the last page.
    in_flight: BTreeMap<u64, AbortHandle>,
    /// Markers are offsets: a service created or removed during the walk shifts the pages,
    /// and a service may be listed twice. It is decided once.
    decided: HashSet<String>,
    summary: ScanSummary,
}

/// One page, read.
struct PageReading {
    /// The marker it was asked for with (`None` for the first page).
    marker: Option<String>,
    /// Its offset, when pages are asked for by offset.
    offset: Option<u64>,
    /// How the read ended.
    result: Result<PageEnd, RancherError>,
    /// What its entries came to.
    tally: Tally,
}

/// The entries of one page, judged.
#[derive(Default)]
struct Tally {
    /// The services that run the pushed image, in page order.
    candidates: Vec<Candidate>,
    /// Entries read (a page read again after a failure counts each entry once).
    entries: usize,
    /// Its first entries, which the page before has read and counted already.
    shared: usize,
    without_launch_config: usize,
    unreadable: usize,
}

impl Scanner {
    /// A walk that has not read anything yet.
    pub fn new(client: &RancherClient, pushed: &ImageRef, rule: &MatchSettings) -> Self {
        Self {
            window: client.list_window(),
            client: client.clone(),
            pushed: Arc::new(pushed.clone()),
            rule: Arc::new(rule.clone()),
            walk: Walk::Start,
            reading: JoinSet::new(),
            in_flight: BTreeMap::new(),
            decided: HashSet::new(),
            summary: ScanSummary::default(),
        }
    }

    /// Returns the candidates of the next page read, in page order (not necessarily the
    /// next page in the listing); `None` once the walk is over.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Candidate>>, RancherError> {
        loop {
            self.ask_for_pages();
            let Some(joined) = self.reading.join_next().await else {
                return Ok(None);
            };
            let page = match joined {
                Ok(page) => page,
                Err(error) if error.is_cancelled() => continue,
                Err(error) => std::panic::resume_unwind(error.into_panic()),
            };
            if let Some(offset) = page.offset {
                self.in_flight.remove(&offset);
                // A page past the last one, read before it could be abandoned, says nothing.
                if self.walk.is_beyond_the_end(offset) {
                    continue;
                }
            }
            let end = match page.result {
                Ok(end) => end,
                Err(error) => {
                    self.reading.abort_all();
                    return Err(error);
                }
            };
            self.advance(
                page.marker.as_deref(),
                page.offset,
                page.tally.entries,
                &end,
            )?;
            return Ok(Some(self.take_candidates(page.tally)));
        }
    }

    /// Starts reading the pages the walk needs next, up to the window.
    fn ask_for_pages(&mut self) {
        for request in self.walk.requests(self.reading.len(), self.window) {
            self.read(request.marker, request.offset, request.shared);
        }
    }

    fn read(&mut self, marker: Option<String>, offset: Option<u64>, shared: usize) {
        let tally = Tally {
            shared,
            ..Tally::default()
        };
        let task = read_page(
            self.client.clone(),
            marker,
            offset,
            tally,
            Arc::clone(&self.pushed),
            Arc::clone(&self.rule),
        );
        let handle = self.reading.spawn(task);
        if let Some(offset) = offset {
            self.in_flight.insert(offset, handle);
        }
    }

    /// Moves the walk on with what the end of `page` says.
    fn advance(
        &mut self,
        marker: Option<&str>,
        offset: Option<u64>,
        entries: usize,
        end: &PageEnd,
    ) -> Result<(), RancherError> {
        match self.walk.advance(marker, offset, entries, end) {
            Ok(Advance::Continue) => Ok(()),
            Ok(Advance::LastAt(last)) => {
                for (_, beyond) in self.in_flight.split_off(&(last + 1)) {
                    beyond.abort();
                }
                Ok(())
            }
            Err(reason) => {
                self.reading.abort_all();
                Err(RancherError::Decode {
                    what: "listing services".into(),
                    reason,
                })
            }
        }
    }

    /// Counts `page` in the summary and returns its candidates not decided before.
    fn take_candidates(&mut self, page: Tally) -> Vec<Candidate> {
        self.summary.pages += 1;
        self.summary.listed += page.entries.saturating_sub(page.shared);
        self.summary.passed_over += page.without_launch_config;
        self.summary.unreadable += page.unreadable;
        page.candidates
            .into_iter()
            .filter(|candidate| {
                let first_time = self.decided.insert(candidate.unit.id.clone());
                if !first_time {
                    tracing::debug!(
                        service_id = %candidate.unit.id,
                        "listed twice (the environment changed during the walk)"
                    );
                }
                first_time
            })
            .collect()
    }
}

/// Reads one page and judges each of its entries as it arrives.
async fn read_page(
    client: RancherClient,
    marker: Option<String>,
    offset: Option<u64>,
    mut tally: Tally,
    pushed: Arc<ImageRef>,
    rule: Arc<MatchSettings>,
) -> PageReading {
    let asked_at = Instant::now();
    let result = client
        .list_page(marker.as_deref(), |position, entry| {
            if position < tally.entries {
                return;
            }
            tally.entries = position + 1;
            let first_time = position >= tally.shared;
            tally.judge(entry, first_time, &pushed, &rule, asked_at);
        })
        .await;
    PageReading {
        marker,
        offset,
        result,
        tally,
    }
}

impl Tally {
    /// Judges one entry; one the page before has counted (`first_time` false) is judged
    /// again, in case it is a service that moved, but not counted or logged again.
    fn judge(
        &mut self,
        entry: Result<Service, SkippedEntry>,
        first_time: bool,
        pushed: &ImageRef,
        rule: &MatchSettings,
        asked_at: Instant,
    ) {
        let service = match entry {
            Ok(service) => service,
            Err(entry) => {
                if first_time {
                    self.unreadable += 1;
                    tracing::warn!(service_id = entry.id.as_deref().unwrap_or("?"), reason = %entry.reason, "unreadable service entry passed over");
                }
                return;
            }
        };
        let plan = match matching::judge(&service, pushed, rule) {
            Verdict::NotRunning => return,
            Verdict::NoLaunchConfig => {
                if first_time {
                    self.without_launch_config += 1;
                    tracing::debug!(service_id = %service.id, kind = service.resource_type.as_deref().unwrap_or("?"), "service has no launch config, passed over");
                }
                return;
            }
            Verdict::Unreadable(reason) => {
                if first_time {
                    self.unreadable += 1;
                    tracing::warn!(service_id = %service.id, service = service.display_name(), %reason, "service with unexpected fields passed over");
                }
                return;
            }
            Verdict::OptedOut(reason) => Plan::Skip(reason),
            Verdict::Upgrade(targets) => {
                let unit = UnitRef {
                    target: TargetKind::Rancher,
                    id: service.id.clone(),
                };
                let name = service.display_name().to_owned();
                let copy = Box::new(Listed { service, targets });
                self.candidates.push(Candidate {
                    unit,
                    name,
                    plan: Plan::Deploy(Prefetched { copy, asked_at }),
                });
                return;
            }
        };
        self.candidates.push(Candidate {
            unit: UnitRef {
                target: TargetKind::Rancher,
                id: service.id.clone(),
            },
            name: service.display_name().to_owned(),
            plan,
        });
    }
}

impl Scan for Scanner {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<Vec<Candidate>>, ScanError>> {
        Box::pin(async move {
            self.next_page().await.map_err(|error| {
                if error.is_retryable() {
                    ScanError::Later(error.to_string())
                } else {
                    ScanError::Failed(error.to_string())
                }
            })
        })
    }

    fn summary(&self) -> ScanSummary {
        self.summary.clone()
    }
}
