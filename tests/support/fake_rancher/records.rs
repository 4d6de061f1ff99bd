//! What the fake server saw: every request, every upgrade body, and the peaks and counts the
//! tests check.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::FakeRancher;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    /// When it was answered (after the injected latency).
    pub at: Instant,
}

impl Recorded {
    pub fn action(&self) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == "action")
            .map(|(_, v)| v.into_owned())
    }

    /// A request for the whole collection, page by page (a scan).
    pub fn is_list(&self) -> bool {
        self.method == "GET" && self.path.ends_with("/services") && !self.is_filtered()
    }

    /// A request for the collection narrowed by a filter on the state (a poll of waiting
    /// services).
    pub fn is_poll(&self) -> bool {
        self.method == "GET" && self.path.ends_with("/services") && self.is_filtered()
    }

    fn is_filtered(&self) -> bool {
        url::form_urlencoded::parse(self.query.as_bytes()).any(|(k, _)| k.starts_with("state"))
    }
}

impl FakeRancher {
    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.world.lock().unwrap().requests.clone()
    }

    /// Every upgrade body accepted, with the service id.
    pub fn upgrade_bodies(&self) -> Vec<(String, Value)> {
        self.world.lock().unwrap().upgrade_bodies.clone()
    }

    /// Ids of the services posted an action, in order.
    pub fn actions_posted(&self, action: &str) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.action().as_deref() == Some(action))
            .map(|r| {
                r.path
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    /// The most requests that were in flight at once (counted while they wait out the
    /// latency).
    pub fn most_in_flight(&self) -> usize {
        self.world.lock().unwrap().most_in_flight
    }

    /// The most services that were mid-upgrade, besides the one concerned, when an upgrade
    /// was posted.
    pub fn most_upgrading_at_once(&self) -> usize {
        self.world.lock().unwrap().most_upgrading_at_once
    }

    /// Waits until some upgrade has been accepted.
    pub async fn wait_for_upgrade_of_any(&self) {
        for _ in 0..2000 {
            if !self.upgrade_bodies().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("no upgrade was posted");
    }

    /// How many `422 ActionNotAvailable` answers were given.
    pub fn refusals(&self) -> usize {
        self.world.lock().unwrap().refusals
    }

    /// How many upgrades each service received.
    pub fn upgrades_per_service(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for (id, _) in self.upgrade_bodies() {
            *counts.entry(id).or_insert(0) += 1;
        }
        counts
    }
}
