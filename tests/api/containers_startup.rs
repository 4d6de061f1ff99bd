//! How the containers target starts: the engine is asked its API version at once, an
//! engine that cannot be used stops the start with a message naming `DOCKER_HOST`, and the
//! version spoken is the newest both sides know.

use std::sync::{Arc, Mutex};

use autoredeploy::config::Settings;
use autoredeploy::startup::Application;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::helpers::{WEBHOOK_KEY, http_client, push_body};
use crate::support::engine_tls::EngineTls;

/// An engine stand-in on a Unix socket: `/version` answers `status` with `ApiVersion`
/// `version`; a path of a version below the minimum (none at first) is refused as Docker
/// 29 refuses it, everything else is an empty list. It records the paths asked.
struct FakeEngine {
    socket: std::path::PathBuf,
    paths: Arc<Mutex<Vec<String>>>,
    /// The version `/version` announces, and the oldest one accepted.
    versions: Arc<Mutex<(&'static str, &'static str)>>,
    _folder: tempfile::TempDir,
}

impl FakeEngine {
    fn start(status: u16, version: &'static str) -> Self {
        let folder = tempfile::tempdir().unwrap();
        let socket = folder.path().join("docker.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let paths: Arc<Mutex<Vec<String>>> = Arc::default();
        let versions = Arc::new(Mutex::new((version, "1.12")));
        let recorded = Arc::clone(&paths);
        let spoken = Arc::clone(&versions);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let recorded = Arc::clone(&recorded);
                let spoken = Arc::clone(&spoken);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => head.extend_from_slice(&buffer[..read]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    let path = text.split(' ').nth(1).unwrap_or_default().to_owned();
                    recorded.lock().unwrap().push(path.clone());
                    let (current, minimum) = *spoken.lock().unwrap();
                    let asked = path
                        .strip_prefix("/v")
                        .and_then(|rest| rest.split('/').next())
                        .and_then(|version| version.split_once('.'))
                        .and_then(|(_, minor)| minor.parse::<u32>().ok());
                    let oldest: u32 = minimum.split_once('.').unwrap().1.parse().unwrap();
                    let (status, body) = if path == "/version" {
                        (
                            status,
                            format!(
                                "{{\"ApiVersion\":\"{current}\",\"MinAPIVersion\":\"{minimum}\"}}"
                            ),
                        )
                    } else if asked.is_some_and(|minor| minor < oldest) {
                        (
                            400,
                            format!(
                                "{{\"message\":\"client version 1.{} is too old. Minimum supported API version is {minimum}, please upgrade your client to a newer version\"}}",
                                asked.unwrap_or_default()
                            ),
                        )
                    } else {
                        (200, "[]".to_owned())
                    };
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        Self {
            socket,
            paths,
            versions,
            _folder: folder,
        }
    }

    fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

/// Starts the application on `docker_host`, with a data folder that lives as long as the
/// returned guard.
async fn start(docker_host: &str) -> (Result<Application, String>, tempfile::TempDir) {
    crate::log_capture::install();
    let data = tempfile::tempdir().unwrap();
    let vars = [
        ("AUTOREDEPLOY_DATA_DIR", data.path().display().to_string()),
        ("DOCKER_HUB_KEY", WEBHOOK_KEY.to_owned()),
        ("DOCKER_HOST", docker_host.to_owned()),
    ];
    let settings = Settings::from_vars(
        vars.into_iter()
            .map(|(name, value)| (name.to_owned(), value)),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let application = Application::new(listener, settings)
        .await
        .map_err(|error| error.to_string());
    (application, data)
}

#[tokio::test]
async fn a_socket_that_is_not_there_stops_the_start() {
    let refused = start("unix:///nonexistent/docker.sock")
        .await
        .0
        .unwrap_err();
    assert!(
        refused.contains("DOCKER_HOST") && refused.contains("/nonexistent/docker.sock"),
        "{refused}"
    );
}

#[tokio::test]
async fn an_engine_answering_an_error_stops_the_start() {
    let engine = FakeEngine::start(500, "1.41");
    let refused = start(&engine.docker_host()).await.0.unwrap_err();
    assert!(
        refused.contains("DOCKER_HOST") && refused.contains("500"),
        "{refused}"
    );
}

#[tokio::test]
async fn swarm_named_on_an_engine_that_is_no_manager_stops_the_start() {
    let engine = FakeEngine::start(200, "1.41");
    crate::log_capture::install();
    let data = tempfile::tempdir().unwrap();
    let vars = [
        ("AUTOREDEPLOY_DATA_DIR", data.path().display().to_string()),
        ("DOCKER_HUB_KEY", WEBHOOK_KEY.to_owned()),
        ("DOCKER_HOST", engine.docker_host()),
        ("AUTOREDEPLOY_TARGETS", "swarm".to_owned()),
    ];
    let settings = Settings::from_vars(
        vars.into_iter()
            .map(|(name, value)| (name.to_owned(), value)),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = Application::new(listener, settings)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("not a Swarm manager") && refused.contains("AUTOREDEPLOY_TARGETS"),
        "{refused}"
    );
}

#[tokio::test]
async fn an_engine_older_than_docker_20_10_stops_the_start() {
    let engine = FakeEngine::start(200, "1.40");
    let refused = start(&engine.docker_host()).await.0.unwrap_err();
    assert!(
        refused.contains("DOCKER_HOST") && refused.contains("1.40") && refused.contains("1.41"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_newer_engine_is_spoken_to_in_the_newest_version_autoredeploy_knows() {
    let engine = FakeEngine::start(200, "1.54");
    let (application, _data) = start(&engine.docker_host()).await;
    let application = application.unwrap();
    let address = format!("http://{}", application.local_addr().unwrap());
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(application.run(async {
        let _ = stopped.await;
    }));
    let answer = http_client()
        .post(format!("{address}/autoredeploy?key={WEBHOOK_KEY}"))
        .header("content-type", "application/json")
        .body(push_body("myorg/web", Some("1")).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let started = tokio::time::Instant::now();
    while !engine
        .paths
        .lock()
        .unwrap()
        .iter()
        .any(|path| path.contains("/containers/json"))
    {
        assert!(
            started.elapsed().as_secs() < 20,
            "{:?}",
            engine.paths.lock().unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let paths = engine.paths.lock().unwrap().clone();
    assert_eq!(paths[0], "/version", "{paths:?}");
    assert!(
        paths[1..].iter().all(|path| path.starts_with("/v1.51/")),
        "{paths:?}"
    );
}

/// Pushes an image to the application at `address` and waits until `engine` was asked for
/// its containers `times` times in all; returns the paths it was asked.
async fn push_until_listed(address: &str, engine: &FakeEngine, times: usize) -> Vec<String> {
    let answer = http_client()
        .post(format!("{address}/autoredeploy?key={WEBHOOK_KEY}"))
        .header("content-type", "application/json")
        .body(push_body("myorg/web", Some("1")).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let listed = |paths: &Vec<String>| {
        paths
            .iter()
            .filter(|path| path.contains("/containers/json"))
            .count()
    };
    let started = tokio::time::Instant::now();
    while listed(&engine.paths.lock().unwrap()) < times {
        assert!(
            started.elapsed().as_secs() < 20,
            "{:?}",
            engine.paths.lock().unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    engine.paths.lock().unwrap().clone()
}

#[tokio::test]
async fn an_engine_replaced_by_one_that_refuses_the_version_in_use_is_asked_again() {
    let engine = FakeEngine::start(200, "1.41");
    let (application, _data) = start(&engine.docker_host()).await;
    let application = application.unwrap();
    let address = format!("http://{}", application.local_addr().unwrap());
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(application.run(async {
        let _ = stopped.await;
    }));
    let paths = push_until_listed(&address, &engine, 1).await;
    assert!(
        paths.contains(&"/v1.41/containers/json".to_owned()),
        "{paths:?}"
    );

    // Docker 29.0 in its place: API 1.52, nothing older than 1.44.
    *engine.versions.lock().unwrap() = ("1.52", "1.44");
    let paths = push_until_listed(&address, &engine, 3).await;
    let asked: Vec<&str> = paths[paths.len() - 3..]
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        asked,
        [
            "/v1.41/containers/json",
            "/version",
            "/v1.51/containers/json"
        ],
        "{paths:?}"
    );
}

#[tokio::test]
async fn an_engine_on_tcp_that_does_not_answer_yet_is_waited_for() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (application, _data) = start(&format!("tcp://127.0.0.1:{closed}")).await;
    assert!(application.is_ok(), "{:?}", application.err());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_engine_behind_tls_is_reached_with_the_client_certificate_of_docker_cert_path() {
    let Some(bench) = crate::containers::Bench::new("tls").await else {
        return;
    };
    let socket = crate::support::engine::docker_host()
        .trim_start_matches("unix://")
        .to_owned();
    let front = EngineTls::start(socket.as_ref()).await;
    let sandbox = &bench.sandbox;
    let repository = bench.repository("web");
    bench.web_image(&repository, "1", 1, "").await;
    let name = sandbox.name("web");
    sandbox
        .run(
            &name,
            crate::containers::web_container(
                &format!("{repository}:1"),
                crate::support::engine::free_port(),
            ),
        )
        .await;
    let docker_host = format!("tcp://127.0.0.1:{}", front.address.port());
    let cert_path = front.client_files.path().display().to_string();
    let mut app = bench
        .app(&[
            ("DOCKER_HOST", &docker_host),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", &cert_path),
        ])
        .await;
    assert_eq!(app.notify(&name).await.0, 202);
    let (units, _) = app.next_job().await;
    assert_eq!(
        crate::helpers::named(&units, "up-to-date"),
        [name.as_str()],
        "{units:?}"
    );

    // A client certificate of another CA is refused by the engine: that stops the start.
    let data = tempfile::tempdir().unwrap();
    let vars = [
        ("AUTOREDEPLOY_DATA_DIR", data.path().display().to_string()),
        ("DOCKER_HUB_KEY", WEBHOOK_KEY.to_owned()),
        ("DOCKER_HOST", docker_host.clone()),
        ("DOCKER_TLS_VERIFY", "1".to_owned()),
        (
            "DOCKER_CERT_PATH",
            front.stranger_files.path().display().to_string(),
        ),
    ];
    let settings = Settings::from_vars(
        vars.into_iter()
            .map(|(name, value)| (name.to_owned(), value)),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = Application::new(listener, settings)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("DOCKER_HOST") && refused.contains("TLS handshake"),
        "{refused}"
    );
}
