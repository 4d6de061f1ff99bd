//! The service collection as Rancher pages it: `limit` defaulting to 100 and clamped to the
//! server's maximum, offset markers (or opaque ones, or ignored ones, as the behaviour says),
//! `next` as the request URL with only `marker` replaced, and each service rendered with the
//! links and actions of its state. Collection filters work as Cattle's do: `field` or
//! `field_modifier` (`eq`, `ne`) on `id`, `name`, `kind` and `state`; repeated parameters of
//! one field and modifier are AND-ed; a field given with two modifiers keeps the last one
//! (Cattle keys its conditions by field); unknown parameters are ignored.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::PROJECT_ID;
use super::states::actions_for;
use super::store::{FakeService, World};

/// Stands for the services in a collection's envelope until they are spliced in.
const DATA_PLACEHOLDER: &str = "<services>";

impl World {
    /// A page of the collection, spliced from each service's cached JSON.
    pub(super) fn list(&mut self, base: &str, tail: &str, query: &str) -> Vec<u8> {
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
        let filters = if self.behaviour.ignore_filters {
            Filters::default()
        } else {
            Filters::of(&pairs)
        };
        let matching: Vec<usize> = (self.purged..self.services.len())
            .filter(|&index| filters.admit(&self.services[index].document.map))
            .collect();
        let listed = matching.len();
        let end = (offset + limit).min(listed);
        let offset = offset.min(end);
        let data: Vec<Arc<Vec<u8>>> = matching[offset..end]
            .iter()
            .map(|&index| self.services[index].rendered(base))
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
            "filters": filters.shown(),
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
}

/// The fields a collection of services can be filtered on here.
const FILTERED_FIELDS: [&str; 4] = ["id", "name", "kind", "state"];

/// The filters of one request: per field, one modifier and the values it is AND-ed over.
#[derive(Default)]
struct Filters(std::collections::BTreeMap<String, (String, Vec<String>)>);

impl Filters {
    fn of(pairs: &[(String, String)]) -> Self {
        let mut filters = Self::default();
        for (name, value) in pairs {
            let (field, modifier) = match name.rsplit_once('_') {
                Some((field, modifier)) if ["eq", "ne"].contains(&modifier) => (field, modifier),
                _ => (name.as_str(), "eq"),
            };
            if !FILTERED_FIELDS.contains(&field) {
                continue;
            }
            let entry = filters
                .0
                .entry(field.to_owned())
                .or_insert_with(|| (modifier.to_owned(), Vec::new()));
            if entry.0 != modifier {
                *entry = (modifier.to_owned(), Vec::new());
            }
            entry.1.push(value.clone());
        }
        filters
    }

    /// Whether a service document passes every filter.
    fn admit(&self, document: &Map<String, Value>) -> bool {
        self.0.iter().all(|(field, (modifier, values))| {
            let actual = match field.as_str() {
                "kind" => document.get("type"),
                other => document.get(other),
            }
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase();
            values.iter().all(|value| {
                let equal = actual == value.to_ascii_lowercase();
                if modifier == "ne" { !equal } else { equal }
            })
        })
    }

    /// The `filters` member of the answer: every field, `null` where no filter applies.
    fn shown(&self) -> Value {
        let shown: Map<String, Value> = FILTERED_FIELDS
            .iter()
            .map(|field| {
                let applied = self.0.get(*field).map(|(modifier, values)| {
                    Value::Array(
                        values
                            .iter()
                            .map(|value| json!({ "modifier": modifier, "value": value }))
                            .collect(),
                    )
                });
                (field.to_string(), applied.unwrap_or(Value::Null))
            })
            .collect();
        Value::Object(shown)
    }
}

/// The service as the API shows it, with its links and the actions its state offers.
pub(super) fn render(service: &FakeService, base: &str) -> Value {
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
