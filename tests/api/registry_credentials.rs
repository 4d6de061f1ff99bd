//! Pulls and Swarm updates from a registry that asks for credentials, with those of a
//! Docker `config.json`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::containers::{Bench, web_container};
use crate::helpers::named;
use crate::support::engine::{free_port, swarm};
use crate::swarm::{OPTED_IN, image_of, service_spec};
use autoredeploy::platform::engine::credentials::DockerConfig;

const USER: &str = "deployer";

/// A `config.json` holding `password` for `host`, under a key written as a URL.
fn config_json(host: &str, password: &str) -> String {
    let auth = STANDARD.encode(format!("{USER}:{password}"));
    json!({ "auths": { format!("http://{host}/"): { "auth": auth } } }).to_string()
}

/// A password whose `X-Registry-Auth` in *standard* base64 holds `+` or `/`: an engine
/// decodes the header as base64url, so a client that sent standard base64 would fail.
fn password_that_tells_the_encodings_apart(host: &str) -> String {
    (0..10_000)
        .map(|n| format!("pass~{n}?>"))
        .find(|password| {
            let config = DockerConfig::parse(config_json(host, password).as_bytes()).unwrap();
            let header = config.for_registry(host).unwrap().header_value();
            let json = URL_SAFE.decode(header.expose_secret()).unwrap();
            STANDARD.encode(json).contains(['+', '/'])
        })
        .expect("some password encodes differently")
}

/// A bench whose registry asks for credentials; its password, and the `X-Registry-Auth`
/// the tests push with.
async fn bench_with_credentials(test: &str) -> Option<(Bench, String, secrecy::SecretString)> {
    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    let password = password_that_tells_the_encodings_apart(&host);
    let hash = bcrypt::hash(&password, 4).unwrap();
    let htpasswd = format!("{USER}:{hash}\n");
    let bench = Bench::with_registry(test, port, Some(&htpasswd)).await?;
    let push_auth = DockerConfig::parse(config_json(&host, &password).as_bytes())
        .unwrap()
        .for_registry(&host)
        .unwrap()
        .header_value();
    Some((bench, password, push_auth))
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_use_the_credentials_of_config_json() {
    let Some((bench, password, push_auth)) = bench_with_credentials("creds").await else {
        return;
    };
    let host = bench.registry.host.clone();
    let sandbox = &bench.sandbox;
    let repository = bench.repository("web");
    bench.build_web_image(&repository, "1", 1, "").await;
    sandbox.push_with(&repository, "1", &push_auth).await;
    let name = sandbox.name("web");
    let old_id = sandbox
        .run(
            &name,
            web_container(&format!("{repository}:1"), free_port()),
        )
        .await;
    bench.build_web_image(&repository, "1", 2, "").await;
    sandbox.push_with(&repository, "1", &push_auth).await;

    // Without credentials the pull is refused, and nothing changes.
    let mut app = bench.app(&[]).await;
    assert_eq!(app.notify(&name).await.0, 202);
    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "failed"), [name.as_str()], "{units:?}");
    assert_eq!(sandbox.inspect(&name).await.unwrap()["Id"], old_id);

    // With them it succeeds, and the password shows nowhere (the app checks its log when
    // it is dropped).
    std::fs::write(
        bench.docker_config.path().join("config.json"),
        config_json(&host, &password),
    )
    .unwrap();
    assert_eq!(app.notify(&name).await.0, 202);
    let (units, _) = app.next_job().await;
    assert_eq!(named(&units, "upgraded"), [name.as_str()], "{units:?}");
    assert!(!format!("{units:?}").contains(&password));
}

/// The digest is asked of the registry with the credentials, and the update passes them on
/// to Swarm, whose node pulls the new image with them (it is not on the engine).
#[tokio::test(flavor = "multi_thread")]
async fn swarm_updates_use_the_credentials_of_config_json() {
    let Some((bench, password, push_auth)) = bench_with_credentials("swarm-creds").await else {
        return;
    };
    let host = bench.registry.host.clone();
    let sandbox = &bench.sandbox;
    swarm(&sandbox.engine).await;
    let repository = bench.repository("web");
    let tagged = format!("{repository}:1");
    bench.build_web_image(&repository, "1", 1, "").await;
    sandbox.push_with(&repository, "1", &push_auth).await;
    let first = sandbox.registry_digest_with(&tagged, &push_auth).await;
    let name = sandbox.name("web");
    let pinned = format!("{tagged}@{first}");
    let spec = service_spec(&name, &pinned, json!({ OPTED_IN: "true" }), "pause");
    sandbox.service(spec).await;
    bench.build_web_image(&repository, "1", 2, "").await;
    sandbox.push_with(&repository, "1", &push_auth).await;
    let second = sandbox.registry_digest_with(&tagged, &push_auth).await;
    sandbox.remove_image(&tagged).await;

    // Without credentials the registry does not say the digest, and nothing changes.
    let mut app = bench.app(&[]).await;
    let units = app.set_image(&name, &tagged).await;
    assert_eq!(named(&units, "failed"), [name.as_str()], "{units:?}");
    assert_eq!(image_of(&sandbox.inspect_service(&name).await), pinned);

    std::fs::write(
        bench.docker_config.path().join("config.json"),
        config_json(&host, &password),
    )
    .unwrap();
    let units = app.set_image(&name, &tagged).await;
    assert_eq!(named(&units, "upgraded"), [name.as_str()], "{units:?}");
    assert_eq!(
        image_of(&sandbox.inspect_service(&name).await),
        format!("{tagged}@{second}")
    );
    assert!(!format!("{units:?}").contains(&password));
}
