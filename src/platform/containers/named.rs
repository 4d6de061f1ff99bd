//! A container found by its name, for `POST /notify/{container}`.

use super::{ContainersPlatform, matching, upgrade};
use crate::domain::{ImageRef, TargetKind, UnitRef};
use crate::platform::{BoxFuture, Lookup, NamedUnits};

impl NamedUnits for ContainersPlatform {
    fn find<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Lookup> {
        Box::pin(async move {
            let container = match self.redeployer.api.inspect(name).await {
                Ok(Some(container)) => container.view,
                Ok(None) => return Lookup::NotFound,
                Err(error) => return Lookup::Unavailable(error.to_string()),
            };
            // A name that is an id, or a prefix of one, is not the container's name.
            if container.name() != name {
                return Lookup::NotFound;
            }
            if !container.state.running {
                return Lookup::Unfit(format!("container {name} is not running"));
            }
            if let Some(service) = matching::swarm_service_of(container.config.labels.as_ref()) {
                return Lookup::Unfit(format!(
                    "container {name} is a task of the Swarm service {service}: Swarm replaces \
                     its containers itself"
                ));
            }
            if container.host_config.auto_remove {
                return Lookup::Unfit(format!("container {name}: {}", upgrade::AUTO_REMOVED));
            }
            if self.redeployer.own_id.as_deref() == Some(container.id.as_str()) {
                return Lookup::OptedOut(format!(
                    "container {name} is the one autoredeploy runs in, which it never stops"
                ));
            }
            if let Err(reason) =
                matching::opted_in(container.config.labels.as_ref(), &self.settings.matching)
            {
                return Lookup::OptedOut(format!("container {name}: {reason}"));
            }
            let reference = &container.config.image;
            let image = ImageRef::parse(reference).ok().filter(|image| {
                !reference.starts_with("sha256:")
                    && !image.is_pinned_by_digest()
                    && image.tag().is_some()
            });
            match image {
                Some(image) => Lookup::Found {
                    unit: UnitRef {
                        target: TargetKind::Containers,
                        id: name.to_owned(),
                    },
                    image,
                },
                None => Lookup::Unfit(format!(
                    "container {name} runs `{}`, an image without a tag to pull again",
                    crate::domain::excerpt(reference)
                )),
            }
        })
    }
}
