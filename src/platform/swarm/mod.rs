//! Docker Swarm services as a target: the scan of the services, and the digest-pinned
//! update of one service, followed through `UpdateStatus` and rolled back on failure.
//!
//! A unit is a service id, which outlives its updates.

mod api;
mod named;
mod scan;
mod update;

use std::sync::Arc;

use crate::config::SwarmTarget;
use crate::domain::{ImageRef, TargetKind, UnitRef};
use crate::journal::UnitRecord;
use crate::platform::engine::{EngineClient, EngineError};
use crate::platform::{BoxFuture, InUse, Platform, Prefetched, Progress, Scan, StepLog};
use crate::shutdown::ShutdownSignal;
use api::SwarmApi;
use update::Updater;

/// The Swarm target: the services of one Swarm, through a manager's engine.
#[derive(Debug)]
pub struct SwarmPlatform {
    settings: SwarmTarget,
    updater: Updater,
}

/// Why the Swarm target is not used.
#[derive(Debug, thiserror::Error)]
pub enum SwarmStartError {
    /// The engine cannot be asked.
    #[error("DOCKER_HOST: {0}")]
    Engine(#[from] EngineError),
    /// The target is asked for, but the engine is no manager.
    #[error(
        "{asked_for}, but the Docker Engine at {address} is not a Swarm manager: point \
         DOCKER_HOST at a manager's engine, or do not ask for the Swarm target"
    )]
    NotAManager {
        /// Why the target must be used.
        asked_for: String,
        /// `DOCKER_HOST`, or the default socket.
        address: String,
    },
}

impl SwarmPlatform {
    /// Sets the target up: `None` when the engine is no Swarm manager and the target was
    /// not asked for.
    pub async fn start(
        settings: &SwarmTarget,
        client: EngineClient,
        shutdown: ShutdownSignal,
    ) -> Result<Option<Arc<Self>>, SwarmStartError> {
        let api = SwarmApi::new(client);
        let manager = match api.is_manager().await {
            Ok(manager) => manager,
            // A TCP engine that does not answer yet is asked again at each push.
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, "the Docker Engine does not answer yet; whether it is a Swarm manager is asked again at the first push");
                true
            }
            Err(error) if settings.asked_for.is_some() => return Err(error.into()),
            Err(error) => {
                tracing::info!(%error, "the engine could not say whether it is a Swarm manager; the Swarm target is not used");
                false
            }
        };
        if !manager {
            return match &settings.asked_for {
                Some(asked_for) => Err(SwarmStartError::NotAManager {
                    asked_for: asked_for.clone(),
                    address: settings.engine.address.clone(),
                }),
                None => {
                    tracing::info!(engine = %settings.engine.address, "the Docker Engine is not a Swarm manager; the Swarm target is not used");
                    Ok(None)
                }
            };
        }
        Ok(Some(Arc::new(Self {
            settings: settings.clone(),
            updater: Updater {
                api,
                rule: settings.matching.clone(),
                timeout: settings.timeout,
                on_failure: settings.on_failure,
                config_folder: settings.engine.config_folder.clone(),
                shutdown,
            },
        })))
    }
}

impl Platform for SwarmPlatform {
    fn target(&self) -> TargetKind {
        TargetKind::Swarm
    }

    fn warn_about_its_settings(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            tracing::info!(
                engine = %self.updater.api.client().address(),
                default_opt_in = self.settings.matching.default_opt_in,
                label = %self.settings.matching.label_name,
                timeout_s = self.settings.timeout.as_secs(),
                "Swarm target"
            );
        })
    }

    fn scan(&self, image: &ImageRef) -> Box<dyn Scan> {
        Box::new(scan::ServiceScan::new(
            self.updater.api.clone(),
            image,
            self.settings.matching.clone(),
        ))
    }

    fn scan_only(&self, unit: &UnitRef, _image: &ImageRef) -> Box<dyn Scan> {
        Box::new(named::OneService {
            api: self.updater.api.clone(),
            id: unit.id.clone(),
            rule: self.settings.matching.clone(),
            summary: Default::default(),
            done: false,
        })
    }

    fn in_use(&self) -> BoxFuture<'_, Result<Vec<InUse>, String>> {
        Box::pin(async move {
            if !self.updater.api.is_manager().await.unwrap_or(false) {
                return Ok(Vec::new());
            }
            let services = self
                .updater
                .api
                .services()
                .await
                .map_err(|error| error.to_string())?;
            Ok(services
                .iter()
                .filter(|service| scan::opted_in(service, &self.settings.matching).is_ok())
                .filter_map(|service| {
                    let written = ImageRef::parse(service.image()?).ok()?;
                    Some(InUse {
                        image: written.tag().map(|_| written.without_digest())?,
                        digests: written.digest().map(str::to_owned).into_iter().collect(),
                    })
                })
                .collect())
        })
    }

    fn drive<'a>(
        &'a self,
        unit: &'a UnitRecord,
        _prefetched: Option<Prefetched>,
        image: &'a ImageRef,
        digest: Option<&'a str>,
        log: &'a StepLog,
    ) -> BoxFuture<'a, Progress> {
        Box::pin(self.updater.drive(unit, image, digest, log))
    }
}
