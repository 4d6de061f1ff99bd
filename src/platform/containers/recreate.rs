//! The new container's `create` body, made from the old container's inspect.
//!
//! The inspect's `Config` merges what the old *image* set with what the container's
//! creator set. Values that equal the old image's (`Env` entries, `Cmd`, `Entrypoint`,
//! `Labels`, `ExposedPorts`, `Volumes`, `WorkingDir`, `User`, `Healthcheck` fields) are
//! left out, so the new image's defaults take effect; everything else is sent back as it
//! was, including fields this code does not know. `HostConfig` is kept whole, with the old
//! container's anonymous volumes mounted again by name. Networks are rebuilt from
//! `NetworkSettings.Networks`, with their aliases and static addresses but without what
//! the engine generated.

use serde_json::{Map, Value, json};

use crate::platform::engine::ApiVersion;

/// The compose label holding the image a compose-made container runs: compose recreates
/// the container on its next `up` when it differs from the image's id.
pub(super) const COMPOSE_IMAGE_LABEL: &str = "com.docker.compose.image";

/// Networks in which the engine refuses aliases.
const NETWORKS_WITHOUT_ALIASES: [&str; 3] = ["bridge", "host", "none"];

/// What to send to make the new container.
#[derive(Debug)]
pub(super) struct NewContainer {
    /// The body of `POST /containers/create`.
    pub body: Value,
    /// Networks to connect after the create (engines before API 1.44 take one at create),
    /// each with its endpoint settings.
    pub later_networks: Vec<(String, Value)>,
}

/// The create body for a container like `container` (an inspect) running `reference`,
/// whose old image's inspect is `old_image`; `new_image_id` is the image `reference` names
/// now.
pub(super) fn new_container(
    container: &Value,
    old_image: &Value,
    reference: &str,
    new_image_id: &str,
    version: ApiVersion,
) -> Result<NewContainer, String> {
    let id = text(container, "Id").ok_or("the container's inspect has no Id")?;
    let short_id = &id[..id.len().min(12)];
    let mut config = object(container, "Config").ok_or("the container's inspect has no Config")?;
    let image_config = object(old_image, "Config").unwrap_or_default();
    without_image_defaults(&mut config, &image_config);
    let in_another_namespace = container
        .pointer("/HostConfig/NetworkMode")
        .and_then(Value::as_str)
        .is_some_and(|mode| mode.starts_with("container:"));
    // In another container's namespace, the host name is that container's: the engine
    // refuses one of its own.
    if in_another_namespace || config.get("Hostname").and_then(Value::as_str) == Some(short_id) {
        config.remove("Hostname");
    }
    if in_another_namespace {
        config.remove("Domainname");
    }
    config.insert("Image".into(), Value::String(reference.to_owned()));
    if let Some(Value::Object(labels)) = config.get_mut("Labels")
        && labels.contains_key(COMPOSE_IMAGE_LABEL)
    {
        labels.insert(
            COMPOSE_IMAGE_LABEL.into(),
            Value::String(new_image_id.to_owned()),
        );
    }

    let mut host_config = object(container, "HostConfig").unwrap_or_default();
    remount_anonymous_volumes(container, &mut host_config);
    rewrite_links(&mut host_config);

    let network_mode = host_config
        .get("NetworkMode")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut endpoints = endpoints(container, short_id, &network_mode);
    let mut later_networks = Vec::new();
    if version < ApiVersion::MANY_NETWORKS_AT_CREATE && endpoints.len() > 1 {
        // The network the container was created in goes first, as `docker run` does.
        let first = endpoints
            .iter()
            .position(|(name, _)| *name == network_mode)
            .unwrap_or(0);
        let kept = endpoints.remove(first);
        later_networks = std::mem::replace(&mut endpoints, vec![kept]);
    }

    let mut body = config;
    body.insert("HostConfig".into(), Value::Object(host_config));
    if !endpoints.is_empty() {
        body.insert(
            "NetworkingConfig".into(),
            json!({ "EndpointsConfig": endpoints.into_iter().collect::<Map<_, _>>() }),
        );
    }
    Ok(NewContainer {
        body: Value::Object(body),
        later_networks,
    })
}

/// Leaves out of `config` what it merely took from the old image's `image` config.
fn without_image_defaults(config: &mut Map<String, Value>, image: &Map<String, Value>) {
    let same = |config: &Map<String, Value>, key: &str| {
        config
            .get(key)
            .is_some_and(|value| image.get(key) == Some(value))
    };
    for key in ["WorkingDir", "User"] {
        if same(config, key) {
            config.remove(key);
        }
    }
    // `Cmd` goes with the image's only when `Entrypoint` did: a `Cmd` given for an
    // entrypoint of one's own is one's own too.
    let entrypoint_inherited = same(config, "Entrypoint") || is_empty(config.get("Entrypoint"));
    if same(config, "Entrypoint") {
        config.remove("Entrypoint");
    }
    if entrypoint_inherited && same(config, "Cmd") {
        config.remove("Cmd");
    }
    if let (Some(Value::Array(env)), Some(Value::Array(image_env))) =
        (config.get_mut("Env"), image.get("Env"))
    {
        env.retain(|entry| !image_env.contains(entry));
    }
    for key in ["Labels", "ExposedPorts", "Volumes"] {
        if let (Some(Value::Object(own)), Some(Value::Object(inherited))) =
            (config.get_mut(key), image.get(key))
        {
            own.retain(|name, value| inherited.get(name) != Some(value));
        }
    }
    if let (Some(Value::Object(check)), Some(Value::Object(inherited))) =
        (config.get_mut("Healthcheck"), image.get("Healthcheck"))
    {
        // A field left out (or zero) means "as the image says".
        check.retain(|field, value| inherited.get(field) != Some(value));
        if check.is_empty() {
            config.remove("Healthcheck");
        }
    }
}

fn is_empty(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Array(items)) => items.is_empty(),
        Some(_) => false,
    }
}

/// Adds to `HostConfig.Mounts` each volume of the container that no bind or mount of its
/// `HostConfig` names: the anonymous ones (of the image's `VOLUME`s or `-v /path`), which
/// would otherwise be replaced by new, empty ones.
fn remount_anonymous_volumes(container: &Value, host_config: &mut Map<String, Value>) {
    let mut declared: Vec<String> = Vec::new();
    if let Some(Value::Array(binds)) = host_config.get("Binds") {
        for bind in binds.iter().filter_map(Value::as_str) {
            if let Some(target) = bind.split(':').nth(1) {
                declared.push(target.to_owned());
            }
        }
    }
    if let Some(Value::Array(mounts)) = host_config.get("Mounts") {
        declared.extend(
            mounts
                .iter()
                .filter_map(|mount| text(mount, "Target"))
                .map(str::to_owned),
        );
    }
    let Some(Value::Array(mounts)) = container.get("Mounts") else {
        return;
    };
    let anonymous: Vec<Value> = mounts
        .iter()
        .filter(|mount| text(mount, "Type") == Some("volume"))
        .filter_map(|mount| {
            let name = text(mount, "Name")?;
            let target = text(mount, "Destination")?;
            if declared.iter().any(|declared| declared == target) {
                return None;
            }
            let read_only = !mount.get("RW").and_then(Value::as_bool).unwrap_or(true);
            Some(json!({
                "Type": "volume",
                "Source": name,
                "Target": target,
                "ReadOnly": read_only,
            }))
        })
        .collect();
    if anonymous.is_empty() {
        return;
    }
    match host_config.get_mut("Mounts") {
        Some(Value::Array(existing)) => existing.extend(anonymous),
        _ => {
            host_config.insert("Mounts".into(), Value::Array(anonymous));
        }
    }
}

/// Inspect shows links as `/other:/this/alias`; create takes `other:alias`.
fn rewrite_links(host_config: &mut Map<String, Value>) {
    let Some(Value::Array(links)) = host_config.get_mut("Links") else {
        return;
    };
    for link in links.iter_mut() {
        let Some((target, alias)) = link.as_str().and_then(|link| link.split_once(':')) else {
            continue;
        };
        let target = target.trim_start_matches('/');
        let alias = alias.rsplit('/').next().unwrap_or(alias);
        *link = Value::String(format!("{target}:{alias}"));
    }
}

/// The endpoint settings of each network of the container, by network name: aliases
/// (without the old short id, and none where the engine refuses them), static addresses
/// and links; not what the engine generated (addresses, MACs, endpoint ids).
fn endpoints(container: &Value, short_id: &str, network_mode: &str) -> Vec<(String, Value)> {
    if network_mode.starts_with("container:") || network_mode == "host" {
        return Vec::new();
    }
    let Some(Value::Object(networks)) = container.pointer("/NetworkSettings/Networks") else {
        return Vec::new();
    };
    networks
        .iter()
        .map(|(name, endpoint)| {
            let mut settings = Map::new();
            for key in ["IPAMConfig", "Links", "DriverOpts", "GwPriority"] {
                if let Some(value) = endpoint.get(key).filter(|value| !value.is_null()) {
                    settings.insert(key.into(), value.clone());
                }
            }
            if !NETWORKS_WITHOUT_ALIASES.contains(&name.as_str())
                && let Some(Value::Array(aliases)) = endpoint.get("Aliases")
            {
                let aliases: Vec<Value> = aliases
                    .iter()
                    .filter(|alias| alias.as_str() != Some(short_id))
                    .cloned()
                    .collect();
                if !aliases.is_empty() {
                    settings.insert("Aliases".into(), Value::Array(aliases));
                }
            }
            (name.clone(), Value::Object(settings))
        })
        .collect()
}

fn object(document: &Value, key: &str) -> Option<Map<String, Value>> {
    match document.get(key) {
        Some(Value::Object(map)) => Some(map.clone()),
        _ => None,
    }
}

fn text<'a>(document: &'a Value, key: &str) -> Option<&'a str> {
    document.get(key).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn container() -> Value {
        json!({
            "Id": ID,
            "Name": "/web",
            "Config": {
                "Hostname": "0123456789ab",
                "Image": "registry.local/web:1",
                "Env": ["PATH=/bin", "VERSION=1", "MODE=production"],
                "Cmd": ["httpd", "-f"],
                "Entrypoint": null,
                "WorkingDir": "/srv",
                "User": "",
                "Labels": {"from.image": "a", "mine": "b", "com.docker.compose.image": "sha256:old"},
                "ExposedPorts": {"80/tcp": {}, "8080/tcp": {}},
                "Volumes": {"/data": {}},
                "Healthcheck": {"Test": ["CMD", "true"], "Interval": 5_000_000_000_u64},
                "StopSignal": "SIGINT",
                "StopTimeout": 3
            },
            "HostConfig": {
                "NetworkMode": "app",
                "Binds": ["named:/named"],
                "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0},
                "Links": ["/db:/web/database"],
                "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
            },
            "Mounts": [
                {"Type": "volume", "Name": "named", "Destination": "/named", "RW": true},
                {"Type": "volume", "Name": "f00d", "Destination": "/data", "RW": true}
            ],
            "NetworkSettings": {"Networks": {
                "app": {"Aliases": ["web", "0123456789ab"], "IPAddress": "10.1.0.5",
                        "IPAMConfig": {"IPv4Address": "10.1.0.5"}, "MacAddress": "02:42:0a:01:00:05"},
                "bridge": {"Aliases": null, "IPAddress": "172.17.0.2"}
            }}
        })
    }

    fn image() -> Value {
        json!({"Config": {
            "Env": ["PATH=/bin", "VERSION=1"],
            "Cmd": ["httpd", "-f"],
            "WorkingDir": "/srv",
            "Labels": {"from.image": "a"},
            "ExposedPorts": {"80/tcp": {}},
            "Volumes": {"/data": {}},
            "Healthcheck": {"Test": ["CMD", "true"], "Interval": 5_000_000_000_u64}
        }})
    }

    #[test]
    fn what_the_old_image_set_is_left_to_the_new_image() {
        let made = new_container(
            &container(),
            &image(),
            "registry.local/web:1",
            "sha256:new",
            ApiVersion::new(1, 44),
        )
        .unwrap();
        let body = made.body;
        assert_eq!(body["Image"], "registry.local/web:1");
        assert_eq!(body["Env"], json!(["MODE=production"]));
        assert!(body.get("Cmd").is_none() && body.get("WorkingDir").is_none());
        assert!(body.get("Hostname").is_none() && body.get("Healthcheck").is_none());
        assert_eq!(
            body["Labels"],
            json!({"mine": "b", "com.docker.compose.image": "sha256:new"})
        );
        assert_eq!(body["ExposedPorts"], json!({"8080/tcp": {}}));
        assert_eq!(body["Volumes"], json!({}));
        assert_eq!(body["StopSignal"], "SIGINT");
        assert_eq!(body["StopTimeout"], 3);
        assert_eq!(body["HostConfig"]["RestartPolicy"]["Name"], "always");
        assert_eq!(body["HostConfig"]["Links"], json!(["db:database"]));
        assert_eq!(
            body["HostConfig"]["Mounts"],
            json!([{"Type": "volume", "Source": "f00d", "Target": "/data", "ReadOnly": false}])
        );
        let endpoints = &body["NetworkingConfig"]["EndpointsConfig"];
        assert_eq!(
            endpoints["app"],
            json!({"Aliases": ["web"], "IPAMConfig": {"IPv4Address": "10.1.0.5"}})
        );
        assert_eq!(endpoints["bridge"], json!({}));
        assert!(made.later_networks.is_empty());
    }

    /// The first element of a recorded `docker inspect` array.
    fn recorded(text: &str) -> Value {
        let document: Value = serde_json::from_str(text).unwrap();
        document.get(0).cloned().unwrap_or(document)
    }

    #[test]
    fn a_recorded_container_is_made_again_as_the_contract_says() {
        let container = recorded(include_str!(
            "../../../fixtures/docker/docker-container-inspect.json"
        ));
        let image = recorded(include_str!(
            "../../../fixtures/docker/docker-image-inspect.json"
        ));
        let short_id = &container["Id"].as_str().unwrap()[..12];
        let made = new_container(
            &container,
            &image,
            "localhost:5000/myorg/app:latest",
            "sha256:new",
            ApiVersion::new(1, 44),
        )
        .unwrap();
        let body = made.body;
        assert_eq!(body["Env"], json!(["FOO=bar"]), "PATH came from the image");
        assert!(body.get("Cmd").is_none(), "the command came from the image");
        assert!(
            body.get("Hostname").is_none(),
            "the host name was the short id"
        );
        assert_eq!(
            body["Healthcheck"]["Test"],
            json!(["CMD-SHELL", "true"]),
            "its own"
        );
        assert_eq!(body["Labels"]["tech.manas.service.autoredeploy"], "true");
        assert_eq!(
            body["HostConfig"]["RestartPolicy"]["Name"],
            "unless-stopped"
        );
        assert_eq!(
            body["HostConfig"]["Binds"],
            container["HostConfig"]["Binds"]
        );
        assert!(
            body["HostConfig"].get("Mounts").is_none_or(Value::is_null),
            "every volume is in Binds"
        );
        assert_eq!(
            body["HostConfig"]["PortBindings"],
            container["HostConfig"]["PortBindings"]
        );
        let endpoints = &body["NetworkingConfig"]["EndpointsConfig"];
        assert_eq!(endpoints["appnet"]["Aliases"], json!(["api"]));
        assert_eq!(endpoints["appnet2"]["Aliases"], json!(["api2"]));
        assert!(
            !body.to_string().contains(&format!("\"{short_id}\"")),
            "{body}"
        );
    }

    #[test]
    fn older_engines_get_one_network_at_create_and_the_rest_after() {
        let made = new_container(
            &container(),
            &image(),
            "registry.local/web:1",
            "sha256:new",
            ApiVersion::new(1, 41),
        )
        .unwrap();
        let endpoints = made.body["NetworkingConfig"]["EndpointsConfig"]
            .as_object()
            .unwrap();
        assert_eq!(endpoints.keys().collect::<Vec<_>>(), ["app"]);
        assert_eq!(made.later_networks.len(), 1);
        assert_eq!(made.later_networks[0].0, "bridge");
    }

    #[test]
    fn an_own_entrypoint_keeps_its_command_and_a_changed_value_is_kept() {
        let mut container = container();
        container["Config"]["Entrypoint"] = json!(["/bin/sh", "-c"]);
        container["Config"]["Env"] = json!(["VERSION=2"]);
        let made = new_container(
            &container,
            &image(),
            "x",
            "sha256:new",
            ApiVersion::new(1, 44),
        )
        .unwrap();
        assert_eq!(made.body["Cmd"], json!(["httpd", "-f"]));
        assert_eq!(made.body["Entrypoint"], json!(["/bin/sh", "-c"]));
        assert_eq!(made.body["Env"], json!(["VERSION=2"]));
    }
}
