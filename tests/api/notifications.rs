//! Notifications, the Docker Hub callback and `/metrics`: local receivers stand in for
//! Slack, Teams, Discord, the generic webhook and Docker Hub, each body is checked against
//! that service's documented format; a real beanstalkd receives symfoni/deployer's messages,
//! and `promtool` checks the metrics.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, WEBHOOK_KEY, push_body, skip_unless_ci, spawn_app_with};
use crate::support::fake_rancher::{FakeRancher, spec::service};
use crate::support::receiver::{NEVER, Receiver};

/// Part of every notification URL and callback the tests configure: it must appear in no
/// log line (see `log_capture`).
pub const NOTIFY_SECRET: &str = "notify-url-secret-61c7a0e2";

/// The key of `/metrics` in these tests.
const METRICS_KEY: &str = "metrics-key-0a9f3c5e7b1d";

/// A Docker Hub push of `repo_name:latest` whose callback goes to `callback`.
fn push_calling_back(repo_name: &str, callback: &str) -> String {
    let mut body = push_body(repo_name, Some("latest"));
    body["callback_url"] = json!(callback);
    body.to_string()
}

impl TestApp {
    /// Posts a Docker Hub push body with the key; returns the answer's status and body.
    async fn deliver_push(&self, body: String) -> (u16, Value) {
        let response = self
            .post_webhook(&format!("?key={WEBHOOK_KEY}"), body)
            .await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    /// `GET /metrics` with `key` as a bearer token, if any.
    async fn metrics(&self, key: Option<&str>) -> (u16, String, String) {
        let mut request = self.http.get(format!("{}/metrics", self.address));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, content_type, response.text().await.unwrap())
    }

    /// The value of the metric sample `series` (name and labels as printed), 0 if absent.
    async fn sample(&self, series: &str) -> f64 {
        let (_, _, text) = self.metrics(Some(METRICS_KEY)).await;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |value| value.trim().parse().unwrap())
    }

    /// Waits up to 30 s until the sample `series` is at least `value`.
    async fn wait_for_sample(&self, series: &str, value: f64) {
        for _ in 0..300 {
            if self.sample(series).await >= value {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{series} never reached {value}");
    }
}

#[tokio::test]
async fn every_channel_gets_its_documented_format_and_the_callback_its_state() {
    let rancher = FakeRancher::start(vec![service("web", "docker:myorg/web:latest")]).await;
    let receiver = Receiver::start(&[200]).await;
    let secret = |path: &str| receiver.url(&format!("/{path}/{NOTIFY_SECRET}"));
    let origin = receiver.url("");
    let (slack, teams, discord, webhook) = (
        secret("slack"),
        secret("teams"),
        secret("discord"),
        secret("webhook"),
    );
    let mut app = spawn_app_with(
        &rancher,
        &[
            ("SLACK_WEBHOOK_URL", &slack),
            ("SLACK_USERNAME", "deploys"),
            ("TEAMS_WEBHOOK_URL", &teams),
            ("DISCORD_WEBHOOK_URL", &discord),
            ("AUTOREDEPLOY_NOTIFY_URL", &webhook),
            ("AUTOREDEPLOY_CALLBACK_ORIGINS", &origin),
            ("AUTOREDEPLOY_PUBLIC_URL", "https://deploy.example.com/"),
        ],
    )
    .await;
    let callback = secret("callback");
    let (status, answer) = app
        .deliver_push(push_calling_back("myorg/web", &callback))
        .await;
    assert_eq!(status, 202, "{answer}");
    let job = answer["job"].as_i64().unwrap();
    let (_, outcome) = app.next_job().await;
    assert_eq!(outcome.upgraded, 1);

    let slack = &receiver.wait_for("/slack/", 1).await[0].body;
    assert_eq!(slack["username"], "deploys");
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(
            "autoredeploy job {job}: myorg/web:latest pushed (dockerhub): 1 upgraded"
        )) && text.contains("• rancher web: upgraded"),
        "{text}"
    );

    let teams = &receiver.wait_for("/teams/", 1).await[0].body;
    assert_eq!(teams["type"], "message");
    let card = &teams["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["type"], "AdaptiveCard");
    assert_eq!(card["content"]["body"][0]["type"], "TextBlock");
    assert_eq!(
        card["content"]["body"][1]["facts"][0]["title"],
        "rancher web"
    );

    let discord = &receiver.wait_for("/discord/", 1).await[0].body;
    assert!(discord["content"].as_str().unwrap().contains("1 upgraded"));
    assert_eq!(discord["allowed_mentions"]["parse"], json!([]));

    let delivered = &receiver.wait_for("/webhook/", 1).await[0];
    assert!(delivered.headers.contains_key("x-autoredeploy-delivery"));
    let document = &delivered.body;
    assert_eq!(document["job"], job);
    assert_eq!(document["state"], "done");
    assert_eq!(document["source"], "dockerhub");
    assert_eq!(document["image"], "docker.io/myorg/web:latest");
    assert_eq!(document["pusher"], "ci-bot");
    assert_eq!(document["digest"], Value::Null);
    for time in ["received_at", "started_at", "finished_at"] {
        assert!(document[time].as_str().unwrap().ends_with('Z'), "{time}");
    }
    let unit = &document["units"][0];
    assert_eq!(unit["target"], "rancher");
    assert_eq!(unit["name"], "web");
    assert_eq!(unit["outcome"], "upgraded");
    assert_eq!(unit["reason"], Value::Null);

    let called_back = &receiver.wait_for("/callback/", 1).await[0].body;
    assert_eq!(called_back["state"], "success");
    assert_eq!(
        called_back["target_url"],
        format!("https://deploy.example.com/jobs/{job}")
    );
    assert!(called_back["description"].as_str().unwrap().chars().count() <= 255);
    assert!(called_back["context"].as_str().unwrap().chars().count() <= 100);

    // A push that matches nothing tells no one (`changes`), but its callback is owed.
    let (status, _) = app
        .deliver_push(push_calling_back("myorg/nothing-runs-this", &callback))
        .await;
    assert_eq!(status, 202);
    app.next_job().await;
    receiver.wait_for("/callback/", 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for channel in ["/slack/", "/teams/", "/discord/", "/webhook/"] {
        assert_eq!(receiver.received_at(channel).len(), 1, "{channel}");
    }
}

#[tokio::test]
async fn a_callback_outside_the_allowed_origins_is_never_called() {
    let rancher = FakeRancher::start(vec![service("web", "docker:myorg/web:latest")]).await;
    let receiver = Receiver::start(&[200]).await;
    // Only Docker Hub's origin is allowed by default.
    let mut app = spawn_app_with(&rancher, &[]).await;
    let callback = receiver.url(&format!("/callback/{NOTIFY_SECRET}"));
    let (status, _) = app
        .deliver_push(push_calling_back("myorg/web", &callback))
        .await;
    assert_eq!(status, 202);
    let (_, outcome) = app.next_job().await;
    assert_eq!(outcome.upgraded, 1, "the push itself is deployed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(receiver.received().is_empty());
}

/// A service running `myorg/web:latest`, a generic-webhook receiver answering `script`,
/// and an app notifying it, with the metrics on and `more` settings.
async fn notifying_webhook(
    script: &[u16],
    more: &[(&str, &str)],
) -> (FakeRancher, Receiver, TestApp) {
    let rancher = FakeRancher::start(vec![service("web", "docker:myorg/web:latest")]).await;
    let receiver = Receiver::start(script).await;
    let url = receiver.url(&format!("/webhook/{NOTIFY_SECRET}"));
    let mut settings = vec![
        ("AUTOREDEPLOY_NOTIFY_URL", url.as_str()),
        ("AUTOREDEPLOY_METRICS_KEY", METRICS_KEY),
    ];
    settings.extend_from_slice(more);
    let app = spawn_app_with(&rancher, &settings).await;
    (rancher, receiver, app)
}

#[tokio::test]
async fn a_receiver_that_fails_then_recovers_gets_the_notification_once() {
    let (_rancher, receiver, mut app) = notifying_webhook(&[500, 503, 200], &[]).await;
    let (_, outcome) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(outcome.upgraded, 1);
    let received = receiver.wait_for("/webhook/", 3).await;
    let answered: Vec<u16> = received.iter().map(|request| request.answered).collect();
    assert_eq!(answered, [500, 503, 200]);
    let deliveries: Vec<&str> = received
        .iter()
        .map(|request| request.headers["x-autoredeploy-delivery"].to_str().unwrap())
        .collect();
    assert!(
        deliveries.iter().all(|id| *id == deliveries[0]),
        "one delivery, tried again"
    );
    // Nothing more once it arrived.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.received().len(), 3);
    assert_eq!(
        app.sample(r#"autoredeploy_notifications_total{channel="webhook",result="failed"}"#)
            .await,
        2.0
    );
    assert_eq!(
        app.sample(r#"autoredeploy_notifications_total{channel="webhook",result="sent"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_receiver_that_never_recovers_costs_the_job_nothing_and_is_given_up() {
    // It holds every request without answering, then times out, then refuses.
    let retry_for = [("AUTOREDEPLOY_NOTIFY_RETRY_FOR", "2s")];
    let (_rancher, receiver, mut app) = notifying_webhook(&[NEVER, 503], &retry_for).await;
    let (units, outcome) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(outcome.upgraded, 1);
    assert!(
        units
            .iter()
            .all(|unit| unit.outcome.end.as_str() == "upgraded")
    );
    // While the first notification hangs (10 s, until it times out), a push is deployed
    // at once.
    receiver.wait_for("/webhook/", 1).await;
    let started = std::time::Instant::now();
    let (_, outcome) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(outcome.upgraded, 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the job waited for the notification: {:?}",
        started.elapsed()
    );
    // Both are given up once AUTOREDEPLOY_NOTIFY_RETRY_FOR has passed.
    app.wait_for_sample(
        r#"autoredeploy_notifications_total{channel="webhook",result="dropped"}"#,
        2.0,
    )
    .await;
    let attempts = receiver.received().len();
    assert!(attempts >= 3, "{attempts} attempts");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver.received().len(),
        attempts,
        "no attempt after they were dropped"
    );
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_the_notification_is_dropped_at_once() {
    let (_rancher, receiver, mut app) = notifying_webhook(&[302, 200], &[]).await;
    app.push_and_wait("myorg/web", Some("latest")).await;
    app.wait_for_sample(
        r#"autoredeploy_notifications_total{channel="webhook",result="dropped"}"#,
        1.0,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let paths: Vec<String> = receiver.received().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [format!("/webhook/{NOTIFY_SECRET}")],
        "neither followed nor tried again"
    );
}

#[tokio::test]
async fn notifications_left_in_the_outbox_are_sent_after_a_restart() {
    let rancher = FakeRancher::start(vec![service("web", "docker:myorg/web:latest")]).await;
    // The receiver's port refuses connections until it is started.
    let (reserved, port) = Receiver::reserve();
    let url = format!("http://127.0.0.1:{port}/webhook/{NOTIFY_SECRET}");
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().display().to_string();
    let settings = [
        ("AUTOREDEPLOY_DATA_DIR", data_dir.as_str()),
        ("AUTOREDEPLOY_NOTIFY_URL", &url),
        ("AUTOREDEPLOY_METRICS_KEY", METRICS_KEY),
    ];
    let mut app = spawn_app_with(&rancher, &settings).await;
    let (_, outcome) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(outcome.upgraded, 1);
    let job = outcome.job.0;
    app.wait_for_sample(
        r#"autoredeploy_notifications_total{channel="webhook",result="failed"}"#,
        1.0,
    )
    .await;
    app.stop().await;

    let receiver = Receiver::start_on(reserved, &[200]);
    let _restarted = spawn_app_with(&rancher, &settings).await;
    let received = receiver.wait_for("/webhook/", 1).await;
    assert_eq!(received[0].body["job"], job);
    assert_eq!(received[0].body["units"][0]["outcome"], "upgraded");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.received().len(), 1, "sent once");
}

/// Starts Debian's beanstalkd on a free port of 127.0.0.1; `None` when it is missing.
fn start_beanstalkd() -> Option<(std::process::Child, u16)> {
    let port = crate::support::engine::free_port();
    let child = std::process::Command::new("beanstalkd")
        .args(["-l", "127.0.0.1", "-p", &port.to_string()])
        .spawn()
        .ok()?;
    Some((child, port))
}

/// Reserves every message `tube` holds, waiting up to `first` for the first one.
fn reserve_all(port: u16, tube: &str, first: Duration) -> Vec<String> {
    let mut client = None;
    for _ in 0..50 {
        if let Ok(connected) = beanstalkc::Beanstalkc::new()
            .host("127.0.0.1")
            .port(port)
            .connect()
        {
            client = Some(connected);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut client = client.expect("beanstalkd accepts connections");
    client.watch(tube).unwrap();
    let mut messages = Vec::new();
    let mut wait = first;
    while let Ok(mut job) = client.reserve_with_timeout(wait) {
        messages.push(String::from_utf8(job.body().to_vec()).unwrap());
        job.delete().unwrap();
        wait = Duration::from_secs(1);
    }
    messages
}

#[tokio::test]
async fn symfoni_deployer_s_message_is_put_into_its_beanstalkd_tube_per_upgraded_unit() {
    let Some((mut beanstalkd, port)) = start_beanstalkd() else {
        skip_unless_ci("beanstalkd is not installed (Debian package `beanstalkd`)");
        return;
    };
    let rancher = FakeRancher::start(vec![
        service("blog", "docker:me/blog:v1.12"),
        service("blog-worker", "docker:me/blog:v1.12"),
        service("shop", "docker:me/shop:v1.12"),
    ])
    .await;
    // symfoni/deployer's README, word for word: "I just deployed {{.Artifact}} for
    // {{.ServiceName}}, base64-encoded.
    let flags = format!(
        r#"{{"addr": "127.0.0.1:{port}", "tube": "jobs", "template": "IkkganVzdCBkZXBsb3llZCB7ey5BcnRpZmFjdH19IGZvciB7ey5TZXJ2aWNlTmFtZX19"}}"#
    );
    let mut app = spawn_app_with(&rancher, &[("NOTIFY_FLAGS", &flags)]).await;
    let (_, outcome) = app.push_and_wait("me/blog", Some("v1.12")).await;
    assert_eq!(outcome.upgraded, 2);
    let mut messages =
        tokio::task::spawn_blocking(move || reserve_all(port, "jobs", Duration::from_secs(30)))
            .await
            .unwrap();
    messages.sort();
    assert_eq!(
        messages,
        [
            "\"I just deployed me/blog:v1.12 for blog",
            "\"I just deployed me/blog:v1.12 for blog-worker",
        ]
    );
    let _ = beanstalkd.kill();
    let _ = beanstalkd.wait();
}

#[tokio::test]
async fn metrics_are_off_without_their_key_and_count_what_happens() {
    let rancher = FakeRancher::start(vec![service("web", "docker:myorg/web:latest")]).await;
    let off = spawn_app_with(&rancher, &[]).await;
    assert_eq!(off.metrics(Some(METRICS_KEY)).await.0, 404);

    let mut app = spawn_app_with(&rancher, &[("AUTOREDEPLOY_METRICS_KEY", METRICS_KEY)]).await;
    assert_eq!(app.metrics(None).await.0, 401);
    assert_eq!(
        app.metrics(Some(WEBHOOK_KEY)).await.0,
        401,
        "the webhook key is not the metrics key"
    );
    let (status, content_type, _) = app.metrics(Some(METRICS_KEY)).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );

    let accepted = r#"autoredeploy_pushes_total{source="dockerhub",answer="accepted"}"#;
    let refused = r#"autoredeploy_pushes_total{source="dockerhub",answer="401"}"#;
    let changed = r#"autoredeploy_jobs_total{outcome="changed"}"#;
    let upgraded = r#"autoredeploy_units_total{target="rancher",outcome="upgraded"}"#;
    let deployed = r#"autoredeploy_push_to_deployed_seconds_count{target="rancher"}"#;
    let listed = r#"autoredeploy_platform_requests_total{platform="rancher",kind="GET /services",result="2xx"}"#;
    let before = [accepted, refused, changed, upgraded, deployed, listed];
    let mut counts = Vec::new();
    for series in before {
        counts.push(app.sample(series).await);
    }
    assert_eq!(counts, [0.0; 6]);

    let wrong_key = app
        .post_webhook(
            "?key=wrong",
            push_body("myorg/web", Some("latest")).to_string(),
        )
        .await;
    assert_eq!(wrong_key.status(), 401);
    app.push_and_wait("myorg/web", Some("latest")).await;
    for series in [accepted, refused, changed, upgraded, deployed] {
        assert_eq!(app.sample(series).await, 1.0, "{series}");
    }
    // The pages of the collection, and the polls of the upgrade's progress.
    assert!(app.sample(listed).await >= 1.0, "{listed}");
    let (_, _, text) = app.metrics(Some(METRICS_KEY)).await;
    assert!(text.contains("autoredeploy_queue_depth 0"), "{text}");
    assert!(
        !text.contains("myorg/web"),
        "no image name in a label: {text}"
    );

    let checked = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut promtool) = checked else {
        skip_unless_ci("promtool is not installed (Debian package `prometheus`)");
        return;
    };
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
