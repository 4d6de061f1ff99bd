//! Which pages of the service collection to ask for, and what each page's end means: the
//! state machine of a walk, free of any I/O so that it can be tested on its own.
//!
//! The first page tells the page size the server uses: its `next` marker is the offset of
//! the second page (`m3000`, or `m1000` from a server that clamps lower). Since markers are
//! offsets, the following pages are then asked for by offset, several at a time, each
//! starting a little before the previous one ended (see [`OVERLAP`]). The walk ends at the
//! first page that has no `next` (or no entries); pages beyond it are abandoned. A server
//! whose markers are not offsets is walked one page after the other.

use std::collections::BTreeSet;

use super::{PAGE_SIZE, PageEnd};

/// Entries each page after the first shares with the one before (at most a tenth of a page).
/// A service removed during the walk moves every later one back by a place; pages that
/// overlap by this much lose nothing to as many removals before they are read. Entries read
/// twice are decided once.
pub(super) const OVERLAP: u64 = 32;

/// A page to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PageRequest {
    /// Its marker (`None` for the first page).
    pub marker: Option<String>,
    /// Its offset, when pages are asked for by offset.
    pub offset: Option<u64>,
    /// Its first entries, which the page before has read already.
    pub shared: usize,
}

/// Where the walk stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Walk {
    /// The first page has not been asked for yet.
    Start,
    /// The first page is being read.
    FirstPage,
    /// Pages of `stride` entries are asked for by offset, `step` apart (a little less than
    /// `stride`); `last` is the offset of the last page once one has said so.
    ByOffset {
        stride: u64,
        step: u64,
        next: u64,
        last: Option<u64>,
    },
    /// Each page names the next one (`None` after the last); the markers followed so far,
    /// so that a server that sends the walk round in circles is refused.
    ByMarker {
        next: Option<String>,
        seen: BTreeSet<String>,
    },
}

/// What the end of a page means for the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Advance {
    /// Go on.
    Continue,
    /// This page at `offset` is the last: pages asked for beyond it are to be abandoned.
    LastAt(u64),
}

impl Walk {
    /// The pages to ask for now, with `reading` pages being read, at most `window` at a
    /// time.
    pub fn requests(&mut self, reading: usize, window: usize) -> Vec<PageRequest> {
        let mut wanted = Vec::new();
        match self {
            Walk::Start => {
                *self = Walk::FirstPage;
                wanted.push(PageRequest {
                    marker: None,
                    offset: None,
                    shared: 0,
                });
            }
            Walk::FirstPage => {}
            Walk::ByOffset {
                stride,
                step,
                next,
                last,
            } => {
                let shared = (*stride - *step) as usize;
                while last.is_none() && reading + wanted.len() < window {
                    wanted.push(PageRequest {
                        marker: Some(format!("m{next}")),
                        offset: Some(*next),
                        shared,
                    });
                    *next += *step;
                }
            }
            Walk::ByMarker { next, .. } => {
                if reading == 0
                    && let Some(marker) = next.take()
                {
                    wanted.push(PageRequest {
                        marker: Some(marker),
                        offset: None,
                        shared: 0,
                    });
                }
            }
        }
        wanted
    }

    /// Whether a page at `offset` lies beyond the last page: what it says is to be ignored.
    pub fn is_beyond_the_end(&self, offset: u64) -> bool {
        matches!(self, Walk::ByOffset { last: Some(last), .. } if offset > *last)
    }

    /// Moves the walk on with what the end of the page asked for with `marker` at `offset`
    /// says, that page having had `entries` entries. An error says why the server cannot
    /// be walked.
    pub fn advance(
        &mut self,
        marker: Option<&str>,
        offset: Option<u64>,
        entries: usize,
        end: &PageEnd,
    ) -> Result<Advance, String> {
        let is_last = end.next_marker.is_none() || entries == 0;
        match self {
            Walk::Start | Walk::FirstPage => {
                *self = match &end.next_marker {
                    _ if is_last => Walk::ByMarker {
                        next: None,
                        seen: BTreeSet::new(),
                    },
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
                            seen: BTreeSet::new(),
                        },
                    },
                    None => Walk::ByMarker {
                        next: None,
                        seen: BTreeSet::new(),
                    },
                };
                Ok(Advance::Continue)
            }
            Walk::ByOffset { stride, last, .. } => {
                let offset = offset.unwrap_or_default();
                if is_last {
                    if last.is_none_or(|known| offset < known) {
                        *last = Some(offset);
                    }
                    return Ok(Advance::LastAt(offset));
                }
                // A server that ignored the marker, or changed its page size, would
                // otherwise be walked forever or with gaps.
                let expected = format!("m{}", offset + *stride);
                if end.next_marker.as_deref() != Some(expected.as_str()) {
                    return Err(format!(
                        "the page at m{offset} points to {} instead of {expected}: the server \
                         does not page by offset as Rancher does (is a proxy in front of \
                         Rancher dropping the marker parameter?)",
                        end.next_marker.as_deref().unwrap_or_default()
                    ));
                }
                Ok(Advance::Continue)
            }
            Walk::ByMarker { next, seen } => {
                if let Some(marker) = marker {
                    seen.insert(marker.to_owned());
                }
                if !is_last
                    && let Some(following) = &end.next_marker
                    && seen.contains(following)
                {
                    return Err(format!(
                        "pagination.next points back to a page read already ({following})"
                    ));
                }
                *next = if is_last {
                    None
                } else {
                    end.next_marker.clone()
                };
                Ok(Advance::Continue)
            }
        }
    }
}

/// The offset a marker stands for: `m3000` is 3000.
fn offset_of(marker: &str) -> Option<u64> {
    marker.strip_prefix('m')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(next: Option<&str>) -> PageEnd {
        PageEnd {
            next_marker: next.map(str::to_owned),
            limit: None,
        }
    }

    fn markers(requests: &[PageRequest]) -> Vec<&str> {
        requests
            .iter()
            .map(|r| r.marker.as_deref().unwrap_or("first"))
            .collect()
    }

    #[test]
    fn offsets_from_the_second_page_on_overlapping_and_within_the_window() {
        let mut walk = Walk::Start;
        assert_eq!(markers(&walk.requests(0, 3)), ["first"]);
        assert!(walk.requests(1, 3).is_empty(), "one first page at a time");
        assert_eq!(
            walk.advance(None, None, 1000, &end(Some("m1000"))),
            Ok(Advance::Continue)
        );
        // A page of 1000 overlaps the next by 32.
        let requests = walk.requests(0, 3);
        assert_eq!(markers(&requests), ["m968", "m1936", "m2904"]);
        assert!(requests.iter().all(|r| r.shared == 32));
        assert!(walk.requests(3, 3).is_empty(), "the window is full");
        assert_eq!(
            walk.advance(Some("m968"), Some(968), 1000, &end(Some("m1968"))),
            Ok(Advance::Continue)
        );
        assert_eq!(markers(&walk.requests(2, 3)), ["m3872"]);
    }

    #[test]
    fn the_first_page_without_next_ends_the_walk_and_later_pages_are_abandoned() {
        let mut walk = Walk::Start;
        walk.requests(0, 4);
        walk.advance(None, None, 100, &end(Some("m100"))).unwrap();
        walk.requests(0, 4);
        assert_eq!(
            walk.advance(Some("m180"), Some(180), 40, &end(None)),
            Ok(Advance::LastAt(180))
        );
        assert!(walk.is_beyond_the_end(270));
        assert!(!walk.is_beyond_the_end(90));
        assert!(walk.requests(0, 4).is_empty(), "nothing past the last page");
        // An earlier page that turns out to be empty moves the end back.
        assert_eq!(
            walk.advance(Some("m90"), Some(90), 0, &end(Some("m190"))),
            Ok(Advance::LastAt(90))
        );
        assert!(walk.is_beyond_the_end(180));
    }

    #[test]
    fn a_server_that_ignores_the_marker_is_refused_instead_of_walked_forever() {
        let mut walk = Walk::Start;
        walk.requests(0, 2);
        walk.advance(None, None, 100, &end(Some("m100"))).unwrap();
        walk.requests(0, 2);
        let error = walk
            .advance(Some("m90"), Some(90), 100, &end(Some("m100")))
            .unwrap_err();
        assert!(error.contains("marker parameter"), "{error}");
    }

    #[test]
    fn markers_that_are_not_offsets_are_followed_one_after_the_other() {
        let mut walk = Walk::Start;
        walk.requests(0, 8);
        walk.advance(None, None, 100, &end(Some("opaque-2")))
            .unwrap();
        assert_eq!(markers(&walk.requests(0, 8)), ["opaque-2"]);
        assert!(walk.requests(1, 8).is_empty(), "one page at a time");
        walk.advance(Some("opaque-2"), None, 100, &end(Some("opaque-3")))
            .unwrap();
        assert_eq!(markers(&walk.requests(0, 8)), ["opaque-3"]);
        let error = walk
            .advance(Some("opaque-3"), None, 100, &end(Some("opaque-3")))
            .unwrap_err();
        assert!(error.contains("read already"), "{error}");
        let mut short = Walk::Start;
        short.requests(0, 8);
        // A marker that is an offset but not the end of this page is not trusted as one.
        short.advance(None, None, 100, &end(Some("m50"))).unwrap();
        assert_eq!(markers(&short.requests(0, 8)), ["m50"]);
        assert!(short.requests(1, 8).is_empty());
    }

    #[test]
    fn a_server_that_sends_the_walk_round_in_circles_is_refused() {
        let mut walk = Walk::Start;
        walk.requests(0, 8);
        walk.advance(None, None, 100, &end(Some("a"))).unwrap();
        walk.requests(0, 8);
        walk.advance(Some("a"), None, 100, &end(Some("b"))).unwrap();
        walk.requests(0, 8);
        let error = walk
            .advance(Some("b"), None, 100, &end(Some("a")))
            .unwrap_err();
        assert!(error.contains("read already (a)"), "{error}");
    }

    #[test]
    fn a_single_page_ends_the_walk() {
        let mut walk = Walk::Start;
        walk.requests(0, 8);
        walk.advance(None, None, 12, &end(None)).unwrap();
        assert!(walk.requests(0, 8).is_empty());
    }
}
