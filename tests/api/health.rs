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
