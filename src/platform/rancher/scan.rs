//! Walks the environment's services page by page and decides, per service, what a push means.
//!
//! Pages are judged as they arrive and dropped: memory does not grow with the number of
//! services, and upgrades can start while later pages are still being read.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use super::matching::{self, Verdict};
use super::{Listed, PAGE_SIZE, PageEnd, RancherClient, RancherError, Service, SkippedEntry};
use crate::config::MatchSettings;
use crate::domain::{ImageRef, TargetKind, UnitRef};
use crate::platform::{BoxFuture, Candidate, Plan, Prefetched, Scan, ScanError, ScanSummary};

/// One walk through the environment for one pushed image.
///
/// The first page tells the page size the server uses: its `next` marker is the offset of
/// the second page (`m3000`, or `m1000` from a server that clamps lower). Since markers are
/// offsets, the following pages are then read concurrently, at most `list_window` at a time,
/// each judged entry by entry as it arrives. The walk ends at the first page that has no
/// `next` (or no entries); pages beyond it that are still being read are abandoned. A
/// server whose markers are not offsets is walked one page after the other.
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

/// Where the walk stands.
#[derive(Debug)]
enum Walk {
    /// The first page has not been asked for yet.
    Start,
    /// The first page is being read.
    FirstPage,
    /// Pages of `stride` entries are asked for by offset, `step` apart (a little less than
    /// `stride`, see [`OVERLAP`]); `last` is the offset of the last page once one has said so.
    ByOffset {
        stride: u64,
        step: u64,
        next: u64,
        last: Option<u64>,
    },
    /// Each page names the next one; `None` after the last.
    ByMarker { next: Option<String> },
}

/// Entries each page after the first shares with the one before (at most a tenth of a page).
/// A service removed during the walk moves every later one back by a place; pages that
/// overlap by this much lose nothing to as many removals before they are read. Entries read
/// twice are decided once.
const OVERLAP: u64 = 32;

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
                if let Walk::ByOffset {
                    last: Some(last), ..
                } = self.walk
                    && offset > last
                {
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
        // Marker, offset, and entries shared with the page before.
        let mut wanted: Vec<(Option<String>, Option<u64>, usize)> = Vec::new();
        match &mut self.walk {
            Walk::Start => {
                self.walk = Walk::FirstPage;
                wanted.push((None, None, 0));
            }
            Walk::FirstPage => {}
            Walk::ByOffset {
                stride,
                step,
                next,
                last,
            } => {
                let shared = (*stride - *step) as usize;
                while last.is_none() && self.in_flight.len() + wanted.len() < self.window {
                    wanted.push((Some(format!("m{next}")), Some(*next), shared));
                    *next += *step;
                }
            }
            Walk::ByMarker { next } => {
                if self.reading.is_empty()
                    && let Some(marker) = next.take()
                {
                    wanted.push((Some(marker), None, 0));
                }
            }
        }
        for (marker, offset, shared) in wanted {
            self.read(marker, offset, shared);
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
        let is_last = end.next_marker.is_none() || entries == 0;
        match &mut self.walk {
            Walk::Start | Walk::FirstPage => {
                self.walk = match &end.next_marker {
                    _ if is_last => Walk::ByMarker { next: None },
                    // Offsets only when the marker is the offset just past this page, as
                    // Rancher's are.
                    Some(marker) => match offset_of(marker) {
                        Some(stride)
                            if stride > 0
                                && stride <= u64::from(PAGE_SIZE)
                                && stride == entries as u64 =>
                        {
                            let step = stride - OVERLAP.min(stride / 10);
                            Walk::ByOffset {
                                stride,
                                step,
                                next: step,
                                last: None,
                            }
                        }
                        _ => Walk::ByMarker {
                            next: Some(marker.clone()),
                        },
                    },
                    None => Walk::ByMarker { next: None },
                };
            }
            Walk::ByOffset { stride, last, .. } => {
                let offset = offset.unwrap_or_default();
                if is_last {
                    if last.is_none_or(|known| offset < known) {
                        *last = Some(offset);
                        for (_, beyond) in self.in_flight.split_off(&(offset + 1)) {
                            beyond.abort();
                        }
                    }
                } else {
                    // A server that ignored the marker, or changed its page size, would
                    // otherwise be walked forever or with gaps.
                    let expected = format!("m{}", offset + *stride);
                    if end.next_marker.as_deref() != Some(expected.as_str()) {
                        self.reading.abort_all();
                        return Err(RancherError::Decode {
                            what: "listing services".into(),
                            reason: format!(
                                "the page at m{offset} points to {} instead of {expected}: the \
                                 server does not page by offset as Rancher does (is a proxy in \
                                 front of Rancher dropping the marker parameter?)",
                                end.next_marker.as_deref().unwrap_or_default()
                            ),
                        });
                    }
                }
            }
            Walk::ByMarker { next } => {
                if !is_last && end.next_marker.as_deref() == marker {
                    return Err(RancherError::Decode {
                        what: "listing services".into(),
                        reason: format!(
                            "pagination.next points to the same page again ({})",
                            marker.unwrap_or_default()
                        ),
                    });
                }
                *next = if is_last {
                    None
                } else {
                    end.next_marker.clone()
                };
            }
        }
        Ok(())
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

/// The offset a marker stands for: `m3000` is 3000.
fn offset_of(marker: &str) -> Option<u64> {
    marker.strip_prefix('m')?.parse().ok()
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
