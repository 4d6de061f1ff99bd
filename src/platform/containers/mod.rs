//! Containers of a Docker Engine as a target: the scan of the running containers, and
//! the redeploy of one container (create the new one first, switch, gate, roll back).
//!
//! A unit is a container *name*: its id changes with every redeploy, its name does not.

mod api;
mod checkpoint;
mod dependants;
mod gate;
mod in_use;
mod matching;
mod named;
mod own;
mod recreate;
mod scan;
mod upgrade;
mod wire;

use std::sync::Arc;

use crate::config::ContainersTarget;
use crate::domain::{ImageRef, TargetKind};
use crate::journal::UnitRecord;
use crate::platform::engine::EngineClient;
use crate::platform::{BoxFuture, InUse, Platform, Prefetched, Progress, Scan, StepLog};
use crate::shutdown::ShutdownSignal;
use api::ContainerApi;
use upgrade::Redeployer;

/// The containers target: one engine's containers.
#[derive(Debug)]
pub struct ContainersPlatform {
    settings: ContainersTarget,
    redeployer: Redeployer,
}

impl ContainersPlatform {
    /// Sets the target up and asks the engine which API version to speak. An engine that
    /// cannot be used (no socket there, an error answer, too old) stops the start; one on
    /// TCP that does not answer is asked again at the first push.
    pub fn start(
        settings: &ContainersTarget,
        client: EngineClient,
        shutdown: ShutdownSignal,
    ) -> Arc<Self> {
        Arc::new(Self {
            settings: settings.clone(),
            redeployer: Redeployer {
                api: ContainerApi::new(client),
                rule: settings.matching.clone(),
                gate: settings.gate,
                config_folder: settings.engine.config_folder.clone(),
                own_id: own::own_container_id(),
                shutdown,
            },
        })
    }
}

impl Platform for ContainersPlatform {
    fn target(&self) -> TargetKind {
        TargetKind::Containers
    }

    fn warn_about_its_settings(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let client = self.redeployer.api.client();
            let version = client.version().await.ok();
            tracing::info!(
                engine = %client.address(),
                api_version = %version.map(|version| version.to_string()).unwrap_or_else(|| "not known yet".into()),
                default_opt_in = self.settings.matching.default_opt_in,
                label = %self.settings.matching.label_name,
                own_container = self.redeployer.own_id.as_deref().map(api::short),
                "containers target"
            );
        })
    }

    fn scan(&self, image: &ImageRef) -> Box<dyn Scan> {
        Box::new(scan::ContainerScan::new(
            self.redeployer.api.clone(),
            image,
            self.settings.matching.clone(),
            self.redeployer.own_id.clone(),
        ))
    }

    fn in_use(&self) -> BoxFuture<'_, Result<Vec<InUse>, String>> {
        Box::pin(async move {
            in_use::in_use(
                &self.redeployer.api,
                &self.settings.matching,
                self.redeployer.own_id.as_deref(),
            )
            .await
            .map_err(|error| error.to_string())
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
        Box::pin(self.redeployer.drive(unit, image, digest, log))
    }
}
