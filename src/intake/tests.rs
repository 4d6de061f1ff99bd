use super::replies::RETRY_AFTER_S;
use super::*;
use crate::shutdown::Shutdown;
use secrecy::SecretString;

const KEY: &str = "the-right-webhook-key";
const PUSH: &str = r#"{"push_data":{"tag":"1.0"},"repository":{"repo_name":"org/app"}}"#;

struct Fixture {
    intake: Intake,
    journal: Journal,
    shutdown: Shutdown,
    _dir: tempfile::TempDir,
}

fn fixture(queue_size: usize) -> Fixture {
    fixture_with(queue_size, &[])
}

fn fixture_with(queue_size: usize, allowed_repos: &[&str]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    let (shutdown, signal) = Shutdown::new();
    let key = WebhookKey::new(&[SecretString::from(KEY)]);
    let access = AccessSettings {
        auth_failures_per_minute: 3,
        trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
        allowed_repos: allowed_repos
            .iter()
            .map(|p| glob::Pattern::new(p).unwrap())
            .collect(),
        registry_aliases: Vec::new(),
        max_connections: 8,
        read_timeout: Duration::from_secs(10),
    };
    let intake = Intake::new(
        key,
        journal.clone(),
        Arc::new(Notify::new()),
        queue_size,
        signal,
        &access,
    );
    Fixture {
        intake,
        journal,
        shutdown,
        _dir: dir,
    }
}

async fn status_of(
    request: warp::test::RequestBuilder,
    intake: Intake,
) -> (StatusCode, serde_json::Value) {
    let response = request.reply(&routes(intake)).await;
    let body = serde_json::from_slice(response.body()).unwrap_or_default();
    (response.status(), body)
}

fn post(path: &str) -> warp::test::RequestBuilder {
    warp::test::request().method("POST").path(path)
}

#[tokio::test]
async fn an_accepted_push_is_journaled_and_named() {
    let fixture = fixture(4);
    let (status, body) = status_of(
        post(&format!("/autoredeploy?key={KEY}"))
            .header("content-type", "application/json; charset=utf-8")
            .body(PUSH),
        fixture.intake.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["image"], "docker.io/org/app:1.0");
    let jobs = fixture.journal.list_jobs(10, None).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(body["job"], jobs[0].id.0);
    assert_eq!(jobs[0].image, "docker.io/org/app:1.0");
}

#[tokio::test]
async fn rejections_have_precise_statuses_and_write_nothing() {
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(BODY_LIMIT));
    let keyed = format!("/autoredeploy?key={KEY}");
    let cases = [
        (post("/autoredeploy").body(PUSH), StatusCode::UNAUTHORIZED),
        (
            post("/autoredeploy?key=wrong").body(PUSH),
            StatusCode::UNAUTHORIZED,
        ),
        (
            post(&format!("/autoredeploy?other={KEY}")).body(PUSH),
            StatusCode::UNAUTHORIZED,
        ),
        (
            post("/autoredeploy")
                .header("authorization", "Bearer wrong")
                .body(PUSH),
            StatusCode::UNAUTHORIZED,
        ),
        (post(&keyed).body("{}"), StatusCode::BAD_REQUEST),
        (
            post(&keyed).header("content-type", "text/plain").body(PUSH),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (post(&keyed).body(big), StatusCode::PAYLOAD_TOO_LARGE),
        (
            warp::test::request().method("GET").path(&keyed),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            warp::test::request().method("PUT").path("/autoredeploy"),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (post("/health"), StatusCode::METHOD_NOT_ALLOWED),
        (
            warp::test::request().path("/jobs"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            warp::test::request().path("/jobs/1?key=wrong"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            warp::test::request()
                .method("DELETE")
                .path(&format!("/jobs?key={KEY}")),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            warp::test::request().path(&format!("/jobs?key={KEY}&limit=lots")),
            StatusCode::BAD_REQUEST,
        ),
        (
            warp::test::request().path(&format!("/jobs/7?key={KEY}")),
            StatusCode::NOT_FOUND,
        ),
        (
            warp::test::request().path("/elsewhere"),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (request, expected) in cases {
        let fixture = fixture(4);
        let (status, body) = status_of(request, fixture.intake.clone()).await;
        assert_eq!(status, expected, "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert!(
            fixture
                .journal
                .list_jobs(10, None)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn the_bearer_header_is_accepted_too() {
    let fixture = fixture(4);
    let request = post("/autoredeploy")
        .header("authorization", format!("Bearer {KEY}"))
        .body(PUSH);
    assert_eq!(
        status_of(request, fixture.intake.clone()).await.0,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn a_full_queue_or_a_shutdown_answers_503_with_retry_after() {
    let fixture = fixture(1);
    let filter = routes(fixture.intake.clone());
    let push = |repo: &str| {
        post(&format!("/autoredeploy?key={KEY}")).body(format!(
            r#"{{"push_data":{{}},"repository":{{"repo_name":"{repo}"}}}}"#
        ))
    };
    assert_eq!(
        push("org/one").reply(&filter).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        push("org/one").reply(&filter).await.status(),
        StatusCode::ACCEPTED,
        "merged"
    );
    let response = push("org/two").reply(&filter).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], RETRY_AFTER_S);
    fixture.shutdown.trigger();
    assert_eq!(
        push("org/one").reply(&filter).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(fixture.journal.list_jobs(10, None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn repeated_failures_from_one_address_get_429_before_the_body_is_read() {
    let fixture = fixture(4);
    let filter = routes(fixture.intake.clone());
    let from = |ip: &str, key: &str| {
        post(&format!("/autoredeploy?key={key}"))
            .extension(server::Peer(format!("{ip}:40000").parse().unwrap()))
            .body(PUSH)
    };
    for _ in 0..3 {
        assert_eq!(
            from("203.0.113.5", "guess").reply(&filter).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let blocked = from("203.0.113.5", KEY).reply(&filter).await;
    assert_eq!(
        blocked.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even with the right key"
    );
    let wait: u64 = blocked.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait));
    assert_eq!(
        from("203.0.113.6", KEY).reply(&filter).await.status(),
        StatusCode::ACCEPTED
    );
    // Behind a trusted proxy, the forwarded address is the one limited.
    let proxied = post(&format!("/autoredeploy?key={KEY}"))
        .extension(server::Peer("10.0.0.2:40000".parse().unwrap()))
        .header("x-forwarded-for", "203.0.113.5")
        .body(PUSH);
    assert_eq!(
        proxied.reply(&filter).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let history = warp::test::request()
        .path(&format!("/jobs?key={KEY}"))
        .extension(server::Peer("203.0.113.5:40000".parse().unwrap()));
    assert_eq!(
        history.reply(&filter).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn pushes_of_repositories_not_allowed_get_403_and_write_nothing() {
    let fixture = fixture_with(4, &["org/*", "busybox"]);
    let filter = routes(fixture.intake.clone());
    let push = |repo: &str| {
        post(&format!("/autoredeploy?key={KEY}")).body(format!(
            r#"{{"push_data":{{}},"repository":{{"repo_name":"{repo}"}}}}"#
        ))
    };
    for allowed in ["org/app", "busybox"] {
        assert_eq!(
            push(allowed).reply(&filter).await.status(),
            StatusCode::ACCEPTED,
            "{allowed}"
        );
    }
    for refused in ["other/app", "org/app/deeper", "nginx", "organisation/app"] {
        let response = push(refused).reply(&filter).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{refused}");
    }
    assert_eq!(fixture.journal.list_jobs(10, None).await.unwrap().len(), 2);
}

#[tokio::test]
async fn health_needs_no_key() {
    let fixture = fixture(1);
    let (status, body) = status_of(
        warp::test::request().path("/health"),
        fixture.intake.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}
