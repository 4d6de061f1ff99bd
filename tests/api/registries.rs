//! The registries that say an image was pushed: a real distribution registry notifying
//! autoredeploy during a real `docker push`.

use serde_json::{Value, json};

use crate::containers::{Bench, web_container};
use crate::helpers::{TestApp, WEBHOOK_KEY, named, spawn_app};
use crate::support::engine::{free_port, read_published, swarm};
use crate::support::fake_rancher::{FakeRancher, service};
use crate::swarm::{OPTED_IN, image_of, service_spec};

/// The registry sends a delivery per layer, per blob it checks, and one for the tagged
/// manifest: the container and the Swarm service running the tag are redeployed in one
/// job, once.
#[tokio::test(flavor = "multi_thread")]
async fn a_docker_push_to_a_notifying_registry_redeploys_once() {
    let Some(mut bench) = Bench::new("registry-push").await else {
        return;
    };
    swarm(&bench.sandbox.engine).await;
    let repository = bench.repository("web");
    let tagged = format!("{repository}:1");
    bench.web_image(&repository, "1", 1, "").await;
    let first = bench.sandbox.registry_digest(&tagged).await;
    let container = bench.sandbox.name("web");
    let port = free_port();
    bench
        .sandbox
        .run(&container, web_container(&tagged, port))
        .await;
    let service = bench.sandbox.name("svc");
    bench
        .sandbox
        .service(service_spec(
            &service,
            &format!("{tagged}@{first}"),
            json!({ OPTED_IN: "true" }),
            "pause",
        ))
        .await;

    let mut app = bench.app(&[]).await;
    let url = format!("{}/autoredeploy/registry", app.address);
    bench.registry.notify(&url, WEBHOOK_KEY).await;
    bench.web_image(&repository, "1", 2, "").await;
    let second = bench.sandbox.registry_digest(&tagged).await;

    let (units, _) = app.next_job().await;
    let mut upgraded = named(&units, "upgraded");
    let mut expected = vec![container.clone(), service.clone()];
    expected.sort();
    upgraded.sort();
    assert_eq!(upgraded, expected, "{units:?}");
    assert_eq!(read_published(port, "/index.html").await.unwrap(), "v2");
    let inspected = bench.sandbox.inspect_service(&service).await;
    assert_eq!(image_of(&inspected), format!("{tagged}@{second}"));

    // Every delivery of that push has long arrived: it made that one job.
    let (status, jobs) = app.history("/jobs").await;
    assert_eq!(status, 200, "{jobs}");
    let jobs: Vec<&Value> = jobs["jobs"].as_array().unwrap().iter().collect();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["source"], "registry");
    assert_eq!(jobs[0]["image"], tagged.as_str());
}

impl TestApp {
    /// `POST /autoredeploy/<sender>` with `body` and the `headers` given.
    pub async fn deliver(
        &self,
        sender: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}/autoredeploy/{sender}", self.address))
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }
}

const EVENTS_V1: (&str, &str) = (
    "content-type",
    "application/vnd.docker.distribution.events.v1+json",
);

/// The recorded deliveries of a real `docker push` to `localhost:5000`: the host is part
/// of the image, so only the Rancher service running `localhost:5000/myorg/app` is
/// upgraded; layers are answered `202` and cost Rancher nothing; a wrong key is `401`.
#[tokio::test]
async fn registry_deliveries_reach_only_the_workloads_of_their_host() {
    let rancher = FakeRancher::start(vec![
        service("local", "docker:localhost:5000/myorg/app:latest"),
        service("hub", "docker:myorg/app:latest"),
    ])
    .await;
    let mut app = spawn_app(&rancher).await;
    let bearer = format!("Bearer {WEBHOOK_KEY}");
    let keyed = [EVENTS_V1, ("authorization", bearer.as_str())];
    let manifest =
        include_str!("../../fixtures/docker/distribution-notification-manifest-push.json");
    let layer = include_str!("../../fixtures/docker/distribution-notification-blob-push.json");

    for headers in [
        vec![EVENTS_V1],
        vec![EVENTS_V1, ("authorization", "Bearer wrong-key-0123456789")],
    ] {
        let (status, answer) = app.deliver("registry", &headers, manifest).await;
        assert_eq!(status, 401, "{answer}");
    }
    let (status, answer) = app.deliver("registry", &keyed, layer).await;
    assert_eq!(status, 202, "{answer}");
    assert!(
        answer["ignored"].as_str().unwrap().contains("blob"),
        "{answer}"
    );
    let (status, answer) = app.deliver("registry", &keyed, "[1]").await;
    assert_eq!(status, 400, "{answer}");
    assert!(rancher.requests().is_empty(), "{:?}", rancher.requests());

    let (status, answer) = app.deliver("registry", &keyed, manifest).await;
    assert_eq!(status, 202, "{answer}");
    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "upgraded"), ["local"], "{units:?}");
    assert!(units.iter().all(|unit| unit.name != "hub"), "{units:?}");
}

/// `POST /autoredeploy/image`, a CI job's "this image is new".
#[tokio::test]
async fn a_ci_job_names_the_new_image() {
    let rancher = FakeRancher::start(vec![
        service("local", "docker:localhost:5000/myorg/app:latest"),
        service("hub", "docker:myorg/app:latest"),
    ])
    .await;
    let mut app = spawn_app(&rancher).await;
    let bearer = format!("Bearer {WEBHOOK_KEY}");
    let keyed = [("authorization", bearer.as_str())];
    let body = json!({ "image": "myorg/app" }).to_string();
    assert_eq!(app.deliver("image", &[], &body).await.0, 401);
    let (status, answer) = app
        .deliver("image", &keyed, r#"{"image": "myorg/app@sha256:12"}"#)
        .await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = app.deliver("image", &keyed, &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["image"], "docker.io/myorg/app:latest");
    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "upgraded"), ["hub"], "{units:?}");
}
