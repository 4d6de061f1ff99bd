use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{WEBHOOK_KEY, named, push_body, spawn_app, spawn_app_with};
use crate::support::fake_rancher::{FakeRancher, service};

#[tokio::test]
async fn rejected_requests_get_precise_statuses_and_cost_rancher_nothing() {
    let rancher = FakeRancher::start(vec![service("web", "docker:myorg/web:latest")]).await;
    // More wrong keys than the default limit are sent below, all from this address.
    let app = spawn_app_with(
        &rancher,
        &[("AUTOREDEPLOY_AUTH_FAILURES_PER_MINUTE", "100")],
    )
    .await;
    let good = push_body("myorg/web", Some("latest")).to_string();
    let keyed = format!("?key={WEBHOOK_KEY}");

    for query in [
        "",
        "?key=",
        "?key=wrong-key",
        &format!("?KEY={WEBHOOK_KEY}"),
        &format!("?key={WEBHOOK_KEY}x"),
    ] {
        let response = app.post_webhook(query, good.clone()).await;
        assert_eq!(response.status(), 401, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized");
        assert!(!body.to_string().contains(WEBHOOK_KEY));
    }
    for (body, reason) in [
        ("", "not valid JSON"),
        ("{\"push_data\":", "not valid JSON"),
        ("[1,2,3]", "not a Docker Hub push"),
        (
            "{\"callback_url\":\"x\",\"repository\":{\"repo_name\":\"myorg/web\"}}",
            "push_data",
        ),
    ] {
        let response = app.post_webhook(&keyed, body).await;
        assert_eq!(response.status(), 400, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert!(
            answer["message"].as_str().unwrap().contains(reason),
            "{answer}"
        );
    }
    let oversized = format!("{{\"pad\":\"{}\"}}", "x".repeat(1024 * 1024));
    assert_eq!(app.post_webhook(&keyed, oversized).await.status(), 413);
    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let response = app
            .http
            .request(
                method.parse().unwrap(),
                format!("{}/autoredeploy{keyed}", app.address),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "POST");
    }
    let elsewhere = app
        .http
        .post(format!("{}/webhook{keyed}", app.address))
        .body(good)
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404);

    // The routes of targets this process does not use.
    for (method, path, error) in [
        ("POST", "/notify/web", "no_containers_target"),
        ("PUT", "/service/web", "no_swarm_target"),
    ] {
        let response = app
            .http
            .request(method.parse().unwrap(), format!("{}{path}", app.address))
            .bearer_auth(WEBHOOK_KEY)
            .body(r#"{"image": "myorg/web:2"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], error, "{answer}");
    }

    assert!(rancher.requests().is_empty(), "{:?}", rancher.requests());
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_without_a_length_header() {
    let rancher = FakeRancher::start(vec![]).await;
    let app = spawn_app(&rancher).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /autoredeploy?key={WEBHOOK_KEY} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..20 {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if stream.write_all(&framed).await.is_err() {
            break; // the server may stop reading once it has answered
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = vec![0; 512];
    let read = stream.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(rancher.requests().is_empty());
}

#[tokio::test]
async fn a_push_with_a_charset_is_accepted_and_deployed() {
    let rancher = FakeRancher::start(vec![service("web", "docker:myorg/web:latest")]).await;
    let mut app = spawn_app(&rancher).await;
    let response = app
        .http
        .post(format!("{}/autoredeploy?key={WEBHOOK_KEY}", app.address))
        .header("content-type", "application/json; charset=utf-8")
        .body(push_body("myorg/web", Some("latest")).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({ "status": "accepted", "image": "docker.io/myorg/web:latest", "job": 1, "coalesced": false })
    );
    let (outcomes, job) = app.next_job().await;
    assert_eq!(named(&outcomes, "upgraded"), ["web"]);
    assert_eq!(job.upgraded, 1);
}

#[tokio::test]
async fn guessing_keys_is_cut_short_with_429() {
    let rancher = FakeRancher::start(vec![]).await;
    let app = spawn_app(&rancher).await;
    let body = push_body("myorg/web", Some("latest")).to_string();
    let mut statuses = Vec::new();
    for guess in 0..7 {
        statuses.push(
            app.post_webhook(&format!("?key=guess-{guess:016}"), body.clone())
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses,
        [401, 401, 401, 401, 401, 429, 429],
        "five failures a minute by default"
    );
    let blocked = app.post_webhook(&format!("?key={WEBHOOK_KEY}"), body).await;
    assert_eq!(blocked.status(), 429);
    assert!(blocked.headers().contains_key("retry-after"));
    assert!(rancher.requests().is_empty());
}
