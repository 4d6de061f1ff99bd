//! What reaches the log: one line per service outcome, and never a secret.

use serde_json::Value;

use crate::helpers::{WEBHOOK_KEY, spawn_app};
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
        for field in ["service_id", "service", "image", "result", "duration_ms"] {
            assert!(line.get(field).is_some(), "{field} missing from {line}");
        }
    }
    let web = outcome_lines
        .iter()
        .find(|l| l["service"] == "web")
        .unwrap();
    assert_eq!(
        (web["service_id"].as_str(), web["result"].as_str()),
        (Some("1s1"), Some("upgraded"))
    );
    assert_eq!(web["image"], "docker.io/myorg/web:latest");
    let kept = outcome_lines
        .iter()
        .find(|l| l["service"] == "kept")
        .unwrap();
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
