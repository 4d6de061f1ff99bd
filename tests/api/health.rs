use crate::helpers::spawn_app;
use crate::support::fake_rancher::FakeRancher;

#[tokio::test]
async fn health_answers_without_a_key_and_costs_rancher_nothing() {
    let rancher = FakeRancher::start(vec![]).await;
    let app = spawn_app(&rancher).await;
    let response = app
        .http
        .get(format!("{}/health", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert!(rancher.requests().is_empty());
}

/// `autoredeploy healthcheck`, as the image's `HEALTHCHECK` runs it, finds the server from
/// `BIND_ADDRESS` and `BIND_PORT` alone.
#[tokio::test]
async fn the_healthcheck_command_needs_only_the_listen_address() {
    let rancher = FakeRancher::start(vec![]).await;
    let app = spawn_app(&rancher).await;
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    let healthcheck = |port: String| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_autoredeploy"))
            .arg("healthcheck")
            .env_clear()
            .env("BIND_ADDRESS", "127.0.0.1")
            .env("BIND_PORT", port)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
    };
    assert!(healthcheck(port).await.unwrap().success());

    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = nobody.local_addr().unwrap().port().to_string();
    drop(nobody);
    assert!(!healthcheck(closed).await.unwrap().success());
}
