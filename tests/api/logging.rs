//! What reaches the log: one line per service outcome, and never a secret.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};

use tracing_subscriber::filter::dynamic_filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::prelude::*;

use serde_json::Value;

use crate::fake_rancher::{self, FakeRancher, service};
use crate::helpers::{WEBHOOK_KEY, spawn_app};

/// Collects everything written to the log.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

thread_local! {
    /// The buffer of the test running on this thread, if it captures the log.
    static CAPTURE: RefCell<Option<Captured>> = const { RefCell::new(None) };
}

/// Writes to the capturing test's buffer, or nowhere.
struct ThreadWriter;

impl Write for ThreadWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|slot| {
            if let Some(captured) = slot.borrow().as_ref() {
                captured.0.lock().unwrap().extend_from_slice(bytes);
            }
        });
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures every event, at every level, emitted on this thread from now on. `#[tokio::test]`
/// runs every task of the test on its own thread, so the whole application is captured.
///
/// One global subscriber serves the whole test binary, with a filter decided per event: a
/// thread-local subscriber, or a filter whose answer tracing caches per callsite, would let
/// the tests running on other threads switch events off for this one.
fn capture_this_thread() -> Captured {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(|| ThreadWriter)
            .with_filter(dynamic_filter_fn(|_, _| {
                CAPTURE.with(|slot| slot.borrow().is_some())
            }));
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .expect("no other global subscriber in the tests");
    });
    let captured = Captured::default();
    CAPTURE.with(|slot| *slot.borrow_mut() = Some(captured.clone()));
    captured
}

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

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
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
