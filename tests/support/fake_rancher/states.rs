//! How a service's state moves: the actions each state offers, and the processes that take
//! it from a transitional state to the next one as time passes.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::store::World;

/// The actions Rancher 1.6 offers in each service state (process start states).
pub(super) fn actions_for(state: &str) -> &'static [&'static str] {
    match state {
        "active" => &[
            "update",
            "restart",
            "remove",
            "setservicelinks",
            "removeservicelink",
            "upgrade",
            "addservicelink",
            "deactivate",
        ],
        "inactive" => &[
            "update",
            "remove",
            "setservicelinks",
            "removeservicelink",
            "activate",
            "upgrade",
            "addservicelink",
        ],
        "upgraded" => &[
            "remove",
            "setservicelinks",
            "removeservicelink",
            "rollback",
            "addservicelink",
            "finishupgrade",
        ],
        "upgrading" => &[
            "update",
            "remove",
            "setservicelinks",
            "removeservicelink",
            "cancelupgrade",
            "rollback",
            "addservicelink",
        ],
        "finishing-upgrade" => &[
            "remove",
            "setservicelinks",
            "removeservicelink",
            "cancelupgrade",
            "addservicelink",
        ],
        "canceled-upgrade" => &[
            "remove",
            "setservicelinks",
            "removeservicelink",
            "continueupgrade",
            "rollback",
            "addservicelink",
        ],
        _ => &[
            "remove",
            "setservicelinks",
            "removeservicelink",
            "addservicelink",
        ],
    }
}

pub(super) const KNOWN_ACTIONS: [&str; 14] = [
    "update",
    "restart",
    "remove",
    "setservicelinks",
    "removeservicelink",
    "upgrade",
    "addservicelink",
    "deactivate",
    "activate",
    "rollback",
    "finishupgrade",
    "cancelupgrade",
    "continueupgrade",
    "cancelrollback",
];

/// The states of a service between an upgrade and its end.
pub(super) const UPGRADE_STATES: [&str; 3] = ["upgrading", "upgraded", "finishing-upgrade"];

impl World {
    /// Moves every service whose process has ended on to the state it ends in (or, for a
    /// failing upgrade, into error; a stuck one stays in `upgrading`).
    pub(super) fn advance(&mut self) {
        let now = Instant::now();
        let services = &mut self.services;
        self.busy.retain(|&index| services[index].pending.is_some());
        for &index in &self.busy {
            let service = &mut services[index];
            if let Some((at, to)) = service.pending {
                let upgrading = service.document["state"] == "upgrading";
                if now >= at && upgrading && service.failing {
                    service
                        .document
                        .edit()
                        .insert("transitioning".into(), json!("error"));
                    service.document.edit().insert(
                        "transitioningMessage".into(),
                        json!("Error response from daemon: pull access denied"),
                    );
                    service.pending = None;
                    continue;
                }
                let stuck = service.stuck && upgrading;
                if now >= at && !stuck {
                    let document = service.document.edit();
                    document.insert("state".into(), json!(to));
                    document.insert("transitioning".into(), json!("no"));
                    document.insert("transitioningMessage".into(), Value::Null);
                    service.pending = None;
                }
            }
        }
    }

    /// Puts the service in `transitional` now, and in `then` once `after` has passed.
    pub(super) fn start_process(
        &mut self,
        index: usize,
        transitional: &str,
        then: &'static str,
        after: Duration,
    ) {
        let service = &mut self.services[index];
        let document = service.document.edit();
        document.insert("state".into(), json!(transitional));
        document.insert("transitioning".into(), json!("yes"));
        document.insert("transitioningMessage".into(), json!("In Progress"));
        service.pending = Some((Instant::now() + after, then));
        self.busy.push(index);
    }
}
