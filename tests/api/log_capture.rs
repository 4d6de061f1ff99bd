//! The log of the whole test binary, at `trace` level.
//!
//! One global subscriber serves every test. It feeds two layers: an audit that reads every
//! event of every test — ours, and through the `log` bridge those of the HTTP client and TLS
//! stacks, as in production — and records each line that carries a secret, with the thread
//! that logged it; and a capture that a test can switch on for its own thread to read what
//! was logged.
//!
//! A line is the test's whose thread logged it. The test harness runs each test on a thread
//! of its own, and `#[tokio::test]` runs the test's runtime on it (a current-thread runtime),
//! so every task the application, its HTTP client and the fake Rancher spawn logs there.
//! Each [`TestApp`](crate::helpers::TestApp) checks, when dropped, the lines of its own
//! thread only; the crash tests feed the real binary's output (run with `RUST_LOG=trace`)
//! to the audit from their own thread and check it the same way.
//!
//! No check owns the lines logged on other threads — the journal's thread, tokio's blocking
//! pool, threads a test starts — nor those a test logs after its last check, or without a
//! check of its own (it starts no app, or fails before its app is dropped). A final check,
//! when the test binary exits, reports them with the name of the thread that logged them (a
//! test's thread bears the test's name) and makes the binary fail.

use std::cell::RefCell;
use std::ffi::c_int;
use std::io::Write;
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::thread::ThreadId;

use base64::Engine;
use serde_json::Value;
use tracing_subscriber::filter::{LevelFilter, dynamic_filter_fn};
use tracing_subscriber::prelude::*;

use crate::helpers::WEBHOOK_KEY;
use crate::support::fake_rancher;

/// A log line that carried a secret, and the thread that logged it.
struct Leak {
    thread: ThreadId,
    /// The thread's name: the test's, on the test harness's threads.
    thread_name: String,
    line: String,
}

/// Log lines that carried a secret and that no check has reported yet.
static LEAKS: Mutex<Vec<Leak>> = Mutex::new(Vec::new());

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
        crate::notifications::NOTIFY_SECRET.to_owned(),
    ]
}

/// Records each line of `text` (one or more log lines) that carries a secret, as logged by
/// the current thread.
pub fn audit(text: &str) {
    let secrets = secrets();
    for line in text.lines() {
        if secrets.iter().any(|secret| line.contains(secret.as_str())) {
            let thread = std::thread::current();
            let leak = Leak {
                thread: thread.id(),
                thread_name: thread.name().unwrap_or("(unnamed thread)").to_owned(),
                line: line.to_owned(),
            };
            leaks().push(leak);
            register_final_check();
        }
    }
}

/// The lines not reported yet; a test that failed while holding them does not hide them.
fn leaks() -> std::sync::MutexGuard<'static, Vec<Leak>> {
    LEAKS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Fails if a line logged on this thread — by this test's traffic — carried a secret.
/// Reports each line once: a later check on this thread sees only lines logged since.
pub fn assert_no_secret_logged_by_this_test() {
    let here = std::thread::current().id();
    let mine: Vec<String> = {
        let mut leaks = leaks();
        let (mine, others) = std::mem::take(&mut *leaks)
            .into_iter()
            .partition::<Vec<Leak>, _>(|leak| leak.thread == here);
        *leaks = others;
        mine.into_iter().map(|leak| leak.line).collect()
    };
    assert!(
        mine.is_empty(),
        "secrets were logged by this test's traffic: {mine:#?}"
    );
}

unsafe extern "C" {
    /// The C library's: runs `callback` when the process exits normally, as the test
    /// harness's does once every test has ended.
    fn atexit(callback: extern "C" fn()) -> c_int;
    /// The C library's: ends the process at once with `status`.
    fn _exit(status: c_int) -> !;
}

/// Makes sure [`final_check`] runs when the test binary exits.
fn register_final_check() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: `final_check` is a plain function that lives as long as the process.
        let registered = unsafe { atexit(final_check) };
        assert_eq!(registered, 0, "cannot register the final check of the log");
    });
}

/// Reports the lines with a secret that no test's check has reported, and makes the test
/// binary fail (with the status of failed tests) if there are any.
extern "C" fn final_check() {
    let leaks = std::mem::take(&mut *leaks());
    if leaks.is_empty() {
        return;
    }
    let mut report = String::from(
        "\nSECRETS WERE LOGGED where no test's own check saw them (another thread than \
         the test's, or after its last check):\n",
    );
    for leak in &leaks {
        report.push_str(&format!("  [{}] {}\n", leak.thread_name, leak.line));
    }
    let _ = std::io::stderr().write_all(report.as_bytes());
    // SAFETY: ends the process; nothing is left to run (this is its exit already).
    unsafe { _exit(101) }
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
