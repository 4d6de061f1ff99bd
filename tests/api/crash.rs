//! The real binary, killed at the worst moments and started again on the same data
//! directory: no accepted push is lost and no service is upgraded twice.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use crate::helpers::{WEBHOOK_KEY, http_client, push_body};
use crate::log_capture;
use crate::support::fake_rancher::{self, FakeRancher, service};

const BINARY: &str = env!("CARGO_BIN_EXE_autoredeploy");
/// Bound on waiting for the binary to start, stop, or finish a job.
const PATIENCE: Duration = Duration::from_secs(60);

pub(crate) struct Binary {
    child: Child,
    address: String,
    /// Reads the binary's log into the secret audit until it exits.
    log_reader: tokio::task::JoinHandle<()>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn command(rancher: &FakeRancher, data: &Path) -> Command {
    let target = [
        ("RANCHER_HOST", rancher.host()),
        ("RANCHER_PROJECT_ID", fake_rancher::PROJECT_ID.to_owned()),
        ("RANCHER_API_KEY", fake_rancher::ACCESS_KEY.to_owned()),
        ("RANCHER_API_SECRET", fake_rancher::SECRET_KEY.to_owned()),
        ("RANCHER_UPGRADE_POLL_MS", "50".to_owned()),
        ("RANCHER_RETRY_MAX_DELAY_MS", "100".to_owned()),
    ];
    command_for(&target, data)
}

/// The binary with the key, `data` as its data folder and the variables of `target`.
fn command_for(target: &[(&str, String)], data: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .env_clear()
        .env("AUTOREDEPLOY_DATA_DIR", data)
        .env("DOCKER_HUB_KEY", WEBHOOK_KEY)
        .envs(target.iter().map(|(name, value)| (name, value)))
        .env("AUTOREDEPLOY_MAX_CONCURRENT_UPGRADES", "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

impl Binary {
    async fn start(rancher: &FakeRancher, data: &Path) -> Self {
        Self::start_command(command(rancher, data)).await
    }

    /// Starts the binary with the variables of `target` on `data`, and waits until it
    /// answers.
    pub(crate) async fn start_for(target: &[(&str, String)], data: &Path) -> Self {
        Self::start_command(command_for(target, data)).await
    }

    async fn start_command(mut command: Command) -> Self {
        let port = free_port();
        let mut child = command
            .env("BIND_ADDRESS", "127.0.0.1")
            .env("BIND_PORT", port.to_string())
            .env("RUST_LOG", "trace")
            .stdout(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let mut log = child.stdout.take().unwrap();
        let log_reader = tokio::spawn(async move {
            let mut text = String::new();
            let _ = log.read_to_string(&mut text).await;
            log_capture::audit(&text);
        });
        let address = format!("http://127.0.0.1:{port}");
        let http = http_client();
        let started = tokio::time::Instant::now();
        while http.get(format!("{address}/health")).send().await.is_err() {
            assert!(
                started.elapsed() < PATIENCE,
                "the binary did not answer /health"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            child,
            address,
            log_reader,
        }
    }

    async fn push(&self, repo_name: &str) -> i64 {
        let answer = http_client()
            .post(format!("{}/autoredeploy?key={WEBHOOK_KEY}", self.address))
            .header("content-type", "application/json")
            .body(push_body(repo_name, Some("latest")).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202);
        answer.json::<Value>().await.unwrap()["job"]
            .as_i64()
            .unwrap()
    }

    /// The address it answers on.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    pub(crate) async fn job(&self, id: i64) -> Value {
        let answer = http_client()
            .get(format!("{}/jobs/{id}", self.address))
            .bearer_auth(WEBHOOK_KEY)
            .send()
            .await
            .unwrap();
        answer.json().await.unwrap()
    }

    pub(crate) async fn wait_until_done(&self, id: i64) -> Value {
        self.wait_for(id, |job| job["state"] == "done").await
    }

    /// Reads job `id` until `done` says it is as awaited; returns it then.
    pub(crate) async fn wait_for(&self, id: i64, done: impl Fn(&Value) -> bool) -> Value {
        let started = tokio::time::Instant::now();
        loop {
            let job = self.job(id).await;
            if done(&job) {
                return job;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "job {id} never got there: {job}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn kill_hard(mut self) {
        self.child.kill().await.unwrap();
        self.audit_log().await;
    }

    async fn wait(mut self) -> std::process::ExitStatus {
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("it stops")
            .unwrap();
        self.audit_log().await;
        status
    }

    /// Once the binary has exited: checks that its log carried no secret.
    async fn audit_log(self) {
        self.log_reader.await.unwrap();
        log_capture::assert_no_secret_logged_by_this_test();
    }
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = tokio::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < PATIENCE, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn environment() -> Vec<crate::support::fake_rancher::ServiceSpec> {
    vec![
        service("web-1", "docker:myorg/web:latest"),
        service("web-2", "docker:myorg/web:latest"),
        service("web-3", "docker:myorg/web:latest"),
    ]
}

fn assert_all_upgraded_once(rancher: &FakeRancher, job: &Value) {
    let expected = [
        ("1s1".to_owned(), 1),
        ("1s2".to_owned(), 1),
        ("1s3".to_owned(), 1),
    ]
    .into();
    assert_eq!(rancher.upgrades_per_service(), expected);
    assert_eq!(rancher.refusals(), 0);
    for id in ["1s1", "1s2", "1s3"] {
        let service = rancher.service(id);
        assert_eq!(service["state"], "active", "{id}");
        assert_ne!(
            service["launchConfig"]["version"], "0",
            "{id} runs the new launch config"
        );
        assert_eq!(
            service["launchConfig"]["labels"]["io.rancher.container.pull_image"],
            "always"
        );
    }
    assert_eq!(job["pushes"], 1);
    assert_eq!(job["upgraded"], 3, "{job}");
    for unit in job["units"].as_array().unwrap() {
        assert_eq!(unit["end"], "upgraded", "{job}");
        assert_eq!(unit["target"], "rancher", "{job}");
    }
}

#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// Right after the push was answered 202.
    AfterAccepted,
    /// Right after Rancher received the first upgrade.
    AfterUpgradePosted,
    /// While polling a service that is upgrading.
    WhileWaitingForUpgraded,
    /// While the first service is finishing its upgrade.
    WhileFinishing,
}

async fn crash_and_recover(kill_point: KillPoint) {
    let rancher = FakeRancher::start(environment()).await;
    rancher.set_upgrade_time(Duration::from_millis(600));
    if matches!(kill_point, KillPoint::WhileFinishing) {
        rancher.set_finish_time(Duration::from_millis(800));
    }
    let data = tempfile::tempdir().unwrap();
    let first_run = Binary::start(&rancher, data.path()).await;
    let job = first_run.push("myorg/web").await;
    match kill_point {
        KillPoint::AfterAccepted => {}
        KillPoint::AfterUpgradePosted => {
            until("an upgrade", || !rancher.upgrade_bodies().is_empty()).await
        }
        KillPoint::WhileWaitingForUpgraded => {
            until("an upgrade", || !rancher.upgrade_bodies().is_empty()).await;
            let posted = rancher.requests().len();
            until("polling", || rancher.requests().len() >= posted + 3).await;
        }
        KillPoint::WhileFinishing => {
            until("a finish", || {
                !rancher.actions_posted("finishupgrade").is_empty()
            })
            .await
        }
    }
    first_run.kill_hard().await;

    let second_run = Binary::start(&rancher, data.path()).await;
    let done = second_run.wait_until_done(job).await;
    assert_all_upgraded_once(&rancher, &done);
    second_run.kill_hard().await;
}

#[tokio::test]
async fn killed_after_the_202_the_push_is_still_deployed() {
    crash_and_recover(KillPoint::AfterAccepted).await;
}

#[tokio::test]
async fn killed_after_posting_an_upgrade_it_is_followed_not_repeated() {
    crash_and_recover(KillPoint::AfterUpgradePosted).await;
}

#[tokio::test]
async fn killed_while_waiting_for_upgraded_the_wait_is_resumed() {
    crash_and_recover(KillPoint::WhileWaitingForUpgraded).await;
}

#[tokio::test]
async fn killed_while_finishing_the_finish_is_completed() {
    crash_and_recover(KillPoint::WhileFinishing).await;
}

/// Parks the next `action` on arrival, kills the binary while it waits for the answer,
/// drops the request unapplied, and restarts on the same data directory.
async fn killed_while_posting(action: &str) -> (FakeRancher, Value) {
    let rancher = FakeRancher::start(environment()).await;
    rancher.hold_next(action);
    let data = tempfile::tempdir().unwrap();
    let first_run = Binary::start(&rancher, data.path()).await;
    let job = first_run.push("myorg/web").await;
    until("the held request", || rancher.is_holding()).await;
    first_run.kill_hard().await;
    rancher.release(false);

    let second_run = Binary::start(&rancher, data.path()).await;
    let done = second_run.wait_until_done(job).await;
    assert_all_upgraded_once(&rancher, &done);
    second_run.kill_hard().await;
    (rancher, done)
}

/// The steps each service went through, sorted, so that which service was caught by the
/// kill does not matter.
fn steps_of_each_service(job: &Value) -> Vec<Vec<String>> {
    let mut steps: Vec<Vec<String>> = job["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|service| {
            service["steps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["step"].as_str().unwrap().to_owned())
                .collect()
        })
        .collect();
    steps.sort();
    steps
}

#[tokio::test]
async fn killed_before_the_upgrade_reached_rancher_it_is_posted_again_once() {
    let (_, job) = killed_while_posting("upgrade").await;
    // The one caught: recorded as upgrading, found unchanged in Rancher, posted again.
    let once = ["planned", "upgrading", "finishing", "upgraded"];
    let again = ["planned", "upgrading", "upgrading", "finishing", "upgraded"];
    assert_eq!(
        steps_of_each_service(&job),
        [&once[..], &once[..], &again[..]]
    );
}

#[tokio::test]
async fn killed_with_a_service_left_upgraded_it_is_finished_after_the_restart() {
    let (rancher, job) = killed_while_posting("finishupgrade").await;
    let once = ["planned", "upgrading", "finishing", "upgraded"];
    assert_eq!(steps_of_each_service(&job), [once; 3]);
    assert_eq!(rancher.actions_posted("finishupgrade").len(), 3);
}

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_end_and_the_rest_resumes_after_restart() {
    let rancher = FakeRancher::start(environment()).await;
    rancher.hold_next("finishupgrade");
    let data = tempfile::tempdir().unwrap();
    let first_run = Binary::start(&rancher, data.path()).await;
    let job = first_run.push("myorg/web").await;
    until("the finish in flight", || rancher.is_holding()).await;
    let address = first_run.address.clone();
    let pid = first_run.child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap()
            .success()
    );
    // While the request is in flight the server keeps answering, and refuses new pushes.
    let refused = http_client()
        .post(format!("{address}/autoredeploy?key={WEBHOOK_KEY}"))
        .header("content-type", "application/json")
        .body(push_body("myorg/api", Some("latest")).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    rancher.release(true);
    let status = first_run.wait().await;
    assert!(status.success(), "exit status {status}");
    assert_eq!(
        rancher.actions_posted("finishupgrade").len(),
        1,
        "the request in flight ended"
    );
    assert_eq!(
        rancher.upgrade_bodies().len(),
        1,
        "no new step after the signal"
    );

    let printed = command(&rancher, data.path())
        .args(["jobs", &job.to_string(), "--json"])
        .stdout(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let journaled: Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(
        journaled["state"], "running",
        "left for the next start: {journaled}"
    );
    assert_eq!(journaled["pending"], 3);

    let second_run = Binary::start(&rancher, data.path()).await;
    let done = second_run.wait_until_done(job).await;
    assert_all_upgraded_once(&rancher, &done);
    assert_eq!(
        rancher.actions_posted("finishupgrade").len(),
        3,
        "the finished one was not finished again"
    );
    second_run.kill_hard().await;
}

#[tokio::test]
async fn an_unusable_data_directory_stops_the_start_with_its_name() {
    let rancher = FakeRancher::start(vec![]).await;
    let file = tempfile::NamedTempFile::new().unwrap();
    let output = command(&rancher, &file.path().join("data"))
        .env("BIND_PORT", free_port().to_string())
        .stdout(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(
        log.contains("AUTOREDEPLOY_DATA_DIR") && log.contains("writable"),
        "{log}"
    );
}
