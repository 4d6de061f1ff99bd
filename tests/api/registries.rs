//! The registries that say an image was pushed: a real distribution registry notifying
//! autoredeploy during a real `docker push`.

use serde_json::{Value, json};

use crate::containers::{Bench, web_container};
use crate::helpers::{TestApp, WEBHOOK_KEY, named, spawn_app, spawn_app_with};
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

    // The registry is the source of truth: told the digest they run, both are left alone,
    // the container without a pull.
    let bearer = format!("Bearer {WEBHOOK_KEY}");
    let again = json!({ "image": tagged, "digest": second }).to_string();
    let (status, answer) = app
        .deliver("image", &[("authorization", &bearer)], &again)
        .await;
    assert_eq!(status, 202, "{answer}");
    let (units, _) = app.next_job().await;
    let mut up_to_date = named(&units, "up-to-date");
    up_to_date.sort();
    assert_eq!(up_to_date, expected, "{units:?}");
    let reason = units
        .iter()
        .find(|unit| unit.name == container)
        .and_then(|unit| unit.outcome.reason.clone())
        .unwrap_or_default();
    assert!(reason.contains("the pushed digest"), "{reason}");
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

/// The notification of a real `docker push` of `localhost:5000/myorg/app:latest`.
const RECORDED_PUSH: &str =
    include_str!("../../fixtures/docker/distribution-notification-manifest-push.json");

impl TestApp {
    /// Delivers [`RECORDED_PUSH`] to `/autoredeploy/registry`, with the key.
    async fn deliver_recorded_push(&self) -> (u16, Value) {
        let bearer = format!("Bearer {WEBHOOK_KEY}");
        self.deliver(
            "registry",
            &[EVENTS_V1, ("authorization", &bearer)],
            RECORDED_PUSH,
        )
        .await
    }
}

/// A fake Rancher with `myorg/app:latest` from two registries: `local` runs it from
/// `localhost:5000`, `hub` from Docker Hub; and autoredeploy in front of it.
async fn same_name_on_two_registries() -> (FakeRancher, TestApp) {
    let rancher = FakeRancher::start(vec![
        service("local", "docker:localhost:5000/myorg/app:latest"),
        service("hub", "docker:myorg/app:latest"),
    ])
    .await;
    let app = spawn_app(&rancher).await;
    (rancher, app)
}

/// The recorded deliveries of a real `docker push` to `localhost:5000`: the host is part
/// of the image, so only the Rancher service running `localhost:5000/myorg/app` is
/// upgraded; layers are answered `202` and cost Rancher nothing; a wrong key is `401`.
#[tokio::test]
async fn registry_deliveries_reach_only_the_workloads_of_their_host() {
    let (rancher, mut app) = same_name_on_two_registries().await;
    let bearer = format!("Bearer {WEBHOOK_KEY}");
    let keyed = [EVENTS_V1, ("authorization", bearer.as_str())];
    let layer = include_str!("../../fixtures/docker/distribution-notification-blob-push.json");

    for headers in [
        vec![EVENTS_V1],
        vec![EVENTS_V1, ("authorization", "Bearer wrong-key-0123456789")],
    ] {
        let (status, answer) = app.deliver("registry", &headers, RECORDED_PUSH).await;
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

    let (status, answer) = app.deliver_recorded_push().await;
    assert_eq!(status, 202, "{answer}");
    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "upgraded"), ["local"], "{units:?}");
    assert!(units.iter().all(|unit| unit.name != "hub"), "{units:?}");
}

/// `POST /autoredeploy/image`, a CI job's "this image is new".
#[tokio::test]
async fn a_ci_job_names_the_new_image() {
    let (_rancher, mut app) = same_name_on_two_registries().await;
    let bearer = format!("Bearer {WEBHOOK_KEY}");
    let keyed = [("authorization", bearer.as_str())];
    let body = json!({ "image": "myorg/app" }).to_string();
    assert_eq!(app.deliver("image", &[], &body).await.0, 401);
    let digest_only = json!({ "image": format!("myorg/app@sha256:{}", "0".repeat(64)) });
    let (status, answer) = app.deliver("image", &keyed, &digest_only.to_string()).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("without a tag"),
        "{answer}"
    );
    // A URL written with a trailing slash is the same route.
    let (status, answer) = app.deliver("image/", &keyed, &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["image"], "docker.io/myorg/app:latest");
    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "upgraded"), ["hub"], "{units:?}");
}

const GITHUB_SECRET: &str = "github-secret-for-the-tests";
const GITEA_SECRET: &str = "gitea-secret-for-the-tests";

/// The hex HMAC-SHA256 of `body` keyed with `secret`, as the senders sign.
fn signed(secret: &str, body: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// One sender: the Rancher service on its registry a push must upgrade, a push, an event
/// of it that is not a push, how it authenticates a body, and headers that do not.
struct Sender {
    route: &'static str,
    service: &'static str,
    image: &'static str,
    body: String,
    not_a_push: String,
    signs: fn(&str) -> Vec<(String, String)>,
    bad: Vec<(String, String)>,
}

/// `pairs` as the `&str` pairs a delivery takes.
fn refs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// A Gitea package event, built from the fields of Gitea's `PackagePayload`.
fn gitea_event(action: &str) -> String {
    json!({
        "action": action,
        "package": {
            "type": "container", "name": "app", "version": "1.4",
            "owner": { "login": "team" },
            "html_url": "https://git.example.com:3000/team/-/packages/container/app/1.4"
        },
        "sender": { "login": "ci" }
    })
    .to_string()
}

/// Every sender, with recorded payloads (GitHub's given a tag).
fn senders() -> Vec<Sender> {
    let published = include_str!("../../fixtures/registries/ghcr-package-published.json");
    let mut github: Value = serde_json::from_str(published).unwrap();
    let version = &mut github["package"]["package_version"];
    version["container_metadata"]["tag"]["name"] = json!("v1.2");
    version["package_url"] = json!("ghcr.io/Codertocat/hello-world:v1.2");
    github["package"]["package_type"] = json!("CONTAINER");
    let github = github.to_string();
    let jfrog = include_str!("../../fixtures/registries/jfrog-docker-pushed.json");
    vec![
        Sender {
            route: "github",
            service: "ghcr",
            image: "ghcr.io/codertocat/hello-world:v1.2",
            bad: headers(&[
                ("x-github-event", "package"),
                (
                    "x-hub-signature-256",
                    &format!("sha256={}", signed("not-the-secret", &github)),
                ),
            ]),
            body: github,
            // The recorded event: an untagged manifest of an npm-typed package.
            not_a_push: published.to_owned(),
            signs: |body| {
                headers(&[
                    ("x-github-event", "package"),
                    ("x-github-delivery", &format!("delivery-{}", body.len())),
                    (
                        "x-hub-signature-256",
                        &format!("sha256={}", signed(GITHUB_SECRET, body)),
                    ),
                ])
            },
        },
        Sender {
            route: "harbor",
            service: "harbor",
            image: "hub.harbor.com/test-webhook/debian:latest",
            body: include_str!("../../fixtures/registries/harbor-push-artifact.json").to_owned(),
            not_a_push: include_str!("../../fixtures/registries/harbor-pull-artifact.json")
                .to_owned(),
            signs: |_| headers(&[("authorization", WEBHOOK_KEY)]),
            bad: headers(&[("authorization", "Bearer not-the-key-0123456789")]),
        },
        Sender {
            route: "quay",
            service: "quay",
            image: "quay.io/hiddeco/foo:3.10",
            body: include_str!("../../fixtures/registries/quay-repo-push-real.json").to_owned(),
            not_a_push: json!({
                "repository": "hiddeco/foo",
                "docker_url": "quay.io/hiddeco/foo",
                "updated_tags": []
            })
            .to_string(),
            signs: |_| Vec::new(),
            bad: Vec::new(),
        },
        Sender {
            route: "acr",
            service: "acr",
            image: "myregistry.azurecr.io/hello-world:v1",
            body: include_str!("../../fixtures/registries/acr-push.json").to_owned(),
            not_a_push: include_str!("../../fixtures/registries/acr-delete.json").to_owned(),
            signs: |_| headers(&[("authorization", &format!("Bearer {WEBHOOK_KEY}"))]),
            bad: headers(&[("authorization", WEBHOOK_KEY)]),
        },
        Sender {
            route: "jfrog",
            service: "jfrog",
            image: "trial30g6c2.jfrog.io/test-repo/foo/bar/busybox:latest",
            body: jfrog.to_owned(),
            not_a_push: jfrog.replace("\"pushed\"", "\"deleted\""),
            signs: |body| headers(&[("x-jfrog-event-auth", &signed(WEBHOOK_KEY, body))]),
            bad: headers(&[("x-jfrog-event-auth", &signed("not-the-key", jfrog))]),
        },
        Sender {
            route: "gitea",
            service: "gitea",
            image: "git.example.com:3000/team/app:1.4",
            body: gitea_event("created"),
            not_a_push: gitea_event("deleted"),
            signs: |body| {
                headers(&[
                    ("x-gitea-event", "package"),
                    ("x-gitea-signature", &signed(GITEA_SECRET, body)),
                ])
            },
            bad: headers(&[("x-gitea-event", "package")]),
        },
    ]
}

/// The route of `sender`, with the key in the URL for Quay.
fn route_of(sender: &Sender) -> String {
    match sender.route {
        "quay" => format!("quay?key={WEBHOOK_KEY}"),
        route => route.to_owned(),
    }
}

/// Each sender's own authentication is checked on the raw body before it is read: a
/// wrong one is `401` and costs Rancher nothing; a right one upgrades the service that
/// runs the pushed image on that sender's registry, and only that one.
#[tokio::test]
async fn every_sender_authenticates_its_own_way_and_deploys_its_registry_s_image() {
    let senders = senders();
    let rancher = FakeRancher::start(
        senders
            .iter()
            .map(|sender| service(sender.service, &format!("docker:{}", sender.image)))
            .collect(),
    )
    .await;
    let mut app = spawn_app_with(
        &rancher,
        &[
            ("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET),
            ("GITEA_WEBHOOK_SECRET", GITEA_SECRET),
            ("AUTOREDEPLOY_AUTH_FAILURES_PER_MINUTE", "100"),
        ],
    )
    .await;
    for sender in &senders {
        let bad = refs(&sender.bad);
        let (status, answer) = app.deliver(sender.route, &bad, &sender.body).await;
        assert_eq!(status, 401, "{}: {answer}", sender.route);
        // What is not a push, authenticated, is answered 202 and costs nothing.
        let authenticated = (sender.signs)(&sender.not_a_push);
        let (status, answer) = app
            .deliver(&route_of(sender), &refs(&authenticated), &sender.not_a_push)
            .await;
        assert_eq!(status, 202, "{}: {answer}", sender.route);
        assert!(
            !answer["ignored"].as_str().unwrap_or_default().is_empty(),
            "{}: {answer}",
            sender.route
        );
    }
    assert!(rancher.requests().is_empty(), "{:?}", rancher.requests());
    for sender in &senders {
        let authenticated = (sender.signs)(&sender.body);
        let (status, answer) = app
            .deliver(&route_of(sender), &refs(&authenticated), &sender.body)
            .await;
        assert_eq!(status, 202, "{}: {answer}", sender.route);
        assert_eq!(answer["image"], sender.image, "{}: {answer}", sender.route);
        let (units, _) = app.next_job().await;
        assert_eq!(named(&units, "upgraded"), [sender.service], "{units:?}");
    }

    // GitHub's redelivery of the same delivery is not a new push; its ping is answered.
    let github = &senders[0];
    let again = (github.signs)(&github.body);
    let (status, answer) = app.deliver("github", &refs(&again), &github.body).await;
    assert_eq!(status, 202, "{answer}");
    assert!(
        answer["ignored"]
            .as_str()
            .unwrap()
            .contains("received before"),
        "{answer}"
    );
    let ping = r#"{"zen": "Keep it logically awesome."}"#;
    let signature = format!("sha256={}", signed(GITHUB_SECRET, ping));
    let (status, answer) = app
        .deliver(
            "github",
            &[
                ("x-github-event", "ping"),
                ("x-hub-signature-256", &signature),
            ],
            ping,
        )
        .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("pong")),
        "{answer}"
    );
}

/// Without its secret, a signed sender's route is off, and says what to set.
#[tokio::test]
async fn a_signed_sender_without_its_secret_is_told_what_to_set() {
    let rancher = FakeRancher::start(vec![]).await;
    let app = spawn_app(&rancher).await;
    for (route, variable) in [
        ("github", "GITHUB_WEBHOOK_SECRET"),
        ("gitea", "GITEA_WEBHOOK_SECRET"),
    ] {
        let (status, answer) = app.deliver(route, &[], "{}").await;
        assert_eq!(status, 404, "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(variable),
            "{answer}"
        );
    }
}

/// A registry reached under two names: a push naming the one it was pushed to also
/// redeploys what runs the image under the other.
#[tokio::test]
async fn a_registry_alias_makes_a_push_reach_the_other_name_too() {
    let rancher = FakeRancher::start(vec![
        service("internal", "docker:localhost:5000/myorg/app:latest"),
        service("external", "docker:registry.example.com/myorg/app:latest"),
        service("elsewhere", "docker:other.example.com/myorg/app:latest"),
    ])
    .await;
    let mut app = spawn_app_with(
        &rancher,
        &[(
            "AUTOREDEPLOY_REGISTRY_ALIASES",
            "localhost:5000=registry.example.com",
        )],
    )
    .await;
    let (status, answer) = app.deliver_recorded_push().await;
    assert_eq!(status, 202, "{answer}");
    let images: Vec<&str> = answer["pushes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|push| push["image"].as_str().unwrap())
        .collect();
    assert_eq!(
        images,
        [
            "localhost:5000/myorg/app:latest",
            "registry.example.com/myorg/app:latest"
        ]
    );
    let mut upgraded = Vec::new();
    for _ in 0..2 {
        let (units, _) = app.next_job().await;
        upgraded.extend(named(&units, "upgraded"));
    }
    upgraded.sort();
    assert_eq!(upgraded, ["external", "internal"]);
}

/// A push nobody was told of (the registry notifies no one) is found by the re-check
/// within an interval and redeployed, as a job of source `recheck`; a container whose tag
/// did not move is left alone, and a later re-check finds nothing more to do.
#[tokio::test(flavor = "multi_thread")]
async fn the_recheck_finds_a_missed_push_and_leaves_the_rest_alone() {
    let Some(bench) = Bench::new("recheck").await else {
        return;
    };
    // Only this test's containers: others on the engine are other tests' business.
    const LABEL: &str = "autoredeploy.test.recheck";
    let sandbox = &bench.sandbox;
    let repository = bench.repository("web");
    bench.web_image(&repository, "1", 1, "").await;
    bench.web_image(&repository, "stable", 1, "").await;
    let (moved, steady) = (sandbox.name("moved"), sandbox.name("steady"));
    let port = free_port();
    for (name, tag, port) in [(&moved, "1", port), (&steady, "stable", free_port())] {
        let mut body = web_container(&format!("{repository}:{tag}"), port);
        body["Labels"] = json!({ LABEL: "true" });
        sandbox.run(name, body).await;
    }
    bench.web_image(&repository, "1", 2, "").await;

    let mut app = bench
        .app(&[
            ("AUTOREDEPLOY_TARGETS", "containers"),
            ("DOCKER_AUTOREDEPLOY_LABEL_NAME", LABEL),
            ("DOCKER_AUTOREDEPLOY_DEFAULT", "false"),
            ("AUTOREDEPLOY_RECHECK_INTERVAL", "2s"),
        ])
        .await;
    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "upgraded"), [moved.as_str()], "{units:?}");
    assert_eq!(read_published(port, "/index.html").await.unwrap(), "v2");

    // Two more intervals: everything runs what its tag names. A re-check that ran while
    // the redeploy was under way may have queued a job of the same tag, which found
    // nothing left to do; none ever concerned the tag that did not move.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let (_, jobs) = app.history("/jobs").await;
    let jobs = jobs["jobs"].as_array().unwrap();
    assert!(
        jobs.iter()
            .all(|job| job["source"] == "recheck"
                && job["image"] == format!("{repository}:1").as_str()),
        "{jobs:?}"
    );
    let upgrades: Vec<i64> = jobs
        .iter()
        .map(|job| job["upgraded"].as_i64().unwrap())
        .collect();
    assert_eq!(upgrades.iter().sum::<i64>(), 1, "{jobs:?}");
    assert!(jobs.len() <= 2, "{jobs:?}");
}

/// A registry sends again, for ever, a delivery it is not answered 2xx for: a push outside
/// `AUTOREDEPLOY_ALLOWED_REPOS` is ignored there, while a CI job is told no.
#[tokio::test]
async fn a_registry_push_outside_the_allowed_repositories_is_ignored_a_ci_job_refused() {
    let rancher = FakeRancher::start(vec![service(
        "local",
        "docker:localhost:5000/myorg/app:latest",
    )])
    .await;
    let app = spawn_app_with(&rancher, &[("AUTOREDEPLOY_ALLOWED_REPOS", "myorg/*")]).await;
    let bearer = format!("Bearer {WEBHOOK_KEY}");
    let (status, answer) = app.deliver_recorded_push().await;
    assert_eq!(status, 202, "{answer}");
    assert!(
        answer["ignored"]
            .as_str()
            .unwrap()
            .contains("AUTOREDEPLOY_ALLOWED_REPOS"),
        "{answer}"
    );
    let body = json!({ "image": "localhost:5000/myorg/app" }).to_string();
    let (status, answer) = app
        .deliver("image", &[("authorization", &bearer)], &body)
        .await;
    assert_eq!(status, 403, "{answer}");
    assert!(rancher.requests().is_empty(), "{:?}", rancher.requests());
}
