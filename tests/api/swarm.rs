//! The Swarm target against a real one-node swarm on the real engine, with images served by
//! a real registry on 127.0.0.1, and `PUT /service/{name}` (symfoni/deployer's API).

use serde_json::{Value, json};

use crate::containers::Bench;
use crate::crash::Binary;
use crate::helpers::{
    TestApp, WEBHOOK_KEY, http_client, named, skip_unless_ci, spawn_default_socket_app,
};
use crate::support::engine::swarm;
use crate::support::engine_proxy::{EngineProxy, Hold, TcpRelay};
use autoredeploy::events::UnitOutcome;
use autoredeploy::platform::engine::Call;

/// A service spec running `image`, labelled `labels`, quick to stop and to judge.
pub(crate) fn service_spec(name: &str, image: &str, labels: Value, failure_action: &str) -> Value {
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

pub(crate) const OPTED_IN: &str = "deployer.allowUpdates";

/// The bench, made a swarm manager.
async fn swarm_bench(test: &str) -> Option<Bench> {
    let bench = Bench::new(test).await?;
    swarm(&bench.sandbox.engine).await;
    Some(bench)
}

/// Version 1 of the web image, pushed, run as the opted-in service `web`, pinned as
/// `docker service create` pins it.
struct WebService {
    repository: String,
    name: String,
    /// `<repository>:1@<digest>`.
    pinned: String,
    id: String,
}

async fn opted_in_web_service(bench: &Bench, failure_action: &str) -> WebService {
    let sandbox = &bench.sandbox;
    let repository = bench.repository("web");
    bench.web_image(&repository, "1", 1, "").await;
    let digest = sandbox.registry_digest(&format!("{repository}:1")).await;
    let name = sandbox.name("web");
    let pinned = format!("{repository}:1@{digest}");
    let spec = service_spec(&name, &pinned, json!({ OPTED_IN: "true" }), failure_action);
    let id = sandbox.service(spec).await;
    WebService {
        repository,
        name,
        pinned,
        id,
    }
}

impl TestApp {
    /// Sets the image of the service `name` with `PUT /service/{name}`, and waits for the
    /// outcomes of that job.
    pub async fn set_image(&mut self, name: &str, image: &str) -> Vec<UnitOutcome> {
        let request = json!({ "image": image }).to_string();
        let (status, answer) = self.put_service(name, &request).await;
        assert_eq!(status, 202, "{answer}");
        self.next_job().await.0
    }

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
pub(crate) fn image_of(service: &Value) -> &str {
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
    let WebService {
        repository,
        name,
        pinned,
        ..
    } = opted_in_web_service(&bench, "pause").await;
    bench.web_image(&repository, "1", 2, "").await;
    let second = sandbox.registry_digest(&format!("{repository}:1")).await;
    assert!(!pinned.ends_with(&second), "a new digest");

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
    // The image's platform, as the docker CLI sets it: the service was created without.
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(
        service["Spec"]["TaskTemplate"]["Placement"]["Platforms"],
        json!([{ "Architecture": architecture, "OS": "linux" }])
    );

    // The same request again: nothing changes, and the rollback target stays.
    let version = service["Version"]["Index"].clone();
    let units = app.set_image(&name, &format!("{repository}:1")).await;
    assert_eq!(named(&units, "up-to-date"), [name.as_str()], "{units:?}");
    let again = sandbox.inspect_service(&name).await;
    assert_eq!(again["Version"]["Index"], version);
    assert_eq!(
        again["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"],
        pinned.as_str()
    );
}

/// symfoni/deployer's setup: the manager's socket mounted, and no target setting.
#[tokio::test(flavor = "multi_thread")]
async fn a_swarm_manager_at_the_default_socket_is_used_without_settings() {
    if std::env::var_os("DOCKER_HOST").is_some_and(|host| !host.is_empty()) {
        skip_unless_ci("DOCKER_HOST points the tests at an engine other than the default socket");
        return;
    }
    let Some(bench) = swarm_bench("swarm-default").await else {
        return;
    };
    let WebService {
        repository, name, ..
    } = opted_in_web_service(&bench, "pause").await;
    bench.web_image(&repository, "1", 2, "").await;
    let second = bench
        .sandbox
        .registry_digest(&format!("{repository}:1"))
        .await;

    let mut app = spawn_default_socket_app(bench.docker_config.path()).await;
    let units = app.set_image(&name, &format!("{repository}:1")).await;
    assert_eq!(named(&units, "upgraded"), [name.as_str()], "{units:?}");
    let service = bench.sandbox.inspect_service(&name).await;
    assert_eq!(image_of(&service), format!("{repository}:1@{second}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_that_exits_is_rolled_back_by_swarm_and_reported() {
    let Some(bench) = swarm_bench("swarm-exits").await else {
        return;
    };
    let sandbox = &bench.sandbox;
    let WebService {
        repository,
        name,
        pinned,
        ..
    } = opted_in_web_service(&bench, "rollback").await;
    bench
        .web_image(&repository, "1", 2, "CMD [\"sh\", \"-c\", \"exit 3\"]")
        .await;
    let mut app = bench.app(&[]).await;
    let units = app.set_image(&name, &format!("{repository}:1")).await;
    assert_eq!(named(&units, "rolled-back"), [name.as_str()], "{units:?}");
    let reason = units[0].outcome.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("Swarm rolled the update back") && reason.contains("non-zero exit (3)"),
        "{reason}"
    );
    assert_eq!(image_of(&sandbox.inspect_service(&name).await), pinned);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_stuck_past_the_timeout_is_rolled_back() {
    let Some(bench) = swarm_bench("swarm-stuck").await else {
        return;
    };
    let sandbox = &bench.sandbox;
    let WebService {
        repository,
        name,
        pinned,
        ..
    } = opted_in_web_service(&bench, "pause").await;
    // Its first health check comes after a minute: its task stays `starting`.
    bench
        .web_image(&repository, "1", 2, "HEALTHCHECK --interval=60s CMD true")
        .await;
    let mut app = bench.app(&[("SWARM_UPGRADE_TIMEOUT_S", "4")]).await;
    let units = app.set_image(&name, &format!("{repository}:1")).await;
    assert_eq!(named(&units, "rolled-back"), [name.as_str()], "{units:?}");
    let reason = units[0].outcome.reason.clone().unwrap_or_default();
    assert!(reason.contains("within 4 s"), "{reason}");
    let service = sandbox.inspect_service(&name).await;
    assert_eq!(image_of(&service), pinned);
    let tried = service["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"].clone();
    drop(app);

    // Asked again with `leave`: the update is posted again, not taken for the one Swarm
    // rolled back, and left running past the timeout.
    let mut app = bench
        .app(&[
            ("SWARM_UPGRADE_TIMEOUT_S", "4"),
            ("SWARM_UPGRADE_ON_FAILURE", "leave"),
        ])
        .await;
    let units = app.set_image(&name, &format!("{repository}:1")).await;
    assert_eq!(named(&units, "left"), [name.as_str()], "{units:?}");
    let service = sandbox.inspect_service(&name).await;
    assert_eq!(
        service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"],
        tried
    );
    assert_eq!(service["UpdateStatus"]["State"], "updating");
}

/// A TCP engine that does not answer at start is asked again whether it manages a Swarm
/// when a request comes, rather than the Swarm target being dropped until a restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_tcp_engine_silent_at_start_is_asked_again_when_a_request_comes() {
    let Some(bench) = swarm_bench("swarm-late").await else {
        return;
    };
    let WebService {
        repository, name, ..
    } = opted_in_web_service(&bench, "pause").await;
    bench.web_image(&repository, "1", 2, "").await;
    let (reserved, port) = TcpRelay::reserve();
    let mut app = bench
        .app(&[("DOCKER_HOST", &format!("tcp://127.0.0.1:{port}"))])
        .await;
    let request = json!({ "image": format!("{repository}:1") }).to_string();
    let (status, answer) = app.put_service(&name, &request).await;
    assert_eq!(status, 503, "{answer}");

    let socket = crate::support::engine::docker_host()
        .trim_start_matches("unix://")
        .to_owned();
    let _relay = TcpRelay::start(reserved, socket.as_ref()).await;
    let (status, answer) = app.put_service(&name, &request).await;
    assert_eq!(status, 202, "{answer}");
    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "upgraded"), [name.as_str()], "{units:?}");
}

/// The service changes between the read and the update: Swarm refuses the update as out
/// of sequence, and it is read again and posted on top of the change.
#[tokio::test(flavor = "multi_thread")]
async fn an_update_out_of_sequence_is_read_again_and_posted_again() {
    let Some(bench) = swarm_bench("swarm-sequence").await else {
        return;
    };
    let sandbox = &bench.sandbox;
    let WebService {
        repository,
        name,
        id,
        ..
    } = opted_in_web_service(&bench, "pause").await;
    bench.web_image(&repository, "1", 2, "").await;
    let second = sandbox.registry_digest(&format!("{repository}:1")).await;
    let socket = crate::support::engine::docker_host()
        .trim_start_matches("unix://")
        .to_owned();
    let proxy = EngineProxy::start(socket.as_ref());
    let mut app = bench.app(&[("DOCKER_HOST", &proxy.docker_host())]).await;
    let update = format!("/services/{id}/update");
    proxy.hold(Hold {
        method: "POST",
        path_contains: update.clone(),
        after_the_engine: false,
    });
    let request = json!({ "image": format!("{repository}:1") }).to_string();
    assert_eq!(app.put_service(&name, &request).await.0, 202);
    proxy.until_held().await;
    proxy.release();

    // Someone else labels the service meanwhile.
    let service = sandbox.inspect_service(&id).await;
    let mut spec = service["Spec"].clone();
    spec["Labels"]["changed.meanwhile"] = json!("yes");
    let path = format!("{update}?version={}", service["Version"]["Index"]);
    sandbox
        .engine
        .call(Call::post("labelling the test service", &path).json(&spec))
        .await
        .unwrap();
    proxy.let_held_through();

    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "upgraded"), [name.as_str()], "{units:?}");
    assert_eq!(proxy.count("POST", &update), 2, "refused once, then taken");
    let service = sandbox.inspect_service(&id).await;
    assert_eq!(image_of(&service), format!("{repository}:1@{second}"));
    assert_eq!(service["Spec"]["Labels"]["changed.meanwhile"], "yes");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_answer_of_put_service() {
    let Some(bench) = swarm_bench("swarm-put").await else {
        return;
    };
    let sandbox = &bench.sandbox;
    let repository = bench.repository("web");
    bench.web_image(&repository, "1", 1, "").await;
    let digest = sandbox.registry_digest(&format!("{repository}:1")).await;
    let pinned = format!("{repository}:1@{digest}");
    let (opted_in, unlabelled) = (sandbox.name("in"), sandbox.name("plain"));
    sandbox
        .service(service_spec(
            &opted_in,
            &pinned,
            json!({ OPTED_IN: "true" }),
            "pause",
        ))
        .await;
    sandbox
        .service(service_spec(&unlabelled, &pinned, json!({}), "pause"))
        .await;
    bench.web_image(&repository, "2", 2, "").await;
    let mut app = bench
        .app(&[(
            "AUTOREDEPLOY_ALLOWED_REPOS",
            &format!("{},other/*", bench.repository("web")),
        )])
        .await;
    let url = format!("{}/service/{opted_in}", app.address);
    let image = format!("{repository}:2");
    let body = json!({ "image": image }).to_string();

    let answer = app
        .http
        .get(&url)
        .header("authorization", WEBHOOK_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 405);
    assert_eq!(answer.headers()["allow"], "PUT");
    let answer = app.http.put(&url).body(body.clone()).send().await.unwrap();
    assert_eq!(answer.status(), 401);
    let answer = app
        .http
        .put(&url)
        .header("authorization", "not-the-key-0123456789")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    for (bad, error) in [
        ("", "missing_body"),
        ("[]", "not_an_image"),
        ("{\"image\": 3}", "not_an_image"),
        ("{\"image\": \"web:1\", \"tag\": \"x\"}", "not_an_image"),
        ("image=web:1", "not_an_image"),
        ("{\"image\": \"Web:1\"}", "bad_reference"),
    ] {
        let (status, answer) = app.put_service(&opted_in, bad).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some(error)),
            "{bad}: {answer}"
        );
    }
    let (status, answer) = app.put_service("_bad", &body).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("bad_service_name")),
        "{answer}"
    );
    let (status, answer) = app.put_service(&sandbox.name("missing"), &body).await;
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = app.put_service(&unlabelled, &body).await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains(OPTED_IN),
        "{answer}"
    );
    // Neither another repository nor the same one on another registry.
    for image in [
        "registry.example.com/not/allowed:1".to_owned(),
        format!("registry.example.com/{}:2", sandbox.name("web")),
    ] {
        let elsewhere = json!({ "image": image }).to_string();
        let (status, answer) = app.put_service(&opted_in, &elsewhere).await;
        assert_eq!(status, 403, "{image}: {answer}");
    }

    // symfoni/deployer's README: `curl -X PUT -d '{"image": …}'`, a bare key, and the body
    // labelled as a form.
    let answer = app
        .http
        .put(&url)
        .header("authorization", WEBHOOK_KEY)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "upgraded"), [opted_in.as_str()], "{units:?}");
    let service = sandbox.inspect_service(&opted_in).await;
    let second = sandbox.registry_digest(&image).await;
    assert_eq!(
        image_of(&service),
        format!("{image}@{second}"),
        "another tag, pinned"
    );
    let untouched = sandbox.inspect_service(&unlabelled).await;
    assert_eq!(image_of(&untouched), pinned);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_services_updated_at_once() {
    let Some(bench) = swarm_bench("swarm-two").await else {
        return;
    };
    let sandbox = &bench.sandbox;
    let (web, api) = (bench.repository("web"), bench.repository("api"));
    for repository in [&web, &api] {
        bench.web_image(repository, "1", 1, "").await;
    }
    let names = [sandbox.name("web"), sandbox.name("api")];
    for (name, repository) in names.iter().zip([&web, &api]) {
        let image = format!("{repository}:1");
        sandbox
            .service(service_spec(
                name,
                &image,
                json!({ OPTED_IN: "true" }),
                "pause",
            ))
            .await;
        bench.web_image(repository, "1", 2, "").await;
    }
    let mut app = bench.app(&[]).await;
    let body = |repository: &str| json!({ "image": format!("{repository}:1") }).to_string();
    let (web_body, api_body) = (body(&web), body(&api));
    let (first, second) = tokio::join!(
        app.put_service(&names[0], &web_body),
        app.put_service(&names[1], &api_body),
    );
    assert_eq!((first.0, second.0), (202, 202));
    let mut upgraded = Vec::new();
    for _ in 0..2 {
        let (units, _) = app.next_job().await;
        upgraded.extend(named(&units, "upgraded"));
    }
    upgraded.sort();
    let mut expected = names.to_vec();
    expected.sort();
    assert_eq!(upgraded, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_hub_pushes_reach_swarm_services_by_tag_and_label() {
    let Some(bench) = swarm_bench("swarm-hub").await else {
        return;
    };
    let sandbox = &bench.sandbox;
    // A Docker Hub name built here: nothing may be pulled from Docker Hub, so the one
    // service the push concerns is not opted in, and is only reported.
    let repository = format!("autoredeploy-test/{}", sandbox.name("hub"));
    sandbox
        .build(&format!("{repository}:1"), "CMD [\"sleep\", \"600\"]", &[])
        .await;
    let name = sandbox.name("hub");
    sandbox
        .service(service_spec(
            &name,
            &format!("{repository}:1"),
            json!({}),
            "pause",
        ))
        .await;
    let mut app = bench.app(&[]).await;
    let (units, _) = app.push_and_wait(&repository, Some("1")).await;
    assert_eq!(named(&units, "skipped"), [name.as_str()], "{units:?}");
    assert_eq!(units[0].unit.target.as_str(), "swarm");
    let (units, _) = app.push_and_wait(&repository, Some("2")).await;
    assert!(units.is_empty(), "another tag: {units:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_while_swarm_updates_the_service_it_follows_and_never_updates_again() {
    killed_while_swarm_updates("swarm-kill", "pause", "", None, "upgraded").await;
}

/// Swarm rolls the update back while autoredeploy is down, which leaves no `PreviousSpec`
/// naming the image it undid: the update is still not posted again.
#[tokio::test(flavor = "multi_thread")]
async fn killed_while_swarm_rolls_the_update_back_it_reports_that_and_never_updates_again() {
    killed_while_swarm_updates(
        "swarm-kill-back",
        "rollback",
        "CMD [\"sh\", \"-c\", \"exit 3\"]",
        Some("rollback_completed"),
        "rolled-back",
    )
    .await;
}

/// Posts an update of a version 2 built with `extra` through a proxy that never passes
/// Swarm's answer on, kills autoredeploy, waits until Swarm's update reaches `state` (if
/// given), and starts autoredeploy again: the unit ends `end`, and the update was posted once.
async fn killed_while_swarm_updates(
    test: &str,
    failure_action: &str,
    extra: &str,
    state: Option<&str>,
    end: &str,
) {
    let Some(bench) = swarm_bench(test).await else {
        return;
    };
    let sandbox = &bench.sandbox;
    let WebService {
        repository,
        name,
        id,
        ..
    } = opted_in_web_service(&bench, failure_action).await;
    bench.web_image(&repository, "1", 2, extra).await;
    let second = sandbox.registry_digest(&format!("{repository}:1")).await;

    let socket = crate::support::engine::docker_host()
        .trim_start_matches("unix://")
        .to_owned();
    let proxy = EngineProxy::start(socket.as_ref());
    let target = [
        ("DOCKER_HOST", proxy.docker_host()),
        (
            "DOCKER_CONFIG",
            bench.docker_config.path().display().to_string(),
        ),
    ];
    let data = tempfile::tempdir().unwrap();
    let first_run = Binary::start_for(&target, data.path()).await;
    // Swarm takes the update; its answer never arrives.
    proxy.hold(Hold {
        method: "POST",
        path_contains: format!("/services/{id}/update"),
        after_the_engine: true,
    });
    let answer = http_client()
        .put(format!("{}/service/{name}", first_run.address()))
        .header("authorization", WEBHOOK_KEY)
        .body(json!({ "image": format!("{repository}:1") }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let job = answer.json::<Value>().await.unwrap()["job"]
        .as_i64()
        .unwrap();
    proxy.until_held().await;
    first_run.kill_hard().await;
    proxy.release();
    if let Some(state) = state {
        until_update_state(sandbox, &id, state).await;
    }

    let second_run = Binary::start_for(&target, data.path()).await;
    let job = second_run.wait_until_done(job).await;
    assert_eq!(job["units"][0]["end"], end, "{job}");
    assert_eq!(
        proxy.count("POST", &format!("/services/{id}/update")),
        1,
        "{job}"
    );
    if end == "upgraded" {
        let service = sandbox.inspect_service(&name).await;
        assert_eq!(image_of(&service), format!("{repository}:1@{second}"));
    }
    second_run.kill_hard().await;
}

/// Waits until the service's `UpdateStatus.State` is `state`.
async fn until_update_state(sandbox: &crate::support::engine::Sandbox, id: &str, state: &str) {
    for _ in 0..600 {
        if sandbox.inspect_service(id).await["UpdateStatus"]["State"] == state {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the update of service {id} did not reach {state}");
}
