//! What reaches the log: one line per service outcome, and never a secret.

use serde_json::Value;

use crate::helpers::{WEBHOOK_KEY, push_body, spawn_app, spawn_app_with};
use crate::log_capture::capture_this_thread;
use crate::support::fake_rancher::{self, FakeRancher, service};

#[tokio::test]
async fn every_outcome_is_one_line_and_no_secret_is_written() {
    let captured = capture_this_thread();

    let rancher = FakeRancher::start(vec![
        service("web", "docker:myorg/web:latest"),
        service("kept", "docker:myorg/web:latest")
            .label("tech.manas.service.autoredeploy", "false"),
    ])
    .await;
    let mut app = spawn_app(&rancher).await;
    let refused = app.post_webhook("?key=a-wrong-key-guess", "{}").await;
    assert_eq!(refused.status(), 401);
    let (_, job) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(app.history(&format!("/jobs/{}", job.job)).await.0, 200);
    let with_query_key = app
        .http
        .get(format!("{}/jobs?key={WEBHOOK_KEY}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(with_query_key.status(), 200);

    let lines = captured.lines();
    let outcome_lines: Vec<&Value> = lines
        .iter()
        .filter(|line| line.get("result").is_some())
        .collect();
    assert_eq!(outcome_lines.len(), 2, "{outcome_lines:?}");
    for line in &outcome_lines {
        for field in [
            "target",
            "unit_id",
            "unit",
            "image",
            "result",
            "duration_ms",
        ] {
            assert!(line.get(field).is_some(), "{field} missing from {line}");
        }
    }
    let web = outcome_lines.iter().find(|l| l["unit"] == "web").unwrap();
    assert_eq!(
        (web["unit_id"].as_str(), web["result"].as_str()),
        (Some("1s1"), Some("upgraded"))
    );
    assert_eq!(web["image"], "docker.io/myorg/web:latest");
    let kept = outcome_lines.iter().find(|l| l["unit"] == "kept").unwrap();
    assert_eq!(kept["result"], "skipped");
    assert!(kept["reason"].as_str().unwrap().contains("\"false\""));
    assert!(lines.iter().any(|l| l["message"] == "push handled"));

    let webhook_requests: Vec<&Value> = lines
        .iter()
        .filter(|line| line["message"] == "request" && line["path"] == "/autoredeploy")
        .collect();
    assert_eq!(
        webhook_requests.len(),
        2,
        "one request line each, query left out"
    );
    assert_eq!(webhook_requests[0]["status"], 401);
    let from_the_http_stack = |prefix: &str| {
        lines.iter().any(|line| {
            line["target"]
                .as_str()
                .unwrap_or_default()
                .starts_with(prefix)
        })
    };
    assert!(
        from_the_http_stack("hyper_util") && from_the_http_stack("reqwest"),
        "the HTTP client's own trace events are in the log too"
    );
    let text = captured.text();
    for secret in [
        WEBHOOK_KEY,
        "a-wrong-key-guess",
        fake_rancher::SECRET_KEY,
        "key=",
        "Basic ",
    ] {
        assert!(!text.contains(secret), "{secret} was logged");
    }
}

#[tokio::test]
async fn an_unprotected_rancher_link_is_warned_about_at_start() {
    let captured = capture_this_thread();
    let rancher = FakeRancher::start(vec![]).await;
    let _app = crate::helpers::spawn_app_with(
        &rancher,
        &[
            ("RANCHER_HOST", "http://203.0.113.10:9"),
            ("RANCHER_INSECURE_SKIP_VERIFY", "true"),
        ],
    )
    .await;
    let warned = |needle: &str| {
        captured.lines().iter().any(|line| {
            line["level"] == "WARN"
                && line["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(needle)
        })
    };
    for _ in 0..200 {
        if warned("plain http") && warned("RANCHER_INSECURE_SKIP_VERIFY") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("missing warnings: {:?}", captured.lines());
}

#[tokio::test]
async fn a_push_with_the_right_key_refused_by_the_lockout_is_logged_as_an_error() {
    let captured = capture_this_thread();
    let rancher = FakeRancher::start(vec![]).await;
    let app = spawn_app_with(&rancher, &[("AUTOREDEPLOY_AUTH_FAILURES_PER_MINUTE", "2")]).await;
    let body = push_body("myorg/web", Some("latest")).to_string();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let guess = app
            .post_webhook("?key=a-wrong-key-guess", body.clone())
            .await;
        statuses.push(guess.status().as_u16());
    }
    let right_key = app.post_webhook(&format!("?key={WEBHOOK_KEY}"), body).await;
    statuses.push(right_key.status().as_u16());
    assert_eq!(statuses, [401, 401, 429, 429]);

    let refusals: Vec<(String, String)> = captured
        .lines()
        .iter()
        .filter(|line| {
            line["target"]
                .as_str()
                .is_some_and(|target| target.starts_with("autoredeploy"))
                && line["message"]
                    .as_str()
                    .is_some_and(|message| message.contains("refused"))
        })
        .map(|line| {
            (
                line["level"].as_str().unwrap_or_default().to_owned(),
                line["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let levels: Vec<&str> = refusals.iter().map(|(level, _)| level.as_str()).collect();
    assert_eq!(
        levels,
        ["WARN", "WARN", "WARN", "ERROR"],
        "wrong keys are warnings, the lost push an error: {refusals:#?}"
    );
    let (_, lost) = &refusals[3];
    assert!(
        lost.contains("right key") && lost.contains("lost"),
        "{lost}"
    );
    let text = captured.text();
    for secret in [WEBHOOK_KEY, "a-wrong-key-guess", "key="] {
        assert!(!text.contains(secret), "{secret} was logged");
    }
}
