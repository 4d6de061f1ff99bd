//! The containers target against a real Docker Engine and a real registry on 127.0.0.1:
//! what a redeploy keeps, what it leaves to the new image, and when it does nothing.

use serde_json::{Value, json};

use crate::helpers::{TestApp, WEBHOOK_KEY, named, skip_unless_ci, spawn_containers_app};
use crate::support::engine::{Registry, Sandbox, engine, free_port, read_published};

/// What every test here needs: an engine, a registry, a sandbox in the engine, and an
/// empty `config.json` folder. `None` (after a loud skip, or a failure under CI) when the
/// machine has no engine or registry.
pub(crate) struct Bench {
    pub sandbox: Sandbox,
    pub registry: Registry,
    pub docker_config: tempfile::TempDir,
}

impl Bench {
    pub async fn new(test: &str) -> Option<Self> {
        Self::with_registry(test, free_port(), None).await
    }

    /// The bench with a registry on `port` that asks for the credentials of `htpasswd`.
    pub async fn with_registry(test: &str, port: u16, htpasswd: Option<&str>) -> Option<Self> {
        let Some(engine) = engine().await else {
            skip_unless_ci("no Docker Engine answers at DOCKER_HOST or /var/run/docker.sock");
            return None;
        };
        let registry = match Registry::start(port, htpasswd).await {
            Ok(registry) => registry,
            Err(missing) => {
                skip_unless_ci(&missing);
                return None;
            }
        };
        Some(Self {
            sandbox: Sandbox::new(engine, test).await,
            registry,
            docker_config: tempfile::tempdir().unwrap(),
        })
    }

    /// The registry reference of the sandbox's image `what`.
    pub fn repository(&self, what: &str) -> String {
        format!("{}/{}", self.registry.host, self.sandbox.name(what))
    }

    /// Builds version `version` of the web image as `repository:tag` and pushes it. The
    /// image serves `index.html` (its version), `env` (its environment), and the logs its
    /// starts wrote to `/data` (a `VOLUME` of the image) and `/named`.
    pub async fn web_image(&self, repository: &str, tag: &str, version: u32, extra: &str) {
        self.build_web_image(repository, tag, version, extra).await;
        self.sandbox.push(repository, tag).await;
    }

    /// Builds the web image, as [`Bench::web_image`] does, without pushing it.
    pub async fn build_web_image(&self, repository: &str, tag: &str, version: u32, extra: &str) {
        let dockerfile = format!(
            "ENV VERSION={version} GREETING=hello-{version}\n\
             COPY index.html /www/index.html\n\
             VOLUME /data\n\
             LABEL from.image={version}\n\
             CMD [\"sh\", \"-c\", \"echo $VERSION >> /data/log; echo $VERSION >> /named/log; \
             cp /data/log /www/data.log; cp /named/log /www/named.log; env > /www/env; \
             exec httpd -f -p 8080 -h /www\"]\n{extra}"
        );
        let index = format!("v{version}");
        self.sandbox
            .build(
                &format!("{repository}:{tag}"),
                &dockerfile,
                &[("index.html", &index)],
            )
            .await;
    }

    /// Runs version 1 of the web image as the sandbox's `web`, with restart policy
    /// `always`, then pushes a version 2 built with `extra` Dockerfile lines. Returns the
    /// container's name, the port it publishes, and its id.
    pub async fn web_then_new_version(&self, extra: &str) -> (String, u16, String) {
        let repository = self.repository("web");
        self.web_image(&repository, "1", 1, "").await;
        let name = self.sandbox.name("web");
        let port = free_port();
        let mut body = web_container(&format!("{repository}:1"), port);
        body["HostConfig"]["RestartPolicy"] = json!({ "Name": "always" });
        let id = self.sandbox.run(&name, body).await;
        self.web_image(&repository, "1", 2, extra).await;
        (name, port, id)
    }

    pub async fn app(&self, overrides: &[(&str, &str)]) -> TestApp {
        spawn_containers_app(self.docker_config.path(), overrides).await
    }
}

/// A create body for the web image `image` publishing its port on 127.0.0.1:`port`.
pub(crate) fn web_container(image: &str, port: u16) -> Value {
    json!({
        "Image": image,
        // httpd, as process 1, ignores SIGTERM: the stop is quick only with a short timeout.
        "StopTimeout": 1,
        "ExposedPorts": { "8080/tcp": {} },
        "HostConfig": {
            "PortBindings": { "8080/tcp": [{ "HostIp": "127.0.0.1", "HostPort": port.to_string() }] }
        }
    })
}

impl TestApp {
    /// `POST /notify/{name}` with the key; returns the status and the answer.
    pub async fn notify(&self, name: &str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/notify/{name}", self.address))
            .bearer_auth(WEBHOOK_KEY)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redeploy_keeps_the_configuration_and_takes_the_new_image_defaults() {
    let Some(bench) = Bench::new("keeps").await else {
        return;
    };
    let sandbox = &bench.sandbox;
    let repository = bench.repository("web");
    bench.web_image(&repository, "1", 1, "").await;
    let (network, second_network, volume) = (
        sandbox.name("net"),
        sandbox.name("net2"),
        sandbox.name("named"),
    );
    sandbox.network(&network).await;
    sandbox.network(&second_network).await;
    sandbox.volume(&volume).await;
    let name = sandbox.name("web");
    let port = free_port();
    let mut body = web_container(&format!("{repository}:1"), port);
    body["Env"] = json!(["USER_SETTING=kept", "GREETING=mine"]);
    body["Labels"] = json!({ "mine": "yes" });
    body["StopSignal"] = json!("SIGINT");
    body["StopTimeout"] = json!(1);
    body["HostConfig"]["Binds"] = json!([format!("{volume}:/named")]);
    body["HostConfig"]["RestartPolicy"] = json!({ "Name": "unless-stopped" });
    body["HostConfig"]["NetworkMode"] = json!(network);
    body["NetworkingConfig"] =
        json!({ "EndpointsConfig": { network.clone(): { "Aliases": ["webalias"] } } });
    let old_id = sandbox.run(&name, body).await;
    sandbox.connect(&name, &second_network, &["second"]).await;
    assert_eq!(read_published(port, "/").await.unwrap(), "v1");

    bench.web_image(&repository, "1", 2, "").await;
    let mut app = bench.app(&[]).await;
    let (status, answer) = app.notify(&name).await;
    assert_eq!(status, 202, "{answer}");
    let (units, job) = app.next_job().await;
    assert_eq!(
        named(&units, "upgraded"),
        [name.as_str()],
        "{units:?} {job:?}"
    );

    assert_eq!(read_published(port, "/").await.unwrap(), "v2");
    let env = read_published(port, "/env").await.unwrap();
    for expected in ["VERSION=2", "USER_SETTING=kept", "GREETING=mine"] {
        assert!(
            env.lines().any(|line| line == expected),
            "{expected} in {env}"
        );
    }
    // Both volumes are the old container's: each start appended its version.
    assert_eq!(read_published(port, "/data.log").await.unwrap(), "1\n2\n");
    assert_eq!(read_published(port, "/named.log").await.unwrap(), "1\n2\n");

    let new = sandbox
        .inspect(&name)
        .await
        .expect("the container has its name");
    assert_ne!(new["Id"], old_id);
    assert_eq!(new["State"]["Running"], true);
    assert_eq!(new["Config"]["Labels"]["mine"], "yes");
    assert_eq!(new["Config"]["Labels"]["from.image"], "2");
    assert_eq!(new["Config"]["StopSignal"], "SIGINT");
    assert_eq!(new["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped");
    assert_ne!(new["Config"]["Hostname"], old_id[..12]);
    let networks = &new["NetworkSettings"]["Networks"];
    let aliases = |network: &str| {
        networks[network]["Aliases"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    assert!(aliases(&network).contains(&json!("webalias")), "{networks}");
    assert!(
        aliases(&second_network).contains(&json!("second")),
        "{networks}"
    );
    assert!(
        !aliases(&network).contains(&json!(&old_id[..12])),
        "{networks}"
    );
    assert_eq!(
        sandbox.containers().await,
        [name.as_str()],
        "nothing else is left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unchanged_image_is_left_running_as_it_is() {
    let Some(bench) = Bench::new("same").await else {
        return;
    };
    let sandbox = &bench.sandbox;
    let repository = bench.repository("web");
    bench.web_image(&repository, "1", 1, "").await;
    let name = sandbox.name("web");
    let id = sandbox
        .run(
            &name,
            web_container(&format!("{repository}:1"), free_port()),
        )
        .await;
    let mut app = bench.app(&[]).await;
    assert_eq!(app.notify(&name).await.0, 202);
    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "up-to-date"), [name.as_str()], "{units:?}");
    assert_eq!(sandbox.inspect(&name).await.unwrap()["Id"], id);
}

/// Redeploys the web image to a version 2 built with `extra` Dockerfile lines, through
/// `/notify`. Returns the old container's id, its port and the unit's outcome.
async fn redeploy_to_a_broken_image(
    bench: &Bench,
    extra: &str,
) -> (String, u16, autoredeploy::events::UnitOutcome) {
    let (name, port, old_id) = bench.web_then_new_version(extra).await;
    let mut app = bench.app(&[]).await;
    assert_eq!(app.notify(&name).await.0, 202);
    let (mut units, _) = app.next_job().await;
    assert_eq!(units.len(), 1, "{units:?}");
    (old_id, port, units.remove(0))
}

/// The old container runs again under its name, with its restart policy, and nothing
/// else is left.
async fn assert_put_back(bench: &Bench, old_id: &str, port: u16) {
    let sandbox = &bench.sandbox;
    let name = sandbox.name("web");
    let container = sandbox
        .inspect(&name)
        .await
        .expect("a container has the name");
    assert_eq!(container["Id"], old_id);
    assert_eq!(container["State"]["Running"], true);
    assert_eq!(container["HostConfig"]["RestartPolicy"]["Name"], "always");
    assert_eq!(read_published(port, "/").await.unwrap(), "v1");
    assert_eq!(sandbox.containers().await, [name.as_str()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_container_that_exits_is_rolled_back() {
    let Some(bench) = Bench::new("exits").await else {
        return;
    };
    let (old_id, port, unit) =
        redeploy_to_a_broken_image(&bench, "CMD [\"sh\", \"-c\", \"exit 3\"]").await;
    assert_eq!(unit.outcome.end.as_str(), "rolled-back", "{unit:?}");
    let reason = unit.outcome.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("code 3") || reason.contains("restart"),
        "{reason}"
    );
    assert_put_back(&bench, &old_id, port).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_container_that_turns_unhealthy_is_rolled_back() {
    let Some(bench) = Bench::new("unhealthy").await else {
        return;
    };
    let check =
        "HEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD sh -c 'echo probe says no; exit 1'";
    let (old_id, port, unit) = redeploy_to_a_broken_image(&bench, check).await;
    assert_eq!(unit.outcome.end.as_str(), "rolled-back", "{unit:?}");
    let reason = unit.outcome.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("unhealthy") && reason.contains("probe says no"),
        "{reason}"
    );
    assert_put_back(&bench, &old_id, port).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_new_container_passes_its_gate() {
    let Some(bench) = Bench::new("healthy").await else {
        return;
    };
    let check = "HEALTHCHECK --interval=1s --timeout=1s --retries=3 CMD wget -q -O /dev/null http://127.0.0.1:8080/";
    let (old_id, port, unit) = redeploy_to_a_broken_image(&bench, check).await;
    assert_eq!(unit.outcome.end.as_str(), "upgraded", "{unit:?}");
    let name = bench.sandbox.name("web");
    let container = bench.sandbox.inspect(&name).await.unwrap();
    assert_ne!(container["Id"], old_id);
    assert_eq!(container["State"]["Health"]["Status"], "healthy");
    assert_eq!(read_published(port, "/").await.unwrap(), "v2");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_pull_touches_nothing() {
    let Some(bench) = Bench::new("nopull").await else {
        return;
    };
    let sandbox = &bench.sandbox;
    // Built here, never pushed: the registry has no such image.
    let repository = bench.repository("unpushed");
    sandbox
        .build(&format!("{repository}:1"), "CMD [\"sleep\", \"600\"]", &[])
        .await;
    let name = sandbox.name("app");
    let id = sandbox
        .run(
            &name,
            json!({ "Image": format!("{repository}:1"), "StopTimeout": 1 }),
        )
        .await;
    let mut app = bench.app(&[]).await;
    assert_eq!(app.notify(&name).await.0, 202);
    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "failed"), [name.as_str()], "{units:?}");
    let reason = units[0].outcome.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("pulling") && reason.contains("nothing was changed"),
        "{reason}"
    );
    let container = sandbox.inspect(&name).await.unwrap();
    assert_eq!(container["Id"], id);
    assert_eq!(container["State"]["Running"], true);
    assert_eq!(sandbox.containers().await, [name.as_str()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_hub_pushes_reach_containers_by_image_tag_and_label() {
    let Some(bench) = Bench::new("hub").await else {
        return;
    };
    let sandbox = &bench.sandbox;
    // A Docker Hub name, built here: nothing may be pulled from Docker Hub, so the one
    // container the push concerns is opted out, and the others run another tag or image.
    let repository = format!("autoredeploy-test/{}", sandbox.name("hub"));
    for tag in ["1", "2"] {
        sandbox
            .build(
                &format!("{repository}:{tag}"),
                "CMD [\"sleep\", \"600\"]",
                &[],
            )
            .await;
    }
    let out = sandbox.name("out");
    sandbox
        .run(
            &out,
            json!({
                "Image": format!("{repository}:1"),
                "StopTimeout": 1,
                "Labels": { "tech.manas.service.autoredeploy": "false" }
            }),
        )
        .await;
    let other_tag = sandbox.name("othertag");
    let other_id = sandbox
        .run(
            &other_tag,
            json!({ "Image": format!("{repository}:2"), "StopTimeout": 1 }),
        )
        .await;
    // Stopped containers are left alone: they are no unit at all.
    let stopped = sandbox.name("stopped");
    sandbox
        .engine
        .call(
            autoredeploy::platform::engine::Call::post(
                "creating",
                &format!("/containers/create?name={stopped}"),
            )
            .json(&json!({
                "Image": format!("{repository}:1"),
                "Labels": { "autoredeploy.test": sandbox.id }
            })),
        )
        .await
        .unwrap();
    let mut app = bench.app(&[]).await;
    let (units, job) = app.push_and_wait(&repository, Some("1")).await;
    assert_eq!(named(&units, "skipped"), [out.as_str()], "{units:?}");
    assert_eq!(
        units.len(),
        1,
        "only the container of that tag is a unit: {units:?} {job:?}"
    );
    assert!(
        units[0]
            .outcome
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("=false")
    );
    assert_eq!(sandbox.inspect(&other_tag).await.unwrap()["Id"], other_id);

    // /notify refuses it too, and says why.
    let (status, answer) = app.notify(&out).await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("=false"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_answer_of_notify() {
    let Some(bench) = Bench::new("notify").await else {
        return;
    };
    let sandbox = &bench.sandbox;
    let repository = bench.repository("web");
    bench.web_image(&repository, "1", 1, "").await;
    let names: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|name| sandbox.name(name))
        .collect();
    for name in &names {
        sandbox
            .run(name, web_container(&format!("{repository}:1"), free_port()))
            .await;
    }
    let stopped = sandbox.name("stopped");
    let created: Value = sandbox
        .engine
        .json(
            autoredeploy::platform::engine::Call::post("creating", &format!("/containers/create?name={stopped}"))
                .json(&json!({ "Image": format!("{repository}:1"), "Labels": { "autoredeploy.test": sandbox.id } })),
        )
        .await
        .unwrap();
    assert!(created["Id"].is_string());
    bench.web_image(&repository, "1", 2, "").await;
    // The first redeploy holds its image's turn for a while, so the next job waits.
    let mut app = bench
        .app(&[
            ("DOCKER_UPGRADE_STABLE_S", "4"),
            ("AUTOREDEPLOY_QUEUE_SIZE", "1"),
        ])
        .await;
    let url = |name: &str| format!("{}/notify/{name}", app.address);

    let answer = app
        .http
        .get(url(&names[0]))
        .bearer_auth(WEBHOOK_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 405);
    assert_eq!(answer.headers()["allow"], "POST");
    let answer = app.http.post(url(&names[0])).send().await.unwrap();
    assert_eq!(answer.status(), 401);
    let answer = app
        .http
        .post(url(&names[0]))
        .bearer_auth("not-the-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    for bad in ["_web", "web%20x", "w%C3%A9b", ""] {
        let (status, answer) = app.notify(bad).await;
        assert_eq!(status, 400, "{bad}: {answer}");
        assert_eq!(answer["error"], "bad_container_name", "{bad}: {answer}");
    }
    let (status, answer) = app.notify(&sandbox.name("missing")).await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("no container named")
    );
    let (status, answer) = app.notify(&stopped).await;
    assert_eq!(status, 409, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("not running"));
    let auto_removed = sandbox.name("rm");
    let mut body = web_container(&format!("{repository}:1"), free_port());
    body["HostConfig"]["AutoRemove"] = json!(true);
    sandbox.run(&auto_removed, body).await;
    let (status, answer) = app.notify(&auto_removed).await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("--rm"),
        "{answer}"
    );

    let (status, first) = app.notify(&names[0]).await;
    assert_eq!(
        (status, first["container"].as_str()),
        (202, Some(names[0].as_str())),
        "{first}"
    );
    // Once the first job runs, the queue holds the next one.
    let started = tokio::time::Instant::now();
    while app.history(&format!("/jobs/{}", first["job"])).await.1["state"] == "queued" {
        assert!(
            started.elapsed().as_secs() < 30,
            "the first job never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, second) = app.notify(&names[1]).await;
    assert_eq!(status, 202, "{second}");
    assert_ne!(second["job"], first["job"]);
    let (status, again) = app.notify(&names[1]).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(
        (again["job"].clone(), again["coalesced"].clone()),
        (second["job"].clone(), json!(true))
    );
    let answer = app
        .http
        .post(url(&names[2]))
        .bearer_auth(WEBHOOK_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 503);
    assert!(answer.headers().contains_key("retry-after"));

    // Each job redeploys its own container only.
    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "upgraded"), [names[0].as_str()], "{units:?}");
    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "upgraded"), [names[1].as_str()], "{units:?}");
    let untouched = sandbox.inspect(&names[2]).await.unwrap();
    assert_eq!(untouched["Config"]["Labels"]["from.image"], "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_in_the_redeployed_ones_network_follows_it() {
    let Some(bench) = Bench::new("netns").await else {
        return;
    };
    let sandbox = &bench.sandbox;
    let repository = bench.repository("web");
    bench.web_image(&repository, "1", 1, "").await;
    let sidecar_image = format!("autoredeploy-test/{}", sandbox.name("sidecar"));
    sandbox
        .build(
            &format!("{sidecar_image}:1"),
            "COPY index.html /www/index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"8081\", \"-h\", \"/www\"]",
            &[("index.html", "sidecar")],
        )
        .await;
    let name = sandbox.name("web");
    let (web_port, sidecar_port) = (free_port(), free_port());
    let mut body = web_container(&format!("{repository}:1"), web_port);
    body["ExposedPorts"]["8081/tcp"] = json!({});
    body["HostConfig"]["PortBindings"]["8081/tcp"] =
        json!([{ "HostIp": "127.0.0.1", "HostPort": sidecar_port.to_string() }]);
    let old_id = sandbox.run(&name, body).await;
    let sidecar = sandbox.name("sidecar");
    let sidecar_id = sandbox
        .run(
            &sidecar,
            json!({
                "Image": format!("{sidecar_image}:1"),
                "StopTimeout": 1,
                // As compose writes `network_mode: service:web`: by id.
                "HostConfig": { "NetworkMode": format!("container:{old_id}") }
            }),
        )
        .await;
    assert_eq!(read_published(sidecar_port, "/").await.unwrap(), "sidecar");

    bench.web_image(&repository, "1", 2, "").await;
    let mut app = bench.app(&[]).await;
    assert_eq!(app.notify(&name).await.0, 202);
    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "upgraded"), [name.as_str()], "{units:?}");
    assert_eq!(units[0].outcome.reason, None, "{units:?}");

    // The sidecar answers through the new container's published port: it runs in its
    // network namespace.
    assert_eq!(read_published(web_port, "/").await.unwrap(), "v2");
    assert_eq!(read_published(sidecar_port, "/").await.unwrap(), "sidecar");
    let recreated = sandbox.inspect(&sidecar).await.unwrap();
    assert_ne!(recreated["Id"], sidecar_id);
    assert_eq!(recreated["State"]["Running"], true);
    let mut expected = vec![name.clone(), sidecar.clone()];
    expected.sort();
    assert_eq!(sandbox.containers().await, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compose_made_container_stays_compose_s() {
    let Some(bench) = Bench::new("compose").await else {
        return;
    };
    let sandbox = &bench.sandbox;
    let repository = bench.repository("web");
    bench.web_image(&repository, "1", 1, "").await;
    let old_image: Value = sandbox
        .engine
        .json(autoredeploy::platform::engine::Call::get(
            "image",
            &format!("/images/{repository}:1/json"),
        ))
        .await
        .unwrap();
    let project = sandbox.name("project");
    let name = format!("{project}-web-1");
    let mut body = web_container(&format!("{repository}:1"), free_port());
    // The labels docker compose v2 puts on a service's container.
    body["Labels"] = json!({
        "com.docker.compose.project": project,
        "com.docker.compose.service": "web",
        "com.docker.compose.container-number": "1",
        "com.docker.compose.oneoff": "False",
        "com.docker.compose.config-hash": "6f3e0c0c5d2b1a7f",
        "com.docker.compose.image": old_image["Id"],
        "com.docker.compose.version": "2.29.7",
    });
    sandbox.run(&name, body).await;
    bench.web_image(&repository, "1", 2, "").await;
    let mut app = bench.app(&[]).await;
    assert_eq!(app.notify(&name).await.0, 202);
    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "upgraded"), [name.as_str()], "{units:?}");

    // `docker compose ps` finds a project's containers by these labels; `docker compose
    // up` recreates a container whose `com.docker.compose.image` is not its image's id.
    let new = sandbox.inspect(&name).await.unwrap();
    let labels = &new["Config"]["Labels"];
    assert_eq!(labels["com.docker.compose.project"], project);
    assert_eq!(labels["com.docker.compose.service"], "web");
    assert_eq!(labels["com.docker.compose.config-hash"], "6f3e0c0c5d2b1a7f");
    assert_eq!(labels["com.docker.compose.image"], new["Image"]);
    assert_ne!(new["Image"], old_image["Id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_container_left_under_the_parked_name_is_cleared() {
    let Some(bench) = Bench::new("parked").await else {
        return;
    };
    let sandbox = &bench.sandbox;
    let (name, port, _) = bench.web_then_new_version("").await;
    // What a redeploy that could not remove the old container leaves: a stopped container
    // under the name the old one takes during the switch.
    let parked = format!("{name}-autoredeploy-old");
    let created: Value = sandbox
        .engine
        .json(
            autoredeploy::platform::engine::Call::post(
                "creating",
                &format!("/containers/create?name={parked}"),
            )
            .json(&json!({
                "Image": crate::support::engine::BASE_IMAGE,
                "Cmd": ["sleep", "600"],
                "Labels": { "autoredeploy.test": sandbox.id }
            })),
        )
        .await
        .unwrap();
    assert!(created["Id"].is_string());
    let mut app = bench.app(&[]).await;
    assert_eq!(app.notify(&name).await.0, 202);
    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "upgraded"), [name.as_str()], "{units:?}");
    assert_eq!(read_published(port, "/").await.unwrap(), "v2");
    assert_eq!(sandbox.containers().await, [name.as_str()]);
}
