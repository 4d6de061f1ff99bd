//! Rancher's JSON documents, decoded tolerantly: a service with unexpected fields is reported
//! and skipped, it never makes the whole page unreadable.

use std::collections::HashMap;

use super::collection::CollectionSplitter;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// One page of the service collection, decoded whole (the client reads pages entry by
/// entry instead, see [`RancherClient::list_page`](super::RancherClient::list_page)).
#[derive(Debug)]
pub struct ServicePage {
    /// The services of this page that could be decoded, in Rancher's order.
    pub services: Vec<Service>,
    /// Entries that could not be decoded as a service, with the reason.
    pub skipped: Vec<SkippedEntry>,
    /// Where the next page starts, and the page size used.
    pub end: PageEnd,
}

/// What the end of a page says about the pages after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageEnd {
    /// The `marker` of the next page (`m<offset>`), or `None` on the last page.
    pub next_marker: Option<String>,
    /// The page size the server actually used (it clamps what was asked for).
    pub limit: Option<u64>,
}

/// A collection entry that is not a readable service.
#[derive(Debug, Clone)]
pub struct SkippedEntry {
    /// The entry's `id`, when it has one.
    pub id: Option<String>,
    /// Why it was skipped.
    pub reason: String,
}

#[derive(Deserialize)]
struct Pagination {
    next: Option<String>,
    limit: Option<u64>,
}

impl ServicePage {
    /// Decodes a whole collection document. Fails only when the envelope is unreadable.
    pub fn decode(body: &[u8]) -> Result<Self, String> {
        let mut splitter = CollectionSplitter::new();
        let mut services = Vec::new();
        let mut skipped = Vec::new();
        splitter.feed(body, &mut |entry| match decode_entry(entry) {
            Ok(service) => services.push(service),
            Err(entry) => skipped.push(entry),
        })?;
        let end = PageEnd::decode(splitter.finish()?.as_deref())?;
        Ok(Self {
            services,
            skipped,
            end,
        })
    }
}

/// Decodes one entry of a collection: a service, or the reason it is passed over.
pub fn decode_entry(entry: &[u8]) -> Result<Service, SkippedEntry> {
    Service::decode(entry).map_err(|reason| SkippedEntry {
        id: entry_id(entry),
        reason,
    })
}

impl PageEnd {
    /// Reads the raw `pagination` value of a collection (absent or `null`: a last page).
    pub fn decode(pagination: Option<&[u8]>) -> Result<Self, String> {
        let Some(raw) = pagination else {
            return Ok(Self::default());
        };
        let pagination: Option<Pagination> =
            serde_json::from_slice(raw).map_err(|err| format!("unreadable pagination: {err}"))?;
        let Some(pagination) = pagination else {
            return Ok(Self::default());
        };
        let next_marker = match pagination.next {
            None => None,
            Some(link) => Some(marker_of(&link)?),
        };
        Ok(Self {
            next_marker,
            limit: pagination.limit,
        })
    }
}

/// Rancher's `next` link is the request URL with `marker` replaced; the marker is all we need,
/// and the link's host (which Rancher derives from proxy headers) is never followed.
fn marker_of(link: &str) -> Result<String, String> {
    let url =
        url::Url::parse(link).map_err(|err| format!("pagination.next is not a URL: {err}"))?;
    url.query_pairs()
        .find(|(name, _)| name == "marker")
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| "pagination.next has no marker parameter".to_owned())
}

fn entry_id(entry: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: Option<Value>,
    }
    let id = serde_json::from_slice::<IdOnly>(entry).ok()?.id?;
    Some(match id {
        Value::String(id) => id,
        other => other.to_string(),
    })
}

/// A Rancher service, reduced to what autoredeploy reads, with its launch configs kept raw.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Obfuscated id such as `1s6`.
    pub id: String,
    /// Service name as shown in the UI.
    #[serde(default)]
    pub name: Option<String>,
    /// `service`, `loadBalancerService`, `dnsService`, …
    #[serde(rename = "type", default)]
    pub resource_type: Option<String>,
    /// Lifecycle state: `active`, `upgrading`, `upgraded`, …
    #[serde(default)]
    pub state: String,
    /// `yes` while a process runs, `error` when it failed, `no` otherwise.
    #[serde(default)]
    pub transitioning: Option<String>,
    /// Rancher's progress or error text while transitioning.
    #[serde(default)]
    pub transitioning_message: Option<String>,
    /// The actions the current state allows (only their presence matters).
    #[serde(default)]
    pub actions: ServiceActions,
    /// The primary container spec, exactly as Rancher sent it.
    #[serde(default)]
    pub launch_config: Option<Box<RawValue>>,
    /// The sidekicks' container specs, exactly as Rancher sent them.
    #[serde(default)]
    pub secondary_launch_configs: Option<Vec<Box<RawValue>>>,
}

/// Which of the upgrade-related actions Rancher offers for a service right now.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceActions {
    /// Present in `active`, `inactive` and a few other settled states.
    #[serde(default, deserialize_with = "present")]
    pub upgrade: bool,
    /// Present in `upgraded`.
    #[serde(default, deserialize_with = "present")]
    pub finishupgrade: bool,
    /// Present in `upgrading`, `upgraded` and `canceled-upgrade`.
    #[serde(default, deserialize_with = "present")]
    pub rollback: bool,
    /// Present in `upgrading` and `finishing-upgrade`.
    #[serde(default, deserialize_with = "present")]
    pub cancelupgrade: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    let value = Option::<serde::de::IgnoredAny>::deserialize(deserializer)?;
    Ok(value.is_some())
}

impl Service {
    /// Decodes one service resource.
    pub fn decode(body: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(body).map_err(|err| format!("not a readable service: {err}"))
    }

    /// The name if Rancher gave one, the id otherwise.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// Whether Rancher is in the middle of a process on this service.
    pub fn is_transitioning(&self) -> bool {
        self.transitioning.as_deref() == Some("yes")
    }

    /// Whether Rancher's last process on this service failed.
    pub fn transition_failed(&self) -> bool {
        self.transitioning.as_deref() == Some("error")
    }
}

/// The parts of a launch config that matching reads: image and labels.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LaunchConfigView {
    /// `docker:<reference>`.
    #[serde(default)]
    pub image_uuid: Option<String>,
    /// Container labels, read only for a launch config that runs the pushed image.
    #[serde(default)]
    labels: Option<Box<RawValue>>,
    /// The sidekick's name (absent on the primary launch config).
    #[serde(default)]
    pub name: Option<String>,
    /// Rancher's version of the launch config; every upgrade gives it a new one.
    #[serde(default)]
    pub version: Option<String>,
}

impl LaunchConfigView {
    /// Reads the image, name and (still raw) labels out of a raw launch config.
    pub fn read(raw: &RawValue) -> Result<Self, String> {
        serde_json::from_str(raw.get()).map_err(|err| format!("unreadable launch config: {err}"))
    }

    /// The value of label `name`, if the launch config has it.
    pub fn label(&self, name: &str) -> Result<Option<Value>, String> {
        let Some(raw) = &self.labels else {
            return Ok(None);
        };
        let mut labels: HashMap<String, Value> = serde_json::from_str(raw.get())
            .map_err(|err| format!("unreadable launch config labels: {err}"))?;
        Ok(labels.remove(name))
    }
}

/// Body of `POST …?action=upgrade` for an in-service upgrade.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeRequest {
    /// The in-service strategy; the only one autoredeploy uses.
    pub in_service_strategy: InServiceStrategy,
    /// Always `null`: the old "upgrade into another service" mode.
    pub to_service_strategy: Option<()>,
}

impl UpgradeRequest {
    /// An in-service upgrade of the given launch configs.
    pub fn in_service(
        launch_config: Option<Map<String, Value>>,
        secondary_launch_configs: Vec<Map<String, Value>>,
        batch_size: u32,
        interval_millis: u32,
        start_first: bool,
    ) -> Self {
        Self {
            in_service_strategy: InServiceStrategy {
                launch_config,
                secondary_launch_configs,
                batch_size,
                interval_millis,
                start_first,
            },
            to_service_strategy: None,
        }
    }
}

/// Rancher's `inServiceUpgradeStrategy` input.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InServiceStrategy {
    /// The whole new primary launch config, or `None` when only sidekicks are upgraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_config: Option<Map<String, Value>>,
    /// The whole new launch config of every sidekick being upgraded, each with its `name`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secondary_launch_configs: Vec<Map<String, Value>>,
    /// Containers replaced at a time.
    pub batch_size: u32,
    /// Pause between batches.
    pub interval_millis: u32,
    /// Start new containers before stopping old ones.
    pub start_first: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_odd_entry_does_not_spoil_the_page() {
        let body = json!({
            "type": "collection",
            "data": [
                { "id": "1s1", "type": "service", "state": "active", "launchConfig": { "imageUuid": "docker:a" } },
                { "id": "1s2", "type": "service", "state": ["not", "a", "string"] },
                { "type": "service" },
                { "id": "1s4", "type": "dnsService", "state": "active", "launchConfig": null }
            ],
            "pagination": { "next": "http://elsewhere.example/v1/services?limit=4&marker=m4", "limit": 4, "partial": true }
        });
        let page = ServicePage::decode(body.to_string().as_bytes()).unwrap();
        let ids: Vec<&str> = page.services.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["1s1", "1s4"]);
        let skipped: Vec<Option<&str>> = page.skipped.iter().map(|s| s.id.as_deref()).collect();
        assert_eq!(skipped, [Some("1s2"), None]);
        assert_eq!(page.end.next_marker.as_deref(), Some("m4"));
        assert_eq!(page.end.limit, Some(4));
        assert!(page.services[1].launch_config.is_none());
    }

    #[test]
    fn a_broken_envelope_or_next_link_is_an_error() {
        assert!(ServicePage::decode(b"{\"data\": 5}").is_err());
        let body = json!({ "data": [], "pagination": { "next": "http://x/v1/services?limit=4" } });
        assert!(
            ServicePage::decode(body.to_string().as_bytes())
                .unwrap_err()
                .contains("marker")
        );
    }
}
