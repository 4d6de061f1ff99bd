//! Wires the stages together around a listener the caller binds (tests bind port 0).

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

use crate::config::Settings;
use crate::deployer::Deployer;
use crate::intake::{self, Intake, WebhookKey};
use crate::outcome::{DeployEvent, OutcomeReporter};
use crate::queue;
use crate::rancher::{RancherClient, RancherError};
use crate::upgrader::Upgrader;

/// Outcomes kept for a subscriber that falls behind.
const OUTCOME_BUFFER: usize = 1024;

/// A configured autoredeploy, ready to serve on its listener.
#[derive(Debug)]
pub struct Application {
    /// Where webhooks arrive.
    listener: TcpListener,
    /// Validated settings.
    settings: Settings,
    /// Rancher API client, shared by scans and upgrades.
    client: RancherClient,
    /// Where outcomes are published.
    reporter: OutcomeReporter,
}

impl Application {
    /// Prepares the application; fails if the Rancher client cannot be set up.
    pub fn new(listener: TcpListener, settings: Settings) -> Result<Self, RancherError> {
        let client = RancherClient::new(&settings.rancher)?;
        Ok(Self {
            listener,
            settings,
            client,
            reporter: OutcomeReporter::new(OUTCOME_BUFFER),
        })
    }

    /// The address actually listened on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Every outcome from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<DeployEvent> {
        self.reporter.subscribe()
    }

    /// Serves until `shutdown` completes, then stops taking webhooks and lets running
    /// upgrades go on for at most `AUTOREDEPLOY_SHUTDOWN_GRACE_S`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let Self {
            listener,
            settings,
            client,
            reporter,
        } = self;
        let (stop_sender, stop) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutdown signal received");
            let _ = stop_sender.send(true);
        });
        let stopped = |mut stop: watch::Receiver<bool>| async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };

        let (push_queue, pushes) = queue::bounded(settings.queue_size);
        let upgrader = Upgrader::new(
            client.clone(),
            settings.upgrade.clone(),
            settings.matching.clone(),
        );
        let deployer = Deployer::new(
            client,
            upgrader,
            settings.matching.clone(),
            reporter,
            settings.upgrade.max_concurrent,
        );
        let deploying =
            tokio::spawn(deployer.run(pushes, stopped(stop.clone()), settings.shutdown_grace));

        let routes = intake::routes(Intake::new(
            WebhookKey::new(&settings.webhook_key),
            push_queue,
        ));
        tracing::info!(
            address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            rancher_services = %settings.rancher.services_url,
            default_opt_in = settings.matching.default_opt_in,
            label = %settings.matching.label_name,
            "autoredeploy listening"
        );
        let serving = warp::serve(routes)
            .incoming(listener)
            .graceful(stopped(stop.clone()))
            .run();
        let grace = settings.shutdown_grace;
        let mut http_stop = stop.clone();
        tokio::select! {
            () = serving => {}
            () = async {
                let _ = http_stop.wait_for(|stopped| *stopped).await;
                tokio::time::sleep(grace).await;
            } => tracing::warn!("HTTP connections still open after the grace period were closed"),
        }
        if deploying.await.is_err() {
            tracing::error!("the deployer stopped abnormally");
        }
        tracing::info!("autoredeploy stopped");
    }
}
