//! Rancher 1.x (Cattle) services as a target: the v1 API client, the matching of launch
//! configs and sidekicks, the paged scan of an environment, and the in-service upgrade.
//!
//! Rancher's wire types live here and nowhere else. Launch configs are kept as raw JSON so
//! they can be sent back whole: Rancher *replaces* a launch config on upgrade, so any key
//! dropped on the way would be lost from the service.

mod checkpoint;
mod client;
mod collection;
mod error;
mod link;
mod page_client;
mod paging;
mod recovery;
mod state;
mod tls;
mod watch;
mod wire;

pub mod matching;
pub mod request;
pub mod scan;
pub mod upgrade;

use std::sync::Arc;

pub use client::{PAGE_SIZE, RancherClient};
pub use error::RancherError;
pub use state::ServiceState;
pub use wire::{
    LaunchConfigView, PageEnd, Service, ServicePage, SkippedEntry, UpgradeRequest, decode_entry,
};

use crate::config::{MatchSettings, RancherTarget};
use crate::domain::{ImageRef, TargetKind};
use crate::events::metrics::PlatformCalls;
use crate::journal::UnitRecord;
use crate::platform::{BoxFuture, Platform, Prefetched, Progress, Scan, StepLog};
use crate::shutdown::ShutdownSignal;
use matching::Targets;
use upgrade::Upgrader;

/// A service as a scan listed it, with the launch configs judged on that very copy.
#[derive(Debug)]
pub struct Listed {
    /// The service document.
    pub service: Service,
    /// Its launch configs that run the pushed image and are opted in.
    pub targets: Targets,
}

/// The Rancher target: one environment's services.
#[derive(Debug)]
pub struct RancherPlatform {
    /// How to reach Rancher, the opt-in rule and how upgrades are driven.
    settings: RancherTarget,
    /// The API client, shared by scans and upgrades.
    client: RancherClient,
    /// Drives each service's upgrade.
    upgrader: Upgrader,
}

impl RancherPlatform {
    /// Sets the target up; fails only if the HTTP client cannot be built.
    pub fn start(
        settings: &RancherTarget,
        shutdown: ShutdownSignal,
        calls: PlatformCalls,
    ) -> Result<Arc<Self>, RancherError> {
        let client = RancherClient::new(&settings.connection)?.counted(calls);
        let upgrader = Upgrader::new(
            client.clone(),
            settings.upgrade.clone(),
            settings.matching.clone(),
            shutdown,
        );
        Ok(Arc::new(Self {
            settings: settings.clone(),
            client,
            upgrader,
        }))
    }

    fn rule(&self) -> &MatchSettings {
        &self.settings.matching
    }
}

impl Platform for RancherPlatform {
    fn target(&self) -> TargetKind {
        TargetKind::Rancher
    }

    fn scan(&self, image: &ImageRef) -> Box<dyn Scan> {
        Box::new(scan::Scanner::new(&self.client, image, self.rule()))
    }

    fn warn_about_its_settings(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let rule = self.rule();
            tracing::info!(
                services = %self.settings.connection.services_url,
                default_opt_in = rule.default_opt_in,
                label = %rule.label_name,
                "Rancher target"
            );
            link::warn_about_the_link(&self.settings.connection).await;
        })
    }

    fn drive<'a>(
        &'a self,
        unit: &'a UnitRecord,
        prefetched: Option<Prefetched>,
        image: &'a ImageRef,
        // Rancher names a service's image by its tag only.
        _digest: Option<&'a str>,
        log: &'a StepLog,
    ) -> BoxFuture<'a, Progress> {
        let listed = prefetched.and_then(|prefetched| prefetched.copy.downcast::<Listed>().ok());
        Box::pin(self.upgrader.drive(unit, listed, image, log))
    }
}
