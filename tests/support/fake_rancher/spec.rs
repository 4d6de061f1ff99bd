//! What a test asks the fake environment to hold: [`ServiceSpec`]s built from the recorded
//! documents in `fixtures/rancher`, with the switches that make a service misbehave.

use std::time::Duration;

use serde_json::{Map, Value, json};

const SERVICE_TEMPLATE: &str = include_str!("../../../fixtures/rancher/service.json");
const SIDEKICK_TEMPLATE: &str = include_str!("../../../fixtures/rancher/sidekick.json");
const DNS_SERVICE_TEMPLATE: &str = include_str!("../../../fixtures/rancher/dns-service.json");
const EXTERNAL_SERVICE_TEMPLATE: &str =
    include_str!("../../../fixtures/rancher/external-service.json");

/// A service to put into the fake environment.
#[derive(Clone)]
pub struct ServiceSpec {
    /// The service's document, without its id (given by its position).
    pub(super) document: Map<String, Value>,
    /// Its upgrades never leave `upgrading`.
    pub(super) stuck: bool,
    /// Its upgrades end in error.
    pub(super) failing: bool,
    /// The state its current process ends in, and after how long.
    pub(super) busy: Option<(&'static str, Duration)>,
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
