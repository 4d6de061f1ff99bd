//! Wires the stages together around a listener the caller binds (tests bind port 0).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, broadcast, oneshot};

use crate::config::{RancherSettings, RancherTarget, Settings};
use crate::deploy::{Deployer, DeployerParts};
use crate::events::{DeployEvent, OutcomeReporter};
use crate::intake::server::{self, ServerLimits};
use crate::intake::{self, Intake, WebhookKey};
use crate::journal::{Journal, JournalError};
use crate::platform::rancher::upgrade::Upgrader;
use crate::platform::rancher::{RancherClient, RancherError};
use crate::shutdown::Shutdown;

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
    /// The Rancher target is not configured, and it is the only one this version can run
    /// (the settings already refuse to have no target at all).
    #[error(
        "the Rancher target is not configured: set RANCHER_HOST, RANCHER_API_KEY and \
         RANCHER_API_SECRET"
    )]
    NoRancherTarget,
}

/// A configured autoredeploy, ready to serve on its listener.
#[derive(Debug)]
pub struct Application {
    /// Where webhooks arrive.
    listener: TcpListener,
    /// Validated settings.
    settings: Settings,
    /// The Rancher target, taken out of `settings.targets`.
    rancher: RancherTarget,
    /// Rancher API client, shared by scans and upgrades.
    client: RancherClient,
    /// Accepted pushes and their progress.
    journal: Journal,
    /// Where outcomes are published.
    reporter: OutcomeReporter,
}

impl Application {
    /// Prepares the application: opens the journal (refusing a data directory that cannot
    /// be written) and the Rancher client.
    pub fn new(listener: TcpListener, mut settings: Settings) -> Result<Self, StartupError> {
        let rancher = settings
            .targets
            .rancher
            .take()
            .ok_or(StartupError::NoRancherTarget)?;
        let journal = Journal::open(&settings.data_dir)?;
        let client = RancherClient::new(&rancher.connection)?;
        Ok(Self {
            listener,
            settings,
            rancher,
            client,
            journal,
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

    /// Serves until `shutdown` completes. Then new pushes are refused with `503`, running
    /// jobs stop after their current Rancher request (for at most
    /// `AUTOREDEPLOY_SHUTDOWN_GRACE_S`), and what is left waits in the journal for the next
    /// start.
    ///
    /// Returns whether everything stopped cleanly.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> bool {
        let Self {
            listener,
            settings,
            rancher,
            client,
            journal,
            reporter,
        } = self;
        let (trigger, signal) = Shutdown::new();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutdown signal received");
            trigger.trigger();
        });
        tokio::spawn(prune(journal.clone(), settings.history));
        warn_about_the_rancher_link(&rancher.connection).await;

        let wake = Arc::new(Notify::new());
        let upgrader = Upgrader::new(
            client.clone(),
            rancher.upgrade.clone(),
            rancher.matching.clone(),
            journal.clone(),
            signal.clone(),
        );
        let deployer = Deployer::new(DeployerParts {
            client,
            upgrader,
            rule: rancher.matching.clone(),
            journal: journal.clone(),
            reporter,
            wake: Arc::clone(&wake),
            max_concurrent: settings.deploy.max_concurrent_upgrades,
            shutdown: signal.clone(),
            job_retry: settings.deploy.job_retry,
        });
        let deploying = tokio::spawn(deployer.run(settings.deploy.shutdown_grace));

        let limits = ServerLimits {
            max_connections: settings.access.max_connections,
            read_timeout: settings.access.read_timeout,
        };
        let intake = Intake::new(
            WebhookKey::new(&settings.webhook_keys),
            journal,
            wake,
            settings.deploy.queue_size,
            signal,
            &settings.access,
        );
        tracing::info!(
            address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            rancher_services = %rancher.connection.services_url,
            data_dir = %settings.data_dir.display(),
            default_opt_in = rancher.matching.default_opt_in,
            label = %rancher.matching.label_name,
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
        tracing::info!("autoredeploy stopped");
        clean
    }
}

/// Warns, at every start, when the Rancher credentials are not protected in transit.
async fn warn_about_the_rancher_link(rancher: &RancherSettings) {
    if rancher.insecure_skip_verify {
        tracing::warn!(
            "RANCHER_INSECURE_SKIP_VERIFY=true: Rancher's certificate is not verified, so \
             anyone on the path can pose as Rancher and read the API key; use RANCHER_CA_FILE"
        );
    }
    let url = &rancher.api_base;
    if url.scheme() != "http" {
        return;
    }
    let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
    let port = url.port_or_known_default().unwrap_or(80);
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => match tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::lookup_host((host, port)),
        )
        .await
        {
            Ok(Ok(found)) => found.map(|address| address.ip()).collect(),
            _ => Vec::new(),
        },
    };
    if addresses.is_empty() || !addresses.iter().all(|ip| is_private(*ip)) {
        tracing::warn!(
            host,
            "the Rancher API key is sent over plain http to an address that is not loopback \
             or private; use an https RANCHER_HOST"
        );
    }
}

/// Loopback, private, link-local or carrier-grade NAT: not reachable from the internet.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(ip) => ip.is_loopback() || ip.is_unique_local() || ip.is_unicast_link_local(),
    }
}

/// Deletes ended jobs older than `history`, now and every hour.
async fn prune(journal: Journal, history: Duration) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    loop {
        every.tick().await;
        match journal.prune(history).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "old jobs deleted from the history"),
            Err(error) => tracing::warn!(%error, "cannot prune the history"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_the_rancher_target_nothing_is_started() {
        let data = tempfile::tempdir().unwrap();
        let mut settings = Settings::from_vars(
            [
                ("AUTOREDEPLOY_DATA_DIR", data.path().to_str().unwrap()),
                ("DOCKER_HUB_KEY", "hub-secret-value"),
                ("RANCHER_HOST", "rancher.example.com"),
                ("RANCHER_API_KEY", "ACCESSKEY"),
                ("RANCHER_API_SECRET", "rancher-secret-value"),
            ]
            .map(|(name, value)| (name.to_owned(), value.to_owned())),
        )
        .unwrap();
        settings.targets.rancher = None;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused = Application::new(listener, settings).unwrap_err();
        assert!(
            matches!(refused, StartupError::NoRancherTarget),
            "{refused}"
        );
        assert!(std::fs::read_dir(data.path()).unwrap().next().is_none());
    }

    #[test]
    fn private_and_public_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.9",
            "192.168.1.1",
            "100.64.0.1",
            "::1",
            "fd00::5",
            "fe80::1",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "203.0.113.10", "100.128.0.1", "2001:db8::1"] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
    }
}
