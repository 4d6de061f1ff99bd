//! The environment the fake server holds: its services, in listing order, and everything
//! the other parts keep between requests.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value, json};

use super::faults::Faults;
use super::records::Recorded;
use super::spec::ServiceSpec;
use super::states::UPGRADE_STATES;
use super::{Behaviour, collection};

pub(super) struct FakeService {
    pub(super) document: Document,
    pub(super) stuck: bool,
    pub(super) failing: bool,
    /// The state the current process ends in, and when.
    pub(super) pending: Option<(Instant, &'static str)>,
    /// Launch configs before the last upgrade, for rollback.
    pub(super) previous: Option<(Value, Value)>,
}

/// A service's document, with its JSON as last served kept until it changes: a list of
/// 100,000 services then costs the fake little more than copying bytes.
pub(super) struct Document {
    pub(super) map: Map<String, Value>,
    /// The base URL it was rendered for, and the rendering.
    rendered: Option<(String, Arc<Vec<u8>>)>,
}

impl Document {
    fn new(map: Map<String, Value>) -> Self {
        Self {
            map,
            rendered: None,
        }
    }

    /// The document, to change it.
    pub(super) fn edit(&mut self) -> &mut Map<String, Value> {
        self.rendered = None;
        &mut self.map
    }
}

impl std::ops::Deref for Document {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl FakeService {
    /// The service as served, in JSON.
    pub(super) fn rendered(&mut self, base: &str) -> Arc<Vec<u8>> {
        if let Some((rendered_for, bytes)) = &self.document.rendered
            && rendered_for == base
        {
            return Arc::clone(bytes);
        }
        let bytes = Arc::new(serde_json::to_vec(&collection::render(self, base)).unwrap());
        self.document.rendered = Some((base.to_owned(), Arc::clone(&bytes)));
        bytes
    }

    /// The service made from `spec`, at position `index` (its id is `1s<index + 1>`).
    fn new(index: usize, spec: ServiceSpec) -> Self {
        let mut document = spec.document;
        document.insert("id".into(), json!(format!("1s{}", index + 1)));
        let pending = spec
            .busy
            .map(|(then, after)| (Instant::now() + after, then));
        Self {
            document: Document::new(document),
            stuck: spec.stuck,
            failing: spec.failing,
            pending,
            previous: None,
        }
    }
}

pub(super) struct World {
    pub(super) services: Vec<FakeService>,
    /// Indices of the services with a process under way.
    pub(super) busy: Vec<usize>,
    /// Requests arrived and not yet answered (they wait out the latency).
    pub(super) in_flight: usize,
    /// The most requests in flight at once so far.
    pub(super) most_in_flight: usize,
    /// Indices of the services that may be mid-upgrade: they started in such a state or had
    /// an upgrade posted (only upgrades lead there).
    pub(super) ever_upgrading: HashSet<usize>,
    /// Services created right after the next list request is answered.
    pub(super) arriving: Vec<ServiceSpec>,
    /// The first services, gone from the listing (removed and purged).
    pub(super) purged: usize,
    /// How many more of the first services are purged after the next list request.
    pub(super) purging: usize,
    pub(super) behaviour: Behaviour,
    /// The failures switched on, and the request held on its way.
    pub(super) faults: Faults,
    /// Answers `422 ActionNotAvailable` given so far.
    pub(super) refusals: usize,
    /// The most other services found mid-upgrade when an upgrade was posted.
    pub(super) most_upgrading_at_once: usize,
    pub(super) requests: Vec<Recorded>,
    pub(super) upgrade_bodies: Vec<(String, Value)>,
    pub(super) versions_issued: usize,
}

impl World {
    /// The environment holding `services`, in this order.
    pub(super) fn new(services: Vec<ServiceSpec>, behaviour: Behaviour) -> Self {
        let services: Vec<FakeService> = services
            .into_iter()
            .enumerate()
            .map(|(index, spec)| FakeService::new(index, spec))
            .collect();
        let busy = (0..services.len())
            .filter(|&index| services[index].pending.is_some())
            .collect();
        let ever_upgrading = (0..services.len())
            .filter(|&index| {
                UPGRADE_STATES.contains(
                    &services[index].document["state"]
                        .as_str()
                        .unwrap_or_default(),
                )
            })
            .collect();
        Self {
            services,
            busy,
            in_flight: 0,
            most_in_flight: 0,
            ever_upgrading,
            arriving: Vec::new(),
            purged: 0,
            purging: 0,
            behaviour,
            faults: Faults::default(),
            refusals: 0,
            most_upgrading_at_once: 0,
            requests: Vec::new(),
            upgrade_bodies: Vec::new(),
            versions_issued: 0,
        }
    }

    /// The position of the service with Rancher id `id` (`1s<position + 1>`).
    pub(super) fn index_of(&self, id: &str) -> Option<usize> {
        let index = id
            .strip_prefix("1s")?
            .parse::<usize>()
            .ok()?
            .checked_sub(1)?;
        (index < self.services.len()).then_some(index)
    }

    /// What happens to the environment once a list request has been answered: the purges
    /// and arrivals a test asked for.
    pub(super) fn after_list(&mut self) {
        self.purged = (self.purged + std::mem::take(&mut self.purging)).min(self.services.len());
        for spec in std::mem::take(&mut self.arriving) {
            let index = self.services.len();
            let service = FakeService::new(index, spec);
            if service.pending.is_some() {
                self.busy.push(index);
            }
            self.services.push(service);
        }
    }
}
