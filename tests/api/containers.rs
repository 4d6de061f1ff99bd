//! The containers target against a real Docker Engine and a real registry on 127.0.0.1:
//! what a redeploy keeps, what it leaves to the new image, and when it does nothing.

use serde_json::{Value, json};

use crate::helpers::{TestApp, WEBHOOK_KEY, named, skip_unless_ci, spawn_containers_app};
use crate::support::engine::{Registry, Sandbox, engine, host_port, read_published};

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
        let Some(engine) = engine().await else {
            skip_unless_ci("no Docker Engine answers at DOCKER_HOST or /var/run/docker.sock");
            return None;
        };
        let registry = match Registry::start(None).await {
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
        self.sandbox.push(repository, tag).await;
    }

    pub async fn app(&self, overrides: &[(&str, &str)]) -> TestApp {
        spawn_containers_app(self.docker_config.path(), overrides).await
    }
}

/// A create body for the web image `image` publishing its port on 127.0.0.1:`port`.
pub(crate) fn web_container(image: &str, port: u16) -> Value {
    json!({
        "Image": image,
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
    let port = host_port();
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
            web_container(&format!("{repository}:1"), host_port()),
        )
        .await;
    let mut app = bench.app(&[]).await;
    assert_eq!(app.notify(&name).await.0, 202);
    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "up-to-date"), [name.as_str()], "{units:?}");
    assert_eq!(sandbox.inspect(&name).await.unwrap()["Id"], id);
}
