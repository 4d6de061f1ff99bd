//! The failures a test switches on: answers 5xx or 409 for a while, actions applied but
//! their answers lost, and a request parked on its way until the test lets it go.

use serde_json::Value;
use tokio::sync::oneshot;
use warp::http::{Method, StatusCode};

use super::FakeRancher;
use super::errors::error;

/// The failures switched on, and the request held on its way.
pub(super) struct Faults {
    /// Requests still to be answered `failure_status`.
    failures_left: usize,
    /// The status of those failures.
    failure_status: StatusCode,
    /// Only POSTs fail, while `failures_left` lasts.
    failing_posts_only: bool,
    /// Actions to apply and then answer 504, as a proxy that lost the answer would.
    lost_answers_left: usize,
    /// The next POST of this action is parked before it is applied.
    hold: Option<String>,
    /// The parked request: told whether to apply it.
    held: Option<oneshot::Sender<bool>>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            failures_left: 0,
            failure_status: StatusCode::INTERNAL_SERVER_ERROR,
            failing_posts_only: false,
            lost_answers_left: 0,
            hold: None,
            held: None,
        }
    }
}

impl Faults {
    /// The failure to answer instead of serving a `method` request, while one is due.
    pub(super) fn injected_failure(&mut self, method: &Method) -> Option<(StatusCode, Value)> {
        if self.failures_left > 0 && (!self.failing_posts_only || method == Method::POST) {
            self.failures_left -= 1;
            let status = self.failure_status;
            let code = if status == StatusCode::CONFLICT {
                "Conflict"
            } else {
                "InternalServerError"
            };
            return Some(error(status, code, Some("simulated failure"), None));
        }
        None
    }

    /// Whether the answer to an action just applied is to be lost (counts it).
    pub(super) fn loses_answer(&mut self) -> bool {
        if self.lost_answers_left > 0 {
            self.lost_answers_left -= 1;
            return true;
        }
        false
    }

    /// Parks the request if it is the POST being held.
    pub(super) fn park(&mut self, method: &Method, query: &str) -> Option<oneshot::Receiver<bool>> {
        let action = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "action")
            .map(|(_, v)| v.into_owned());
        if method != Method::POST || action.is_none() || self.hold != action {
            return None;
        }
        self.hold = None;
        let (sender, receiver) = oneshot::channel();
        self.held = Some(sender);
        Some(receiver)
    }
}

impl FakeRancher {
    /// The next `count` actions are applied, then answered 504 as if a proxy lost the answer.
    pub fn lose_next_answers(&self, count: usize) {
        self.world.lock().unwrap().faults.lost_answers_left = count;
    }

    /// The next `count` requests are answered 500.
    pub fn fail_next(&self, count: usize) {
        self.fail_next_with(count, StatusCode::INTERNAL_SERVER_ERROR);
    }

    /// The next `count` requests are answered `status` (a 5xx or 409 Conflict).
    pub fn fail_next_with(&self, count: usize, status: StatusCode) {
        let mut world = self.world.lock().unwrap();
        let faults = &mut world.faults;
        faults.failures_left = count;
        faults.failure_status = status;
        faults.failing_posts_only = false;
    }

    /// The next `count` actions (POSTs) are answered `status`; reads are served.
    pub fn fail_next_posts(&self, count: usize, status: StatusCode) {
        let mut world = self.world.lock().unwrap();
        let faults = &mut world.faults;
        faults.failures_left = count;
        faults.failure_status = status;
        faults.failing_posts_only = true;
    }

    /// The next POST of `action` is parked when it arrives, before it is applied, until
    /// [`FakeRancher::release`].
    pub fn hold_next(&self, action: &str) {
        self.world.lock().unwrap().faults.hold = Some(action.to_owned());
    }

    /// Whether a held request has arrived and is parked.
    pub fn is_holding(&self) -> bool {
        self.world.lock().unwrap().faults.held.is_some()
    }

    /// Waits until the held request has arrived and is parked.
    pub async fn wait_until_holding(&self) {
        for _ in 0..2000 {
            if self.is_holding() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("the held request never arrived");
    }

    /// Lets the parked request go on (`apply`) or answers it 502 without applying it.
    pub fn release(&self, apply: bool) {
        if let Some(held) = self.world.lock().unwrap().faults.held.take() {
            let _ = held.send(apply);
        }
    }
}
