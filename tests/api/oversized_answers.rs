//! Answers from Rancher are read with a bound: a hostile or broken server that sends a body
//! without end, or declares a huge one, makes the request fail with a clear error instead of
//! exhausting memory or hanging. A redirect is refused before its body is read.
//!
//! The server here is a bare TCP listener, so the body can be anything, of any length.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use autoredeploy::config::Settings;
use autoredeploy::platform::rancher::{RancherClient, RancherError, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::helpers::WEBHOOK_KEY;
use crate::support::fake_rancher;

/// Bytes of body an endless answer sends before it stalls: more than twice the 16 MiB bound
/// plus what the sockets of both ends can buffer, yet little enough for a client without a
/// bound to hold (it then waits forever for the rest).
const ENDLESS: usize = 40 << 20;

/// Bound on every request of these tests: a client without a cap hangs past it.
const DEADLINE: Duration = Duration::from_secs(10);

/// How the answer's body is framed.
#[derive(Clone, Copy)]
enum Framing {
    /// Chunked, `ENDLESS` bytes of it, then nothing more and no final chunk.
    Endless,
    /// `Content-Length` of 1 GiB, and not one byte of body.
    Declared,
}

/// A server that answers every request with `status`, a body starting with `opening`, then
/// filler as `framing` says; it keeps the connection open after it.
struct OversizedServer {
    address: SocketAddr,
    /// Requests received.
    requests: Arc<AtomicUsize>,
    /// Body bytes written, over all connections.
    written: Arc<AtomicUsize>,
}

impl OversizedServer {
    async fn start(status: &'static str, opening: &'static str, framing: Framing) -> Self {
        Self::start_with_header(status, "", opening, framing).await
    }

    /// As [`Self::start`], with one more header line (`Name: value`, or empty for none).
    async fn start_with_header(
        status: &'static str,
        header: &'static str,
        opening: &'static str,
        framing: Framing,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let written = Arc::new(AtomicUsize::new(0));
        let (counted, sent) = (Arc::clone(&requests), Arc::clone(&written));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (counted, sent) = (Arc::clone(&counted), Arc::clone(&sent));
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0; 4096];
                    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => head.extend_from_slice(&buffer[..read]),
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let framing_header = match framing {
                        Framing::Endless => "Transfer-Encoding: chunked".to_owned(),
                        Framing::Declared => format!("Content-Length: {}", 1u64 << 30),
                    };
                    let header = if header.is_empty() {
                        String::new()
                    } else {
                        format!("{header}\r\n")
                    };
                    let answer_head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{header}{framing_header}\r\n\r\n"
                    );
                    if stream.write_all(answer_head.as_bytes()).await.is_err() {
                        return;
                    }
                    if let Framing::Endless = framing {
                        let filler = vec![b'x'; 64 << 10];
                        let mut body_sent = 0;
                        let mut part = opening.as_bytes();
                        while body_sent < ENDLESS {
                            let mut chunk = format!("{:x}\r\n", part.len()).into_bytes();
                            chunk.extend_from_slice(part);
                            chunk.extend_from_slice(b"\r\n");
                            if stream.write_all(&chunk).await.is_err() {
                                return;
                            }
                            body_sent += part.len();
                            sent.fetch_add(part.len(), Ordering::SeqCst);
                            part = &filler;
                        }
                    }
                    // Never ends the body; the client has to give up by itself.
                    std::future::pending::<()>().await;
                    drop(stream);
                });
            }
        });
        Self {
            address,
            requests,
            written,
        }
    }

    /// A client for this server, with a request timeout far beyond the test's deadline.
    fn client(&self) -> RancherClient {
        crate::log_capture::install();
        let vars = [
            ("DOCKER_HUB_KEY", WEBHOOK_KEY.to_owned()),
            ("RANCHER_HOST", format!("http://{}", self.address)),
            ("RANCHER_PROJECT_ID", fake_rancher::PROJECT_ID.to_owned()),
            ("RANCHER_API_KEY", fake_rancher::ACCESS_KEY.to_owned()),
            ("RANCHER_API_SECRET", fake_rancher::SECRET_KEY.to_owned()),
            ("RANCHER_REQUEST_TIMEOUT_S", "600".to_owned()),
            ("RANCHER_RETRY_MAX_DELAY_MS", "100".to_owned()),
        ]
        .map(|(name, value)| (name.to_owned(), value));
        let settings = Settings::from_vars(vars).expect("test settings are valid");
        RancherClient::new(
            &settings
                .targets
                .rancher
                .expect("rancher is configured")
                .connection,
        )
        .expect("client builds")
    }

    /// Reads service `1s1` from this server, failing the test if that takes past the deadline.
    async fn read_service(&self) -> Result<Service, RancherError> {
        let client = self.client();
        tokio::time::timeout(DEADLINE, client.service("1s1"))
            .await
            .expect("the client gave up on the oversized answer by itself")
    }

    /// Reads the first page of services from this server, failing the test if that takes
    /// past the deadline.
    async fn list_first_page(&self) -> Result<(), RancherError> {
        let client = self.client();
        tokio::time::timeout(DEADLINE, client.list_page(None, |_, _| {}))
            .await
            .expect("the client gave up on the oversized answer by itself")
            .map(drop)
    }
}

#[tokio::test]
async fn a_service_answer_without_end_fails_once_past_16_mib() {
    let server = OversizedServer::start(
        "200 OK",
        r#"{"id":"1s1","type":"service","name":""#,
        Framing::Endless,
    )
    .await;
    let error = server.read_service().await.expect_err("oversized answer");
    assert!(matches!(error, RancherError::TooLarge { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "Rancher sent an answer larger than 16 MiB (reading service 1s1), far more than a \
         service takes; it was not read further. Check that RANCHER_HOST leads to the Rancher \
         API itself"
    );
    assert!(!error.is_retryable());
    assert_eq!(server.requests.load(Ordering::SeqCst), 1, "not retried");
    assert!(
        server.written.load(Ordering::SeqCst) < ENDLESS,
        "the client hung up before the server ran out of body"
    );
}

#[tokio::test]
async fn a_service_answer_declared_over_16_mib_fails_before_its_body() {
    let server = OversizedServer::start("200 OK", "", Framing::Declared).await;
    let error = server.read_service().await.expect_err("oversized answer");
    assert!(matches!(error, RancherError::TooLarge { .. }), "{error:?}");
    assert!(!error.is_retryable());
    assert_eq!(server.requests.load(Ordering::SeqCst), 1, "not retried");
}

#[tokio::test]
async fn an_error_answer_without_end_is_cut_and_keeps_its_status() {
    let server = OversizedServer::start(
        "422 Unprocessable Entity",
        r#"{"type":"error","status":422,"code":"InvalidOption","message":""#,
        Framing::Endless,
    )
    .await;
    // A service is read by one client, a page by the other: both cut the answer.
    let read = server.read_service().await.expect_err("error answer");
    let listed = server.list_first_page().await.expect_err("error answer");
    for (error, what) in [(read, "reading service 1s1"), (listed, "listing services")] {
        assert_eq!(error.status(), Some(422), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!("Rancher answered 422 while {what}")
        );
        assert!(!error.is_retryable());
    }
    assert_eq!(server.requests.load(Ordering::SeqCst), 2, "neither retried");
    assert!(
        server.written.load(Ordering::SeqCst) < ENDLESS,
        "the client hung up before the server ran out of body"
    );
}

#[tokio::test]
async fn an_error_answer_declared_huge_keeps_its_status_without_its_body() {
    let server = OversizedServer::start("404 Not Found", "", Framing::Declared).await;
    let error = server.read_service().await.expect_err("error answer");
    assert_eq!(error.status(), Some(404), "{error:?}");
    assert_eq!(
        error.to_string(),
        "Rancher answered 404 while reading service 1s1"
    );
}

#[tokio::test]
async fn a_redirect_is_refused_before_its_body_is_read_by_either_client() {
    // A body declared but never sent: reading it would hang until the test's deadline.
    let server = OversizedServer::start_with_header(
        "302 Found",
        "Location: https://rancher.example.com/v1/services",
        "",
        Framing::Declared,
    )
    .await;
    let read = server.read_service().await.expect_err("a redirect");
    let listed = server.list_first_page().await.expect_err("a redirect");
    for (error, what) in [(read, "reading service 1s1"), (listed, "listing services")] {
        assert!(matches!(error, RancherError::Redirect { .. }), "{error:?}");
        assert!(!error.is_retryable());
        assert_eq!(
            error.to_string(),
            format!(
                "Rancher redirected ({what}) to https://rancher.example.com/v1/services; set \
                 RANCHER_HOST to the address Rancher redirects to"
            )
        );
    }
    assert_eq!(server.requests.load(Ordering::SeqCst), 2, "neither retried");
}
