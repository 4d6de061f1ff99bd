//! A fake Rancher v1 API server that behaves like the real one where autoredeploy depends on
//! it (see the project's reference notes on the Cattle API):
//!
//! * collections page by offset markers `m<offset>`, `limit` defaults to 100 and is clamped
//!   to the server's maximum (3000 on Rancher ≥ 1.3), `next` is the request URL with only
//!   `marker` replaced and `null` on the last page;
//! * a service's `actions` are exactly those its state allows, and any other action answers
//!   `422 ActionNotAvailable` with the real error shape;
//! * an upgrade *replaces* the launch configs it names (keys it lacks are gone), drops the
//!   client's `version` and assigns a new one;
//! * states move in time: `upgrading → upgraded`, `finishing-upgrade → active`, …;
//! * switches make it answer 500 for a while or leave chosen services stuck in `upgrading`.
//!
//! Its parts: `spec` (the services a test asks for), `store` (the environment the server
//! holds), `routes` (the HTTP front), `collection` (pages of services), `states` and
//! `actions` (what a service may do and what it becomes), `faults` (the failures a test
//! switches on), `errors` (Rancher's error documents) and `records` (what the server saw).

mod actions;
mod collection;
mod errors;
mod faults;
pub mod records;
mod routes;
pub mod spec;
mod states;
mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

pub use spec::{ServiceSpec, dns_service, external_service, service};
use store::World;

pub const PROJECT_ID: &str = "1a5";
pub const ACCESS_KEY: &str = "0F7A2B1C3D4E5F6A7B8C";
pub const SECRET_KEY: &str = "fake-rancher-secret-key-value";

/// How the server behaves.
#[derive(Clone)]
pub struct Behaviour {
    /// Largest page served (3000 on Rancher ≥ 1.3, 1000 on older servers).
    pub max_limit: usize,
    /// Time a service spends in `upgrading`.
    pub upgrade_time: Duration,
    /// Time a service spends in `finishing-upgrade`, `rolling-back`, `canceling-upgrade`.
    pub finish_time: Duration,
    /// Time every answer takes, as the network and Rancher's database would.
    pub latency: Duration,
    /// Markers that do not look like offsets (`x<hex offset>`), as another server's
    /// pagination might: a client must follow them one page after the other.
    pub opaque_markers: bool,
    /// The `marker` parameter is ignored: every page is the first one, as from a broken
    /// proxy that drops query parameters.
    pub ignore_markers: bool,
    /// Collection filters (`state=…`, `state_ne=…`) are ignored, as by a server or proxy
    /// that does not know them: the whole collection is listed.
    pub ignore_filters: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            max_limit: 3000,
            upgrade_time: Duration::from_millis(150),
            finish_time: Duration::from_millis(50),
            latency: Duration::ZERO,
            opaque_markers: false,
            ignore_markers: false,
            ignore_filters: false,
        }
    }
}

/// The running fake server.
pub struct FakeRancher {
    pub address: SocketAddr,
    world: Arc<Mutex<World>>,
    _stop: oneshot::Sender<()>,
}

impl FakeRancher {
    pub async fn start(services: Vec<ServiceSpec>) -> Self {
        Self::start_with(services, Behaviour::default()).await
    }

    pub async fn start_with(services: Vec<ServiceSpec>, behaviour: Behaviour) -> Self {
        let world = Arc::new(Mutex::new(World::new(services, behaviour)));
        let (address, stop) = routes::serve(Arc::clone(&world)).await;
        Self {
            address,
            world,
            _stop: stop,
        }
    }

    /// What autoredeploy's `RANCHER_HOST` should be.
    pub fn host(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The service as the API would show it now.
    pub fn service(&self, id: &str) -> Value {
        let mut world = self.world.lock().unwrap();
        world.advance();
        let base = format!("http://{}", self.address);
        let index = world.index_of(id).expect("no such service");
        collection::render(&world.services[index], &base)
    }

    /// Changes a launch config field, as a user editing the service in Rancher would.
    pub fn edit_launch_config(&self, id: &str, field: &str, value: Value) {
        let mut world = self.world.lock().unwrap();
        let index = world.index_of(id).expect("no such service");
        world.services[index].document.edit()["launchConfig"][field] = value;
    }

    /// Removes a service, as a user deleting it in Rancher would: from now on it is
    /// `removed`, and still listed and readable in that state, as Cattle keeps it.
    pub fn remove(&self, id: &str) {
        let mut world = self.world.lock().unwrap();
        let index = world.index_of(id).expect("no such service");
        world.busy.retain(|&busy| busy != index);
        world.services[index].pending = None;
        let document = world.services[index].document.edit();
        document["state"] = Value::from("removed");
        document["transitioning"] = Value::from("no");
    }

    /// Changes how long finishing an upgrade takes from now on.
    pub fn set_finish_time(&self, time: Duration) {
        self.world.lock().unwrap().behaviour.finish_time = time;
    }

    /// Changes how long upgrades take from now on.
    pub fn set_upgrade_time(&self, time: Duration) {
        self.world.lock().unwrap().behaviour.upgrade_time = time;
    }

    /// Creates `services` right after the next list request has been answered, as if
    /// someone added them during the walk.
    pub fn add_after_next_list(&self, services: Vec<ServiceSpec>) {
        self.world.lock().unwrap().arriving = services;
    }

    /// Purges the first `count` services right after the next list request has been
    /// answered, as if someone removed them during the walk: every later service moves
    /// back by `count` places in the listing.
    pub fn purge_first_after_next_list(&self, count: usize) {
        self.world.lock().unwrap().purging = count;
    }
}
