//! Starts the real server on port 0 against a fake Rancher, with request helpers.

use std::io::Write;
use std::time::Duration;

use autoredeploy::config::Settings;
use autoredeploy::events::{DeployEvent, JobOutcome, UnitOutcome};
use autoredeploy::startup::Application;
use serde_json::{Value, json};
use tokio::sync::{broadcast, oneshot};

use crate::support::fake_rancher::{self, FakeRancher};

pub const WEBHOOK_KEY: &str = "test-webhook-key-5d1f0c9a7e3b";

/// Bound on waiting for a job to end, so a broken build fails instead of hanging.
const JOB_DEADLINE: Duration = Duration::from_secs(60);

pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
    events: broadcast::Receiver<DeployEvent>,
    stop: Option<oneshot::Sender<()>>,
    running: Option<tokio::task::JoinHandle<bool>>,
    _data: tempfile::TempDir,
}

pub async fn spawn_app(rancher: &FakeRancher) -> TestApp {
    spawn_app_with(rancher, &[]).await
}

/// Starts autoredeploy with test settings, overridden by `overrides`.
pub async fn spawn_app_with(rancher: &FakeRancher, overrides: &[(&str, &str)]) -> TestApp {
    let vars: Vec<(String, String)> = vec![
        ("RANCHER_HOST".into(), rancher.host()),
        ("RANCHER_PROJECT_ID".into(), fake_rancher::PROJECT_ID.into()),
        ("RANCHER_API_KEY".into(), fake_rancher::ACCESS_KEY.into()),
        ("RANCHER_API_SECRET".into(), fake_rancher::SECRET_KEY.into()),
        ("RANCHER_UPGRADE_POLL_MS".into(), "20".into()),
        ("RANCHER_UPGRADE_TIMEOUT_S".into(), "20".into()),
        ("RANCHER_RETRY_MAX_DELAY_MS".into(), "100".into()),
    ];
    spawn_app_with_vars(vars, overrides).await
}

/// Starts autoredeploy for the containers of the test engine only, with a `config.json`
/// folder of its own (empty unless the test writes one), and short gates.
pub async fn spawn_containers_app(
    config_folder: &std::path::Path,
    overrides: &[(&str, &str)],
) -> TestApp {
    let vars: Vec<(String, String)> = vec![
        ("DOCKER_HOST".into(), crate::support::engine::docker_host()),
        ("DOCKER_CONFIG".into(), config_folder.display().to_string()),
        ("DOCKER_UPGRADE_STABLE_S".into(), "2".into()),
        ("DOCKER_UPGRADE_TIMEOUT_S".into(), "20".into()),
    ];
    spawn_app_with_vars(vars, overrides).await
}

/// Starts autoredeploy without any target setting, as on a Swarm manager with its socket
/// mounted, with a `config.json` folder of its own.
pub async fn spawn_default_socket_app(config_folder: &std::path::Path) -> TestApp {
    let vars = vec![("DOCKER_CONFIG".into(), config_folder.display().to_string())];
    spawn_app_with_vars(vars, &[]).await
}

/// Starts autoredeploy with the key and a fresh data folder, `target_vars` and then
/// `overrides`.
async fn spawn_app_with_vars(
    target_vars: Vec<(String, String)>,
    overrides: &[(&str, &str)],
) -> TestApp {
    crate::log_capture::install();
    let data = tempfile::tempdir().unwrap();
    let mut vars: Vec<(String, String)> = vec![
        (
            "AUTOREDEPLOY_DATA_DIR".into(),
            data.path().display().to_string(),
        ),
        ("DOCKER_HUB_KEY".into(), WEBHOOK_KEY.into()),
    ];
    vars.extend(target_vars);
    for (name, value) in overrides {
        vars.retain(|(existing, _)| existing != name);
        vars.push((name.to_string(), value.to_string()));
    }
    let settings = Settings::from_vars(vars).expect("test settings are valid");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let application = Application::new(listener, settings)
        .await
        .expect("application starts");
    let address = format!("http://{}", application.local_addr().unwrap());
    let events = application.subscribe();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(application.run(async {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        http: http_client(),
        events,
        stop: Some(stop),
        running: Some(running),
        _data: data,
    }
}

impl Drop for TestApp {
    /// Checks that nothing this test did put a secret in the log (see
    /// [`log_capture`](crate::log_capture) for what counts as this test's).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            crate::log_capture::assert_no_secret_logged_by_this_test();
        }
    }
}

/// What a test does when something it needs is missing from this machine: under CI (the
/// `CI` variable is set) it fails, saying what is missing; elsewhere it prints a `SKIPPED`
/// line the test harness does not swallow, and the caller returns without checking
/// anything.
pub fn skip_unless_ci(missing: &str) {
    // The test harness names each test's thread after the test.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {missing} (CI is set, so this cannot be skipped)");
    }
    // Straight to the process's stderr: `eprintln!` is captured, and hidden, for passing
    // tests.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {test}: {missing}; nothing was checked (under CI this fails) ***\n"
    );
}

/// An HTTP client for the tests; the TLS provider must be chosen before any client is built.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A Docker Hub push body for `repo_name` (and `tag`, absent in 2015-era payloads).
pub fn push_body(repo_name: &str, tag: Option<&str>) -> Value {
    let mut body: Value =
        serde_json::from_str(include_str!("../../fixtures/dockerhub/push.json")).unwrap();
    body["repository"]["repo_name"] = json!(repo_name);
    // The recorded callback is on Docker Hub: tests never call out of the machine.
    body.as_object_mut().unwrap().remove("callback_url");
    match tag {
        Some(tag) => body["push_data"]["tag"] = json!(tag),
        None => {
            body["push_data"].as_object_mut().unwrap().remove("tag");
        }
    }
    body
}

impl TestApp {
    /// Shuts the application down and waits until it has stopped (its data directory is
    /// free for another one).
    pub async fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(running) = self.running.take() {
            assert!(running.await.unwrap(), "the application stopped cleanly");
        }
    }

    pub async fn post_webhook(
        &self,
        query: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}/autoredeploy{query}", self.address))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("webhook request is answered")
    }

    /// Sends a push with the right key and checks it was accepted.
    pub async fn push(&self, repo_name: &str, tag: Option<&str>) -> Value {
        let response = self
            .post_webhook(
                &format!("?key={WEBHOOK_KEY}"),
                push_body(repo_name, tag).to_string(),
            )
            .await;
        assert_eq!(response.status(), 202);
        response.json().await.unwrap()
    }

    /// `GET` a history path (`/jobs`, `/jobs/3`) with the key as a bearer token.
    pub async fn history(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.address))
            .bearer_auth(WEBHOOK_KEY)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    /// Waits for the next job to end; returns its services' outcomes and its tally.
    pub async fn next_job(&mut self) -> (Vec<UnitOutcome>, JobOutcome) {
        let mut services = Vec::new();
        let wait = async {
            loop {
                match self.events.recv().await.expect("event stream open") {
                    DeployEvent::Unit(outcome) => services.push(outcome),
                    DeployEvent::Job(job) => return job,
                }
            }
        };
        let job = tokio::time::timeout(JOB_DEADLINE, wait)
            .await
            .expect("the job ends");
        (services, job)
    }

    /// Pushes and waits for that push's job.
    pub async fn push_and_wait(
        &mut self,
        repo_name: &str,
        tag: Option<&str>,
    ) -> (Vec<UnitOutcome>, JobOutcome) {
        self.push(repo_name, tag).await;
        self.next_job().await
    }
}

/// Names of the services whose outcome is `result` (`upgraded`, `skipped`, `failed`, …),
/// sorted.
pub fn named(outcomes: &[UnitOutcome], result: &str) -> Vec<String> {
    let mut names: Vec<String> = outcomes
        .iter()
        .filter(|o| o.outcome.end.as_str() == result)
        .map(|o| o.name.clone())
        .collect();
    names.sort();
    names
}
