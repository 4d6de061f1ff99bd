//! The Swarm target against a real one-node swarm on the real engine, with images served by
//! a real registry on 127.0.0.1, and `PUT /service/{name}` (symfoni/deployer's API).

use serde_json::{Value, json};

use crate::containers::Bench;
use crate::helpers::{TestApp, WEBHOOK_KEY, named};
use crate::support::engine::swarm;

/// A service spec running `image`, labelled `labels`, quick to stop and to judge.
fn service_spec(name: &str, image: &str, labels: Value, failure_action: &str) -> Value {
    json!({
        "Name": name,
        "Labels": labels,
        "TaskTemplate": {
            "ContainerSpec": { "Image": image, "StopGracePeriod": 1_000_000_000_u64 },
            "RestartPolicy": { "Condition": "on-failure", "MaxAttempts": 0 }
        },
        "Mode": { "Replicated": { "Replicas": 1 } },
        "UpdateConfig": {
            "Parallelism": 1,
            "FailureAction": failure_action,
            "Monitor": 2_000_000_000_u64,
            "Order": "stop-first"
        }
    })
}

const OPTED_IN: &str = "deployer.allowUpdates";

/// The bench, made a swarm manager.
async fn swarm_bench(test: &str) -> Option<Bench> {
    let bench = Bench::new(test).await?;
    swarm(&bench.sandbox.engine).await;
    Some(bench)
}

impl TestApp {
    /// `PUT /service/{name}` with `body`, the key sent as symfoni/deployer sends it.
    pub async fn put_service(&self, name: &str, body: &str) -> (u16, Value) {
        let response = self
            .http
            .put(format!("{}/service/{name}", self.address))
            .header("authorization", WEBHOOK_KEY)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }
}

/// The image a service's spec names.
fn image_of(service: &Value) -> &str {
    service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_image_under_the_same_tag_updates_the_service_once() {
    let Some(bench) = swarm_bench("swarm-update").await else {
        return;
    };
    let sandbox = &bench.sandbox;
    let repository = bench.repository("web");
    bench.web_image(&repository, "1", 1, "").await;
    let first = sandbox.registry_digest(&format!("{repository}:1")).await;
    let name = sandbox.name("web");
    // Pinned as `docker service create` pins it.
    let pinned = format!("{repository}:1@{first}");
    sandbox
        .service(service_spec(&name, &pinned, json!({ OPTED_IN: "true" }), "pause"))
        .await;
    bench.web_image(&repository, "1", 2, "").await;
    let second = sandbox.registry_digest(&format!("{repository}:1")).await;
    assert_ne!(first, second);

    let mut app = bench.app(&[]).await;
    let request = json!({ "image": format!("{repository}:1") }).to_string();
    let (status, answer) = app.put_service(&name, &request).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["service"], name.as_str());
    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "upgraded"), [name.as_str()], "{units:?}");
    let service = sandbox.inspect_service(&name).await;
    assert_eq!(image_of(&service), format!("{repository}:1@{second}"));
    assert_eq!(
        service["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"],
        pinned.as_str()
    );
    assert_eq!(service["UpdateStatus"]["State"], "completed");

    // The same request again: nothing changes, and the rollback target stays.
    let version = service["Version"]["Index"].clone();
    assert_eq!(app.put_service(&name, &request).await.0, 202);
    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "up-to-date"), [name.as_str()], "{units:?}");
    let again = sandbox.inspect_service(&name).await;
    assert_eq!(again["Version"]["Index"], version);
    assert_eq!(
        again["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"],
        pinned.as_str()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_that_exits_is_rolled_back_by_swarm_and_reported() {
    let Some(bench) = swarm_bench("swarm-exits").await else {
        return;
    };
    let sandbox = &bench.sandbox;
    let repository = bench.repository("web");
    bench.web_image(&repository, "1", 1, "").await;
    let first = sandbox.registry_digest(&format!("{repository}:1")).await;
    let name = sandbox.name("web");
    let pinned = format!("{repository}:1@{first}");
    sandbox
        .service(service_spec(&name, &pinned, json!({ OPTED_IN: "true" }), "rollback"))
        .await;
    bench
        .web_image(&repository, "1", 2, "CMD [\"sh\", \"-c\", \"exit 3\"]")
        .await;
    let mut app = bench.app(&[]).await;
    let request = json!({ "image": format!("{repository}:1") }).to_string();
    assert_eq!(app.put_service(&name, &request).await.0, 202);
    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "rolled-back"), [name.as_str()], "{units:?}");
    let reason = units[0].outcome.reason.clone().unwrap_or_default();
    assert!(reason.contains("rollback_completed"), "{reason}");
    assert_eq!(image_of(&sandbox.inspect_service(&name).await), pinned);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_stuck_past_the_timeout_is_rolled_back() {
    let Some(bench) = swarm_bench("swarm-stuck").await else {
        return;
    };
    let sandbox = &bench.sandbox;
    let repository = bench.repository("web");
    bench.web_image(&repository, "1", 1, "").await;
    let first = sandbox.registry_digest(&format!("{repository}:1")).await;
    let name = sandbox.name("web");
    let pinned = format!("{repository}:1@{first}");
    sandbox
        .service(service_spec(&name, &pinned, json!({ OPTED_IN: "true" }), "pause"))
        .await;
    // Its first health check comes after a minute: its task stays `starting`.
    bench
        .web_image(&repository, "1", 2, "HEALTHCHECK --interval=60s CMD true")
        .await;
    let mut app = bench.app(&[("SWARM_UPGRADE_TIMEOUT_S", "4")]).await;
    let request = json!({ "image": format!("{repository}:1") }).to_string();
    assert_eq!(app.put_service(&name, &request).await.0, 202);
    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "rolled-back"), [name.as_str()], "{units:?}");
    let reason = units[0].outcome.reason.clone().unwrap_or_default();
    assert!(reason.contains("within 4 s"), "{reason}");
    assert_eq!(image_of(&sandbox.inspect_service(&name).await), pinned);
}
