//! The tags the opted-in running containers run, and the digests their images have in
//! their registries, for the safety re-check.

use super::api::ContainerApi;
use super::matching;
use crate::config::MatchSettings;
use crate::domain::ImageRef;
use crate::platform::InUse;
use crate::platform::engine::EngineError;

/// Every opted-in running container's tag, with the digests its image is known by in
/// that tag's repository (none for an image built on the host and never pushed). Swarm
/// tasks and autoredeploy's own container are left out, as a push leaves them.
pub(super) async fn in_use(
    api: &ContainerApi,
    rule: &MatchSettings,
    own_id: Option<&str>,
) -> Result<Vec<InUse>, EngineError> {
    let mut found = Vec::new();
    for container in api.running().await? {
        let (reference, labels) = if container.image.starts_with("sha256:") {
            match api.inspect(&container.id).await? {
                Some(inspected) => (inspected.view.config.image, inspected.view.config.labels),
                None => continue,
            }
        } else {
            (container.image, container.labels)
        };
        let Ok(image) = ImageRef::parse(&reference) else {
            continue;
        };
        if image.is_pinned_by_digest()
            || own_id == Some(container.id.as_str())
            || matching::swarm_service_of(labels.as_ref()).is_some()
            || matching::opted_in(labels.as_ref(), rule).is_err()
        {
            continue;
        }
        let digests = api.digests_in(&container.image_id, &image).await?;
        found.push(InUse { image, digests });
    }
    Ok(found)
}
