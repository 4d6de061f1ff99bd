//! Containers that run in another container's network namespace
//! (`NetworkMode: container:<it>`). Stopping that container takes their network away, and
//! a restart would not give it back when they name it by an id that is gone: once the
//! name is held again, each is recreated from its own inspect, joined to the namespace of
//! the container of that name.
//!
//! A dependant's recreation is not gated, and it keeps its image: only its network mode
//! changes. A recreation cut short is finished at the next attempt from what the names
//! say (a parked container, a temporary one).

use serde_json::Value;

use super::api::ContainerApi;
use super::recreate::new_container;
use crate::platform::engine::EngineError;

/// The name a dependant's new container has until it takes over: not the one a redeploy
/// of the dependant itself would use.
fn temporary_name(name: &str) -> String {
    format!("{name}-autoredeploy-netns-new")
}

/// The name the dependant's old container has while it is replaced.
fn parked_name(name: &str) -> String {
    format!("{name}-autoredeploy-netns-old")
}

/// The running containers in the network namespace of the container `id` named `name`,
/// by name, but for the one autoredeploy runs in (`own_id`), which it never stops: it
/// loses its network until it is restarted, and a warning says so.
pub(super) async fn of(
    api: &ContainerApi,
    id: &str,
    name: &str,
    own_id: Option<&str>,
) -> Result<Vec<String>, EngineError> {
    let modes = [
        format!("container:{id}"),
        format!("container:{}", &id[..id.len().min(12)]),
        format!("container:{name}"),
    ];
    let listed = api.running().await?;
    let mut dependants = Vec::new();
    for container in listed
        .iter()
        .filter(|container| modes.contains(&container.host_config.network_mode))
    {
        if own_id == Some(container.id.as_str()) {
            tracing::warn!(
                container = %name,
                "autoredeploy runs in the network namespace of the container it redeploys: \
                 it loses its network until it is restarted"
            );
            continue;
        }
        dependants.extend(container.name().map(str::to_owned));
    }
    Ok(dependants)
}

/// Recreates each of `dependants` in the namespace of the container named `supplier`.
/// Returns what failed, for the unit's reason; `Err` only when the engine is out of reach.
pub(super) async fn recreate(
    api: &ContainerApi,
    supplier: &str,
    dependants: &[String],
) -> Result<Vec<String>, EngineError> {
    let mut failures = Vec::new();
    for dependant in dependants {
        match recreate_one(api, supplier, dependant).await {
            Ok(()) => {}
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => {
                tracing::error!(container = %dependant, %error, "a container of the redeployed one's network could not be recreated");
                failures.push(format!(
                    "recreating {dependant} in its network failed: {error}"
                ));
            }
        }
    }
    Ok(failures)
}

async fn recreate_one(api: &ContainerApi, supplier: &str, name: &str) -> Result<(), EngineError> {
    let (temporary, parked) = (temporary_name(name), parked_name(name));
    // What an attempt cut short left.
    api.discard_new(&temporary).await?;
    if let Some(left) = api.inspect(&parked).await? {
        if api.inspect(name).await?.is_some() {
            api.remove_old(&left.view.id).await?;
        } else {
            api.rename(&left.view.id, name).await?;
        }
    }
    let Some(old) = api.inspect(name).await? else {
        return Ok(());
    };
    let Some(image) = api.image(&old.view.image_id).await? else {
        return Err(EngineError::Unreadable {
            what: format!("recreating {name}"),
            reason: "the image it runs is gone".into(),
        });
    };
    // It keeps its image: when its tag names another image by now, it is made from the
    // id of the one it runs.
    let reference = match api.image_id(&old.view.config.image).await? {
        Some(id) if id == old.view.image_id => old.view.config.image.clone(),
        _ => old.view.image_id.clone(),
    };
    let version = api.client().version().await?;
    let mut made = new_container(
        &old.document,
        &image,
        &reference,
        &old.view.image_id,
        version,
    )
    .map_err(|reason| EngineError::Unreadable {
        what: format!("recreating {name}"),
        reason,
    })?;
    made.body["HostConfig"]["NetworkMode"] = Value::String(format!("container:{supplier}"));
    let new_id = api.create(&temporary, &made.body).await?;
    api.stop(&old.view.id, old.view.config.stop_timeout())
        .await?;
    api.rename(&old.view.id, &parked).await?;
    api.rename(&new_id, name).await?;
    if let Err(error) = api.start(&new_id).await {
        // Put the old one back, in the namespace it names.
        api.discard_new(&new_id).await?;
        api.rename(&old.view.id, name).await?;
        let _ = api.start(&old.view.id).await;
        return Err(error);
    }
    api.remove_old(&old.view.id).await
}
