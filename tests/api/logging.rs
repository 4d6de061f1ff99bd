//! What reaches the log: one line per service outcome, and never a secret.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::fake_rancher::{self, FakeRancher, service};
use crate::helpers::{WEBHOOK_KEY, spawn_app};

/// Collects everything written to the log.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

// `#[tokio::test]` runs every task on this thread, so a thread-local subscriber sees them all.
#[tokio::test]
async fn every_outcome_is_one_line_and_no_secret_is_written() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let rancher = FakeRancher::start(vec![
        service("web", "docker:myorg/web:latest"),
        service("kept", "docker:myorg/web:latest")
            .label("tech.manas.service.autoredeploy", "false"),
    ])
    .await;
    let mut app = spawn_app(&rancher).await;
    let refused = app.post_webhook("?key=a-wrong-key-guess", "{}").await;
    assert_eq!(refused.status(), 401);
    app.push_and_wait("myorg/web", Some("latest")).await;

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

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for secret in [WEBHOOK_KEY, "a-wrong-key-guess", fake_rancher::SECRET_KEY] {
        assert!(!text.contains(secret), "{secret} was logged");
    }
}
