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

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use warp::Filter;
use warp::http::{HeaderMap, Method, StatusCode};

pub const PROJECT_ID: &str = "1a5";
pub const ACCESS_KEY: &str = "0F7A2B1C3D4E5F6A7B8C";
pub const SECRET_KEY: &str = "fake-rancher-secret-key-value";

const SERVICE_TEMPLATE: &str = include_str!("../../fixtures/rancher/service.json");
const SIDEKICK_TEMPLATE: &str = include_str!("../../fixtures/rancher/sidekick.json");
const DNS_SERVICE_TEMPLATE: &str = include_str!("../../fixtures/rancher/dns-service.json");
const EXTERNAL_SERVICE_TEMPLATE: &str =
    include_str!("../../fixtures/rancher/external-service.json");

/// A service to put into the fake environment.
#[derive(Clone)]
pub struct ServiceSpec {
    document: Map<String, Value>,
    stuck: bool,
    failing: bool,
    busy: Option<(&'static str, Duration)>,
}

/// A plain `service` running `image_uuid` (which carries Rancher's `docker:` prefix).
pub fn service(name: &str, image_uuid: &str) -> ServiceSpec {
    let mut document = template(SERVICE_TEMPLATE);
    document.insert("name".into(), json!(name));
    document["launchConfig"]["imageUuid"] = json!(image_uuid);
    ServiceSpec::new(document)
}

/// A `dnsService`: no launch config at all.
pub fn dns_service(name: &str) -> ServiceSpec {
    let mut document = template(DNS_SERVICE_TEMPLATE);
    document.insert("name".into(), json!(name));
    ServiceSpec::new(document)
}

/// An `externalService`: no launch config either.
pub fn external_service(name: &str) -> ServiceSpec {
    let mut document = template(EXTERNAL_SERVICE_TEMPLATE);
    document.insert("name".into(), json!(name));
    ServiceSpec::new(document)
}

fn template(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => map,
        _ => panic!("fixture is not a JSON object"),
    }
}

impl ServiceSpec {
    fn new(document: Map<String, Value>) -> Self {
        Self {
            document,
            stuck: false,
            failing: false,
            busy: None,
        }
    }

    /// Sets a label on the primary launch config.
    pub fn label(mut self, name: &str, value: &str) -> Self {
        self.document["launchConfig"]["labels"][name] = json!(value);
        self
    }

    /// Starts the service in `state` instead of `active`.
    pub fn state(mut self, state: &str) -> Self {
        self.document.insert("state".into(), json!(state));
        self
    }

    /// Adds a sidekick running `image_uuid`.
    pub fn sidekick(mut self, name: &str, image_uuid: &str) -> Self {
        let mut sidekick = template(SIDEKICK_TEMPLATE);
        sidekick.insert("name".into(), json!(name));
        sidekick.insert("imageUuid".into(), json!(image_uuid));
        if let Some(Value::Array(sidekicks)) = self.document.get_mut("secondaryLaunchConfigs") {
            sidekicks.push(Value::Object(sidekick));
        }
        self
    }

    /// Sets a top-level field to anything, for services with unexpected shapes.
    pub fn field(mut self, name: &str, value: Value) -> Self {
        self.document.insert(name.into(), value);
        self
    }

    /// Sets a field of the primary launch config to anything.
    pub fn launch_config_field(mut self, name: &str, value: Value) -> Self {
        self.document["launchConfig"][name] = value;
        self
    }

    /// Starts in the middle of a process: `state` now, `then` after `duration`
    /// (e.g. `upgrading` → `upgraded`).
    pub fn busy(mut self, state: &str, then: &'static str, duration: Duration) -> Self {
        self.document.insert("state".into(), json!(state));
        self.document.insert("transitioning".into(), json!("yes"));
        self.document
            .insert("transitioningMessage".into(), json!("In Progress"));
        self.busy = Some((then, duration));
        self
    }

    /// Its upgrades never leave `upgrading`.
    pub fn stuck(mut self) -> Self {
        self.stuck = true;
        self
    }

    /// Its upgrades end in `upgrading` with `transitioning: error`, as when an image cannot
    /// be pulled.
    pub fn failing(mut self) -> Self {
        self.failing = true;
        self
    }
}

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
        }
    }
}

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

    pub fn is_list(&self) -> bool {
        self.method == "GET" && self.path.ends_with("/services")
    }
}

struct FakeService {
    document: Document,
    stuck: bool,
    failing: bool,
    /// The state the current process ends in, and when.
    pending: Option<(Instant, &'static str)>,
    /// Launch configs before the last upgrade, for rollback.
    previous: Option<(Value, Value)>,
}

/// A service's document, with its JSON as last served kept until it changes: a list of
/// 100,000 services then costs the fake little more than copying bytes.
struct Document {
    map: Map<String, Value>,
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
    fn edit(&mut self) -> &mut Map<String, Value> {
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
    fn rendered(&mut self, base: &str) -> Arc<Vec<u8>> {
        if let Some((rendered_for, bytes)) = &self.document.rendered
            && rendered_for == base
        {
            return Arc::clone(bytes);
        }
        let bytes = Arc::new(serde_json::to_vec(&render(self, base)).unwrap());
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

struct World {
    services: Vec<FakeService>,
    /// Indices of the services with a process under way.
    busy: Vec<usize>,
    /// Requests arrived and not yet answered (they wait out the latency).
    in_flight: usize,
    /// The most requests in flight at once so far.
    most_in_flight: usize,
    /// Indices of the services that may be mid-upgrade: they started in such a state or had
    /// an upgrade posted (only upgrades lead there).
    ever_upgrading: HashSet<usize>,
    /// Services created right after the next list request is answered.
    arriving: Vec<ServiceSpec>,
    /// The first services, gone from the listing (removed and purged).
    purged: usize,
    /// How many more of the first services are purged after the next list request.
    purging: usize,
    behaviour: Behaviour,
    failures_left: usize,
    /// The status of those failures.
    failure_status: StatusCode,
    /// Answers `422 ActionNotAvailable` given so far.
    refusals: usize,
    /// Actions to apply and then answer 504, as a proxy that lost the answer would.
    lost_answers_left: usize,
    /// The most other services found mid-upgrade when an upgrade was posted.
    most_upgrading_at_once: usize,
    /// Only POSTs fail, while `failures_left` lasts.
    failing_posts_only: bool,
    /// The next POST of this action is parked before it is applied.
    hold: Option<String>,
    /// The parked request: told whether to apply it.
    held: Option<oneshot::Sender<bool>>,
    requests: Vec<Recorded>,
    upgrade_bodies: Vec<(String, Value)>,
    versions_issued: usize,
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
        let world = Arc::new(Mutex::new(World {
            services,
            busy,
            in_flight: 0,
            most_in_flight: 0,
            ever_upgrading,
            arriving: Vec::new(),
            purged: 0,
            purging: 0,
            behaviour,
            failures_left: 0,
            failure_status: StatusCode::INTERNAL_SERVER_ERROR,
            refusals: 0,
            lost_answers_left: 0,
            most_upgrading_at_once: 0,
            failing_posts_only: false,
            hold: None,
            held: None,
            requests: Vec::new(),
            upgrade_bodies: Vec::new(),
            versions_issued: 0,
        }));
        let shared = Arc::clone(&world);
        let routes = warp::path("v1")
            .and(warp::path::tail())
            .and(warp::method())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(
                move |tail: warp::path::Tail,
                      method: Method,
                      query: String,
                      headers: HeaderMap,
                      body: warp::hyper::body::Bytes| {
                    let shared = Arc::clone(&shared);
                    async move {
                        let latency = {
                            let mut world = shared.lock().unwrap();
                            world.in_flight += 1;
                            world.most_in_flight = world.most_in_flight.max(world.in_flight);
                            world.behaviour.latency
                        };
                        if !latency.is_zero() {
                            tokio::time::sleep(latency).await;
                        }
                        shared.lock().unwrap().in_flight -= 1;
                        let parked = shared.lock().unwrap().park(&method, &query);
                        if let Some(parked) = parked
                            && !parked.await.unwrap_or(false)
                        {
                            let (status, body) = as_bytes(error(
                                StatusCode::BAD_GATEWAY,
                                "BadGateway",
                                Some("dropped"),
                                None,
                            ));
                            return json_reply(status, body);
                        }
                        let mut world = shared.lock().unwrap();
                        let (status, body) =
                            world.handle(&method, tail.as_str(), &query, &headers, &body);
                        json_reply(status, body)
                    }
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(
            warp::serve(routes)
                .incoming(listener)
                .graceful(async {
                    let _ = stopped.await;
                })
                .run(),
        );
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
        render(&world.services[index], &base)
    }

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

    /// The next `count` actions are applied, then answered 504 as if a proxy lost the answer.
    pub fn lose_next_answers(&self, count: usize) {
        self.world.lock().unwrap().lost_answers_left = count;
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

    /// Changes a launch config field, as a user editing the service in Rancher would.
    pub fn edit_launch_config(&self, id: &str, field: &str, value: Value) {
        let mut world = self.world.lock().unwrap();
        let index = world.index_of(id).expect("no such service");
        world.services[index].document.edit()["launchConfig"][field] = value;
    }

    /// The next `count` requests are answered 500.
    pub fn fail_next(&self, count: usize) {
        self.fail_next_with(count, StatusCode::INTERNAL_SERVER_ERROR);
    }

    /// The next `count` requests are answered `status` (a 5xx or 409 Conflict).
    pub fn fail_next_with(&self, count: usize, status: StatusCode) {
        let mut world = self.world.lock().unwrap();
        world.failures_left = count;
        world.failure_status = status;
        world.failing_posts_only = false;
    }

    /// The next `count` actions (POSTs) are answered `status`; reads are served.
    pub fn fail_next_posts(&self, count: usize, status: StatusCode) {
        let mut world = self.world.lock().unwrap();
        world.failures_left = count;
        world.failure_status = status;
        world.failing_posts_only = true;
    }

    /// The next POST of `action` is parked when it arrives, before it is applied, until
    /// [`FakeRancher::release`].
    pub fn hold_next(&self, action: &str) {
        self.world.lock().unwrap().hold = Some(action.to_owned());
    }

    /// Whether a held request has arrived and is parked.
    pub fn is_holding(&self) -> bool {
        self.world.lock().unwrap().held.is_some()
    }

    /// Lets the parked request go on (`apply`) or answers it 502 without applying it.
    pub fn release(&self, apply: bool) {
        if let Some(held) = self.world.lock().unwrap().held.take() {
            let _ = held.send(apply);
        }
    }

    /// How many `422 ActionNotAvailable` answers were given.
    pub fn refusals(&self) -> usize {
        self.world.lock().unwrap().refusals
    }

    /// How many upgrades each service received.
    pub fn upgrades_per_service(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for (id, _) in self.upgrade_bodies() {
            *counts.entry(id).or_insert(0) += 1;
        }
        counts
    }

    /// Changes how long finishing an upgrade takes from now on.
    pub fn set_finish_time(&self, time: Duration) {
        self.world.lock().unwrap().behaviour.finish_time = time;
    }

    /// Changes how long upgrades take from now on.
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

    pub fn set_upgrade_time(&self, time: Duration) {
        self.world.lock().unwrap().behaviour.upgrade_time = time;
    }
}

fn error(
    status: StatusCode,
    code: &str,
    message: Option<&str>,
    field_name: Option<&str>,
) -> (StatusCode, Value) {
    let body = json!({
        "id": format!("{:08x}-0000-4000-8000-000000000000", status.as_u16()),
        "type": "error", "links": {}, "actions": {},
        "status": status.as_u16(), "code": code, "message": message,
        "detail": null, "fieldName": field_name,
    });
    (status, body)
}

fn not_available() -> (StatusCode, Value) {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "ActionNotAvailable",
        None,
        Some("action"),
    )
}

/// The actions Rancher 1.6 offers in each service state (process start states).
fn actions_for(state: &str) -> &'static [&'static str] {
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

const KNOWN_ACTIONS: [&str; 14] = [
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
const UPGRADE_STATES: [&str; 3] = ["upgrading", "upgraded", "finishing-upgrade"];

/// Stands for the services in a collection's envelope until they are spliced in.
const DATA_PLACEHOLDER: &str = "<services>";

fn json_reply(status: StatusCode, body: Vec<u8>) -> warp::reply::Response {
    let mut response = warp::reply::Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    response
}

fn as_bytes((status, body): (StatusCode, Value)) -> (StatusCode, Vec<u8>) {
    (status, serde_json::to_vec(&body).unwrap())
}

fn render(service: &FakeService, base: &str) -> Value {
    let mut document = service.document.map.clone();
    let id = document["id"].as_str().unwrap_or_default().to_owned();
    let kind = document["type"]
        .as_str()
        .unwrap_or("service")
        .to_ascii_lowercase();
    let self_link = format!("{base}/v1/projects/{PROJECT_ID}/{kind}s/{id}");
    document.insert(
        "links".into(),
        json!({ "self": self_link, "instances": format!("{self_link}/instances") }),
    );
    let state = document["state"].as_str().unwrap_or_default().to_owned();
    let actions: Map<String, Value> = actions_for(&state)
        .iter()
        .map(|action| {
            (
                action.to_string(),
                json!(format!("{self_link}/?action={action}")),
            )
        })
        .collect();
    document.insert("actions".into(), Value::Object(actions));
    Value::Object(document)
}

impl World {
    /// Parks the request if it is the POST being held.
    fn park(&mut self, method: &Method, query: &str) -> Option<oneshot::Receiver<bool>> {
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

    fn index_of(&self, id: &str) -> Option<usize> {
        let index = id
            .strip_prefix("1s")?
            .parse::<usize>()
            .ok()?
            .checked_sub(1)?;
        (index < self.services.len()).then_some(index)
    }

    fn advance(&mut self) {
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

    fn start_process(
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

    fn handle(
        &mut self,
        method: &Method,
        tail: &str,
        query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> (StatusCode, Vec<u8>) {
        self.requests.push(Recorded {
            method: method.to_string(),
            path: format!("/v1/{tail}"),
            query: query.to_owned(),
            at: Instant::now(),
        });
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{ACCESS_KEY}:{SECRET_KEY}"))
        );
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
            return as_bytes(error(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                Some("Unauthorized"),
                None,
            ));
        }
        if self.failures_left > 0 && (!self.failing_posts_only || method == Method::POST) {
            self.failures_left -= 1;
            let status = self.failure_status;
            let code = if status == StatusCode::CONFLICT {
                "Conflict"
            } else {
                "InternalServerError"
            };
            return as_bytes(error(status, code, Some("simulated failure"), None));
        }
        self.advance();
        let host = headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost")
            .to_owned();
        let base = format!("http://{host}");
        let project_prefix = format!("projects/{PROJECT_ID}/");
        let rest = tail.strip_prefix(&project_prefix).unwrap_or(tail);
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let answer = match (method.as_str(), segments.as_slice()) {
            ("GET", ["services"]) => {
                let page = self.list(&base, tail, query);
                self.purged =
                    (self.purged + std::mem::take(&mut self.purging)).min(self.services.len());
                for spec in std::mem::take(&mut self.arriving) {
                    let index = self.services.len();
                    let service = FakeService::new(index, spec);
                    if service.pending.is_some() {
                        self.busy.push(index);
                    }
                    self.services.push(service);
                }
                return (StatusCode::OK, page);
            }
            ("GET", ["services", id]) => match self.index_of(id) {
                Some(index) => (StatusCode::OK, render(&self.services[index], &base)),
                None => error(StatusCode::NOT_FOUND, "Not Found", Some("Not Found"), None),
            },
            ("POST", ["services", id]) => {
                let action = url::form_urlencoded::parse(query.as_bytes())
                    .find(|(k, _)| k == "action")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                let answer = match self.index_of(id) {
                    Some(index) => self.action(index, &action, body, &base),
                    None => error(StatusCode::NOT_FOUND, "Not Found", Some("Not Found"), None),
                };
                if answer.1["code"] == "ActionNotAvailable" {
                    self.refusals += 1;
                }
                if answer.0 == StatusCode::ACCEPTED && self.lost_answers_left > 0 {
                    self.lost_answers_left -= 1;
                    return as_bytes(error(
                        StatusCode::GATEWAY_TIMEOUT,
                        "GatewayTimeout",
                        Some("the answer was lost"),
                        None,
                    ));
                }
                answer
            }
            _ => error(StatusCode::NOT_FOUND, "Not Found", Some("Not Found"), None),
        };
        as_bytes(answer)
    }

    /// A page of the collection, spliced from each service's cached JSON.
    fn list(&mut self, base: &str, tail: &str, query: &str) -> Vec<u8> {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let max = self.behaviour.max_limit;
        let limit = match pairs
            .iter()
            .find(|(k, _)| k == "limit")
            .map(|(_, v)| v.parse::<i64>())
        {
            Some(Ok(n)) if n <= 0 => max,
            Some(Ok(n)) => (n as usize).min(max),
            _ => 100,
        };
        let offset = pairs
            .iter()
            .find(|(k, _)| k == "marker")
            .and_then(|(_, v)| match v.split_at_checked(1)? {
                ("m", offset) => offset.parse::<usize>().ok(),
                ("x", offset) => usize::from_str_radix(offset, 16).ok(),
                _ => None,
            })
            .filter(|_| !self.behaviour.ignore_markers)
            .unwrap_or(0);
        let listed = self.services.len() - self.purged;
        let end = (offset + limit).min(listed);
        let offset = offset.min(end);
        let data: Vec<Arc<Vec<u8>>> = self.services[self.purged..][offset..end]
            .iter_mut()
            .map(|s| s.rendered(base))
            .collect();
        let partial = offset + limit < listed;
        let next = partial.then(|| {
            let mut serializer = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in pairs.iter().filter(|(k, _)| k != "marker") {
                serializer.append_pair(k, v);
            }
            let marker = if self.behaviour.opaque_markers {
                format!("x{:x}", offset + limit)
            } else {
                format!("m{}", offset + limit)
            };
            serializer.append_pair("marker", &marker);
            format!("{base}/v1/{tail}?{}", serializer.finish())
        });
        let envelope = json!({
            "type": "collection",
            "resourceType": "service",
            "links": { "self": format!("{base}/v1/{tail}") },
            "createTypes": {
                "dnsService": format!("{base}/v1/projects/{PROJECT_ID}/dnsservices"),
                "externalService": format!("{base}/v1/projects/{PROJECT_ID}/externalservices"),
                "loadBalancerService": format!("{base}/v1/projects/{PROJECT_ID}/loadbalancerservices"),
                "service": format!("{base}/v1/projects/{PROJECT_ID}/services"),
            },
            "actions": {},
            "data": DATA_PLACEHOLDER,
            "sortLinks": { "name": format!("{base}/v1/{tail}?sort=name") },
            "pagination": { "first": null, "previous": null, "next": next, "limit": limit, "total": null, "partial": partial },
            "sort": null,
            "filters": { "name": null, "state": null, "kind": null },
            "createDefaults": {},
        });
        let envelope = serde_json::to_vec(&envelope).unwrap();
        let placeholder = format!("\"{DATA_PLACEHOLDER}\"");
        let at = envelope
            .windows(placeholder.len())
            .position(|window| window == placeholder.as_bytes())
            .unwrap();
        let mut page =
            Vec::with_capacity(envelope.len() + data.iter().map(|d| d.len() + 1).sum::<usize>());
        page.extend_from_slice(&envelope[..at]);
        page.push(b'[');
        for (position, service) in data.iter().enumerate() {
            if position > 0 {
                page.push(b',');
            }
            page.extend_from_slice(service);
        }
        page.push(b']');
        page.extend_from_slice(&envelope[at + placeholder.len()..]);
        page
    }

    fn action(
        &mut self,
        index: usize,
        action: &str,
        body: &[u8],
        base: &str,
    ) -> (StatusCode, Value) {
        if !KNOWN_ACTIONS.contains(&action) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "InvalidAction",
                None,
                Some("action"),
            );
        }
        let state = self.services[index].document["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !actions_for(&state).contains(&action) {
            return not_available();
        }
        let finish_time = self.behaviour.finish_time;
        match action {
            "upgrade" => {
                let body: Value = match serde_json::from_slice(body) {
                    Ok(body) => body,
                    Err(_) => {
                        return error(StatusCode::BAD_REQUEST, "InvalidBodyContent", None, None);
                    }
                };
                if let Err(reply) = self.upgrade(index, &body) {
                    return reply;
                }
                self.ever_upgrading.insert(index);
                let upgrading_elsewhere = self
                    .ever_upgrading
                    .iter()
                    .filter(|&&other| {
                        other != index
                            && UPGRADE_STATES.contains(
                                &self.services[other].document["state"]
                                    .as_str()
                                    .unwrap_or_default(),
                            )
                    })
                    .count();
                self.most_upgrading_at_once = self.most_upgrading_at_once.max(upgrading_elsewhere);
                let upgrade_time = self.behaviour.upgrade_time;
                self.start_process(index, "upgrading", "upgraded", upgrade_time);
            }
            "finishupgrade" => {
                self.start_process(index, "finishing-upgrade", "active", finish_time)
            }
            "rollback" => {
                if let Some((primary, secondaries)) = self.services[index].previous.take() {
                    let document = self.services[index].document.edit();
                    document.insert("launchConfig".into(), primary);
                    document.insert("secondaryLaunchConfigs".into(), secondaries);
                }
                self.services[index].stuck = false;
                self.services[index].failing = false;
                self.start_process(index, "rolling-back", "active", finish_time);
            }
            "cancelupgrade" => {
                self.services[index].stuck = false;
                self.start_process(index, "canceling-upgrade", "canceled-upgrade", finish_time);
            }
            _ => return not_available(),
        }
        (StatusCode::ACCEPTED, render(&self.services[index], base))
    }

    fn upgrade(&mut self, index: usize, body: &Value) -> Result<(), (StatusCode, Value)> {
        let strategy = &body["inServiceStrategy"];
        if strategy.is_null() && body["toServiceStrategy"].is_null() {
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "MissingRequired",
                None,
                Some("Upgrade strategy needs to be set"),
            ));
        }
        let primary = strategy.get("launchConfig").filter(|v| !v.is_null());
        let secondaries = strategy
            .get("secondaryLaunchConfigs")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty());
        if primary.is_none() && secondaries.is_none() {
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "InvalidOption",
                None,
                Some(
                    "LaunchConfig/secondaryLaunchConfigs need to be specified for inService strategy",
                ),
            ));
        }
        let known: HashSet<String> = self.services[index].document["secondaryLaunchConfigs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect();
        for sidekick in secondaries.into_iter().flatten() {
            if !sidekick["name"]
                .as_str()
                .is_some_and(|name| known.contains(name))
            {
                return Err(error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "InvalidOption",
                    None,
                    Some("secondaryLaunchConfigs"),
                ));
            }
        }
        if strategy["startFirst"] == true && self.services[index].document["retainIp"] == true {
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "InvalidOption",
                None,
                Some("StartFirst option can't be used for service with retainIp field set"),
            ));
        }
        let id = self.services[index].document["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.upgrade_bodies.push((id, body.clone()));
        let before = (
            self.services[index].document["launchConfig"].clone(),
            self.services[index].document["secondaryLaunchConfigs"].clone(),
        );
        if let Some(primary) = primary {
            let config = self.issue_version(primary);
            self.services[index]
                .document
                .edit()
                .insert("launchConfig".into(), config);
        }
        for sidekick in secondaries.into_iter().flatten() {
            let config = self.issue_version(sidekick);
            if let Some(Value::Array(current)) = self.services[index]
                .document
                .edit()
                .get_mut("secondaryLaunchConfigs")
            {
                for slot in current
                    .iter_mut()
                    .filter(|slot| slot["name"] == sidekick["name"])
                {
                    *slot = config.clone();
                }
            }
        }
        let document = &self.services[index].document;
        let record = json!({ "inServiceStrategy": {
                "batchSize": strategy["batchSize"], "intervalMillis": strategy["intervalMillis"],
                "startFirst": strategy["startFirst"], "launchConfig": document["launchConfig"],
                "previousLaunchConfig": before.0, "previousSecondaryLaunchConfigs": before.1,
                "secondaryLaunchConfigs": document["secondaryLaunchConfigs"],
            }, "toServiceStrategy": null });
        self.services[index]
            .document
            .edit()
            .insert("upgrade".into(), record);
        self.services[index].previous = Some(before);
        Ok(())
    }

    /// The config as sent, minus what clients may not set, with a fresh `version`.
    fn issue_version(&mut self, sent: &Value) -> Value {
        self.versions_issued += 1;
        let mut config = sent.clone();
        if let Some(map) = config.as_object_mut() {
            map.insert(
                "version".into(),
                json!(format!(
                    "{:08x}-7e57-4000-8000-{:012x}",
                    self.versions_issued, self.versions_issued
                )),
            );
        }
        config
    }
}
