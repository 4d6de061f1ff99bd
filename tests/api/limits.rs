//! What a hostile client can hold of the server: header size and count, slow heads and
//! bodies, idle connections and the number of connections. Spoken over raw TCP, since a
//! well-behaved HTTP client cannot misbehave on purpose.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, WEBHOOK_KEY, spawn_app, spawn_app_with};
use crate::support::fake_rancher::FakeRancher;

/// Bound on waiting for something that must happen, so a broken build fails instead of
/// hanging; never a measure of speed.
const HANG_GUARD: Duration = Duration::from_secs(20);

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(HANG_GUARD, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Reads one response to a `GET /health`, leaving the connection open.
async fn read_health_answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).contains("\"ok\"") {
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(read > 0, "closed before answering");
        answer.extend_from_slice(&chunk[..read]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

async fn health_is_served(app: &TestApp) {
    let response = app
        .http
        .get(format!("{}/health", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn oversized_or_overcrowded_heads_get_431() {
    let rancher = FakeRancher::start(vec![]).await;
    let app = spawn_app(&rancher).await;

    let long_header = format!(
        "GET /health HTTP/1.1\r\nhost: x\r\nx-padding: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let many_headers = format!(
        "GET /health HTTP/1.1\r\nhost: x\r\n{}\r\n",
        (0..100)
            .map(|n| format!("x-h{n}: 1\r\n"))
            .collect::<String>()
    );
    for request in [long_header, many_headers] {
        let mut stream = connect(&app).await;
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_to_close(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    }
    health_is_served(&app).await;
}

#[tokio::test]
async fn a_head_sent_too_slowly_or_an_idle_connection_is_closed() {
    let rancher = FakeRancher::start(vec![]).await;
    let app = spawn_app_with(&rancher, &[("AUTOREDEPLOY_READ_TIMEOUT_S", "1")]).await;

    let mut unfinished = connect(&app).await;
    unfinished
        .write_all(b"POST /autoredeploy HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut silent = connect(&app).await;
    let mut idle = connect(&app).await;
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    read_health_answer(&mut idle).await;

    for (what, stream) in [
        ("unfinished head", &mut unfinished),
        ("nothing sent", &mut silent),
        ("idle after a request", &mut idle),
    ] {
        let answer = read_to_close(stream).await;
        assert!(!answer.contains("200 OK"), "{what}: {answer}");
    }
    health_is_served(&app).await;
}

#[tokio::test]
async fn a_body_sent_too_slowly_gets_408_and_nothing_is_queued() {
    let rancher = FakeRancher::start(vec![]).await;
    let app = spawn_app_with(&rancher, &[("AUTOREDEPLOY_READ_TIMEOUT_S", "1")]).await;

    let mut stream = connect(&app).await;
    let head = format!(
        "POST /autoredeploy HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {WEBHOOK_KEY}\r\n\
         content-type: application/json\r\ncontent-length: 500\r\n\r\n{{\"push_data\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");

    let (status, jobs) = app.history("/jobs").await;
    assert_eq!(status, 200);
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 0, "{jobs}");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_is_closed() {
    let rancher = FakeRancher::start(vec![]).await;
    let app = spawn_app_with(&rancher, &[("AUTOREDEPLOY_MAX_CONNECTIONS", "2")]).await;
    let request = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n";

    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(&app).await;
        stream.write_all(request).await.unwrap();
        read_health_answer(&mut stream).await;
        held.push(stream);
    }
    let mut waiting = connect(&app).await;
    waiting.write_all(request).await.unwrap();
    let mut first_byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), waiting.read(&mut first_byte));
    assert!(
        early.await.is_err(),
        "a third connection is served while two are held"
    );

    drop(held.pop());
    let answer = tokio::time::timeout(HANG_GUARD, read_health_answer(&mut waiting))
        .await
        .expect("the waiting connection is served once a slot is free");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
