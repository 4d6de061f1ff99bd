//! The deliveries accepted lately, by the id their sender gives each (`X-GitHub-Delivery`):
//! a redelivery of one is not a new push.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use crate::domain::SourceKind;

/// Deliveries remembered; older ones are forgotten first.
const REMEMBERED: usize = 4096;

/// One delivery: its sender and its id.
type DeliveryId = (SourceKind, String);

/// The ids, and the order they came in.
#[derive(Debug, Default)]
struct Seen {
    ids: HashSet<DeliveryId>,
    order: VecDeque<DeliveryId>,
}

/// The ids of the last [`REMEMBERED`] accepted deliveries.
#[derive(Debug, Default)]
pub(super) struct RecentDeliveries {
    seen: Mutex<Seen>,
}

impl RecentDeliveries {
    /// Whether the delivery `id` of `source` was accepted lately.
    pub fn seen(&self, source: SourceKind, id: &str) -> bool {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        seen.ids.contains(&(source, id.to_owned()))
    }

    /// Remembers that the delivery `id` of `source` was accepted.
    pub fn remember(&self, source: SourceKind, id: &str) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.ids.insert((source, id.to_owned())) {
            seen.order.push_back((source, id.to_owned()));
        }
        while seen.order.len() > REMEMBERED {
            if let Some(oldest) = seen.order.pop_front() {
                seen.ids.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_remembered_per_source_until_many_others_came() {
        let recent = RecentDeliveries::default();
        recent.remember(SourceKind::GitHub, "first");
        assert!(recent.seen(SourceKind::GitHub, "first"));
        assert!(!recent.seen(SourceKind::Gitea, "first"));
        for n in 0..REMEMBERED {
            recent.remember(SourceKind::GitHub, &n.to_string());
        }
        assert!(!recent.seen(SourceKind::GitHub, "first"));
        assert!(recent.seen(SourceKind::GitHub, "1"));
    }
}
