//! The log of the whole test binary, at `trace` level.
//!
//! One global subscriber serves every test. It feeds two layers: an audit that reads every
//! event of every test — ours, and through the `log` bridge those of the HTTP client and TLS
//! stacks, as in production — and records each line that carries a secret; and a capture
//! that a test can switch on for its own thread to read what was logged.
//!
//! Every [`TestApp`](crate::helpers::TestApp) checks the audit when it is dropped, and the
//! crash tests feed the real binary's output (run with `RUST_LOG=trace`) to it, so the whole
//! suite's traffic is checked for secrets.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};

use base64::Engine;
use serde_json::Value;
use tracing_subscriber::filter::{LevelFilter, dynamic_filter_fn};
use tracing_subscriber::prelude::*;

use crate::helpers::WEBHOOK_KEY;
use crate::support::fake_rancher;

/// Log lines that carried a secret, from any test of this process.
static LEAKS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// What must never be logged: the keys used by the tests, the Basic credentials, bearer
/// tokens, and query strings holding a key.
fn secrets() -> Vec<String> {
    vec![
        WEBHOOK_KEY.to_owned(),
        fake_rancher::SECRET_KEY.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            fake_rancher::ACCESS_KEY,
            fake_rancher::SECRET_KEY
        )),
        "Basic ".to_owned(),
        "Bearer ".to_owned(),
        "key=".to_owned(),
    ]
}

/// Records `text` (one or more log lines) if it carries a secret.
pub fn audit(text: &str) {
    let secrets = secrets();
    for line in text.lines() {
        if secrets.iter().any(|secret| line.contains(secret.as_str())) {
            LEAKS.lock().unwrap().push(line.to_owned());
        }
    }
}

/// Fails if any log line so far carried a secret.
pub fn assert_no_secret_logged() {
    let leaks = LEAKS.lock().unwrap();
    assert!(leaks.is_empty(), "secrets were logged: {leaks:#?}");
}

/// Hands every formatted event to [`audit`].
struct AuditWriter;

impl Write for AuditWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        audit(&String::from_utf8_lossy(bytes));
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the subscriber once for the whole test binary.
pub fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let audit = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(|| AuditWriter)
            .with_filter(LevelFilter::TRACE);
        let capture = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(|| ThreadWriter)
            .with_filter(dynamic_filter_fn(|_, _| {
                CAPTURE.with(|slot| slot.borrow().is_some())
            }));
        tracing_subscriber::registry()
            .with(audit)
            .with(capture)
            .try_init()
            .expect("no other global subscriber in the tests");
    });
}

/// Everything one test captured.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// The captured events, one JSON object each.
    pub fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The captured log as written.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
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
/// The filter is decided per event: a thread-local subscriber, or a filter whose answer
/// tracing caches per callsite, would let the tests running on other threads switch events
/// off for this one.
pub fn capture_this_thread() -> Captured {
    install();
    let captured = Captured::default();
    CAPTURE.with(|slot| *slot.borrow_mut() = Some(captured.clone()));
    captured
}
