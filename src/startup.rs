//! Wires the stages together around a listener the caller binds (tests bind port 0).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, broadcast, oneshot};

use crate::config::Settings;
use crate::deploy::{Deployer, DeployerParts};
use crate::events::metrics::{Metrics, PlatformCalls};
use crate::events::{Delivery, DeployEvent, OutcomeReporter};
use crate::intake::server::{self, ServerLimits};
use crate::intake::{self, Intake, WebhookKey};
use crate::journal::{Journal, JournalError};
use crate::platform::Platform;
use crate::platform::containers::ContainersPlatform;
use crate::platform::engine::{EngineClient, EngineError};
use crate::platform::rancher::{RancherError, RancherPlatform};
use crate::platform::swarm::{SwarmPlatform, SwarmStartError};
use crate::recheck::Recheck;
use crate::recheck::manifest::ManifestClient;
use crate::shutdown::{Shutdown, ShutdownSignal};

/// Outcomes kept for a subscriber that falls behind.
const OUTCOME_BUFFER: usize = 1024;

/// How often ended jobs older than `AUTOREDEPLOY_HISTORY_DAYS` are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Bound on closing the HTTP connections once everything else has stopped.
const HTTP_CLOSE: Duration = Duration::from_secs(5);

/// Why the application cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The data directory or journal is unusable.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The Rancher client cannot be set up.
    #[error(transparent)]
    Rancher(#[from] RancherError),
    /// The Docker Engine cannot be used.
    #[error("DOCKER_HOST: {0}")]
    Engine(#[from] EngineError),
    /// The Swarm target cannot be used.
    #[error(transparent)]
    Swarm(#[from] SwarmStartError),
    /// No target is configured, and the engine at the default socket is no Swarm manager:
    /// what to set.
    #[error("{0}")]
    NoTarget(String),
}

/// A configured autoredeploy, ready to serve on its listener.
#[derive(Debug)]
pub struct Application {
    /// Where webhooks arrive.
    listener: TcpListener,
    /// Validated settings.
    settings: Settings,
    /// The configured targets, in the order each job scans them.
    platforms: Vec<Arc<dyn Platform>>,
    /// The containers target, which also finds containers by name for `/notify`.
    containers: Option<Arc<ContainersPlatform>>,
    /// The Swarm target, which also finds services by name for `PUT /service`.
    swarm: Option<Arc<SwarmPlatform>>,
    /// Accepted pushes and their progress.
    journal: Journal,
    /// Where outcomes are published.
    reporter: OutcomeReporter,
    /// The counters of `/metrics`.
    metrics: Arc<Metrics>,
    /// Triggers the shutdown.
    shutdown: Shutdown,
    /// What every part that must stop between two steps watches.
    signal: ShutdownSignal,
}

impl Application {
    /// Prepares the application: sets up each configured target, then opens the journal
    /// (refusing a data directory that cannot be written).
    pub async fn new(listener: TcpListener, settings: Settings) -> Result<Self, StartupError> {
        let (shutdown, signal) = Shutdown::new();
        let metrics = Arc::new(Metrics::default());
        let mut platforms: Vec<Arc<dyn Platform>> = Vec::new();
        if let Some(rancher) = &settings.targets.rancher {
            let calls = PlatformCalls::new(Arc::clone(&metrics), "rancher");
            platforms.push(RancherPlatform::start(rancher, signal.clone(), calls)?);
        }
        let targets = &settings.targets;
        let engine = match targets.containers.as_ref().map(|target| &target.engine) {
            Some(engine) => Some(engine),
            None => targets.swarm.as_ref().map(|target| &target.engine),
        };
        // An engine only looked at for a Swarm nobody asked for may be missing.
        let engine_optional = targets.containers.is_none()
            && targets
                .swarm
                .as_ref()
                .is_some_and(|swarm| swarm.asked_for.is_none());
        // Why no Swarm was found, for the message of a process left without a target.
        let mut no_swarm = None;
        let engine = match engine {
            Some(engine) => match EngineClient::at_start(
                engine,
                PlatformCalls::new(Arc::clone(&metrics), "engine"),
            )
            .await
            {
                Ok(client) => Some(client),
                Err(error) if engine_optional => {
                    tracing::info!(%error, "no Docker Engine to look for a Swarm at; the Swarm target is not used");
                    no_swarm = Some(format!(
                        "the Docker Engine at {} could not be asked whether it manages a \
                         Swarm: {error}",
                        engine.address
                    ));
                    None
                }
                Err(error) => return Err(error.into()),
            },
            None => None,
        };
        let containers = match (&targets.containers, &engine) {
            (Some(target), Some(client)) => Some(ContainersPlatform::start(
                target,
                client.clone(),
                signal.clone(),
            )),
            _ => None,
        };
        if let Some(containers) = &containers {
            platforms.push(Arc::clone(containers) as Arc<dyn Platform>);
        }
        let swarm = match (&targets.swarm, engine) {
            (Some(target), Some(client)) => {
                let swarm = SwarmPlatform::start(target, client, signal.clone()).await?;
                if swarm.is_none() {
                    no_swarm = Some(format!(
                        "the Docker Engine at {} is not a Swarm manager (see the line above)",
                        target.engine.address
                    ));
                }
                swarm
            }
            _ => None,
        };
        if let Some(swarm) = &swarm {
            platforms.push(Arc::clone(swarm) as Arc<dyn Platform>);
        }
        if platforms.is_empty() {
            let mut message = targets.what_to_set();
            if let Some(no_swarm) = no_swarm {
                message = format!("{message}; {no_swarm}");
            }
            return Err(StartupError::NoTarget(message));
        }
        let journal = Journal::open(&settings.data_dir)?;
        Ok(Self {
            listener,
            settings,
            platforms,
            containers,
            swarm,
            journal,
            reporter: OutcomeReporter::new(OUTCOME_BUFFER, Arc::clone(&metrics)),
            metrics,
            shutdown,
            signal,
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

    /// Serves until `shutdown` completes. Then new pushes are refused with `503`, running
    /// jobs stop after their current request (for at most `AUTOREDEPLOY_SHUTDOWN_GRACE_S`),
    /// and what is left waits in the journal for the next start.
    ///
    /// Returns whether everything stopped cleanly.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> bool {
        let Self {
            listener,
            settings,
            platforms,
            containers,
            swarm,
            journal,
            reporter,
            metrics,
            shutdown: trigger,
            signal,
        } = self;
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutdown signal received");
            trigger.trigger();
        });
        // Tasks that hold the journal: awaited before returning, so the data directory is
        // free once `run` has returned.
        let mut holders = vec![tokio::spawn(prune(
            journal.clone(),
            settings.history,
            signal.clone(),
        ))];
        for platform in &platforms {
            platform.warn_about_its_settings().await;
        }
        let targets: Vec<&str> = platforms.iter().map(|p| p.target().as_str()).collect();
        let targets = targets.join(",");

        let wake = Arc::new(Notify::new());
        if let Some(interval) = settings.deploy.recheck_interval {
            match ManifestClient::new(engine_config_folder(&settings)) {
                Ok(manifests) => {
                    let recheck = Recheck {
                        platforms: platforms.clone(),
                        journal: journal.clone(),
                        wake: Arc::clone(&wake),
                        manifests,
                        interval,
                        queue_size: settings.deploy.queue_size,
                    };
                    holders.push(tokio::spawn(recheck.run(signal.clone())));
                }
                Err(error) => {
                    tracing::error!(%error, "the re-check cannot read registries; AUTOREDEPLOY_RECHECK_INTERVAL is not honoured");
                }
            }
        }
        let notices_written = Arc::new(Notify::new());
        let events = &settings.events;
        match Delivery::new(
            events,
            journal.clone(),
            Arc::clone(&metrics),
            Arc::clone(&notices_written),
        ) {
            Ok(delivery) => {
                holders.push(tokio::spawn(delivery.run(signal.clone())));
            }
            Err(error) => {
                tracing::error!(%error, "notifications and callbacks cannot be sent; they wait in the journal");
            }
        }
        let deployer = Deployer::new(DeployerParts {
            platforms,
            journal: journal.clone(),
            reporter,
            wake: Arc::clone(&wake),
            max_concurrent: settings.deploy.max_concurrent_upgrades,
            shutdown: signal.clone(),
            job_retry: settings.deploy.job_retry,
            notices: Delivery::plan(events),
            notices_written,
        });
        let deploying = tokio::spawn(deployer.run(settings.deploy.shutdown_grace));

        let limits = ServerLimits {
            max_connections: settings.access.max_connections,
            read_timeout: settings.access.read_timeout,
        };
        let mut intake = Intake::new(
            WebhookKey::new(&settings.webhook_keys),
            journal,
            wake,
            settings.deploy.queue_size,
            signal,
            &settings.access,
        )
        .with_signing_secrets(settings.signing_secrets.clone())
        .with_events(
            metrics,
            events.metrics_key.as_ref(),
            events.callback_origins.clone(),
        );
        if let Some(containers) = containers {
            intake = intake.with_named_containers(containers);
        }
        if let Some(swarm) = swarm {
            intake = intake.with_named_services(swarm);
        }
        tracing::info!(
            address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            targets,
            data_dir = %settings.data_dir.display(),
            "autoredeploy listening"
        );
        // The server keeps answering (pushes with 503) until the deployer has stopped.
        let (http_stop, http_stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(server::serve(
            listener,
            intake::routes(intake),
            limits,
            async {
                let _ = http_stopped.await;
            },
            HTTP_CLOSE,
        ));
        let clean = deploying.await.is_ok();
        if !clean {
            tracing::error!("the deployer stopped abnormally");
        }
        let _ = http_stop.send(());
        let _ = serving.await;
        for holder in holders {
            // After a clean stop the shutdown was triggered, and they end by themselves.
            if !clean {
                holder.abort();
            }
            let _ = holder.await;
        }
        tracing::info!("autoredeploy stopped");
        clean
    }
}

/// Deletes ended jobs older than `history`, now and every hour, until the shutdown.
async fn prune(journal: Journal, history: Duration, shutdown: ShutdownSignal) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown.triggered() => return,
        }
        match journal.prune(history).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "old jobs deleted from the history"),
            Err(error) => tracing::warn!(%error, "cannot prune the history"),
        }
    }
}

/// The folder of the `config.json` the engine targets read registry credentials from.
fn engine_config_folder(settings: &Settings) -> Option<std::path::PathBuf> {
    let targets = &settings.targets;
    targets
        .containers
        .as_ref()
        .map(|target| &target.engine)
        .or(targets.swarm.as_ref().map(|target| &target.engine))
        .and_then(|engine| engine.config_folder.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineEndpoint;

    #[tokio::test]
    async fn without_settings_or_an_engine_nothing_is_started() {
        let data = tempfile::tempdir().unwrap();
        let mut settings = Settings::from_vars(
            [
                ("AUTOREDEPLOY_DATA_DIR", data.path().to_str().unwrap()),
                ("DOCKER_HUB_KEY", "hub-secret-value"),
            ]
            .map(|(name, value)| (name.to_owned(), value.to_owned())),
        )
        .unwrap();
        // No engine at the socket where a Swarm is looked for.
        let nowhere = tempfile::tempdir().unwrap();
        let swarm = settings.targets.swarm.as_mut().unwrap();
        swarm.engine.endpoint = EngineEndpoint::Unix(nowhere.path().join("docker.sock"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused = Application::new(listener, settings).await.unwrap_err();
        assert!(matches!(refused, StartupError::NoTarget(_)), "{refused}");
        let refused = refused.to_string();
        assert!(
            refused.contains("RANCHER_HOST") && refused.contains("could not be asked"),
            "{refused}"
        );
        assert!(std::fs::read_dir(data.path()).unwrap().next().is_none());
    }
}
