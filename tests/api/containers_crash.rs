//! The real binary redeploying a real container, killed with SIGKILL at each step and
//! started again on the same data folder: exactly one container has the name afterwards,
//! the new one if it passed its gate, and nothing temporary or parked is left behind.

use serde_json::Value;

use crate::containers::Bench;
use crate::crash::Binary;
use crate::helpers::{WEBHOOK_KEY, http_client};
use crate::support::engine::{docker_host, read_published};
use crate::support::engine_proxy::{EngineProxy, Hold};

/// Where the binary is killed.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// While its `create` has not reached the engine.
    BeforeCreate,
    /// After the engine made the new container, before the answer arrived.
    AfterCreate,
    /// While the old container is being stopped.
    WhileStopping,
    /// While the new container is being started.
    WhileStarting,
    /// While the new container is on trial.
    WhileGating,
    /// While the old container is being removed.
    WhileRemovingOld,
    /// While a failed new container is being rolled back (the old one being renamed back).
    WhileRollingBack,
}

impl KillPoint {
    fn hold(self, old_id: &str, name: &str) -> Option<Hold> {
        let (method, path_contains, after_the_engine) = match self {
            Self::BeforeCreate => ("POST", "/containers/create".to_owned(), false),
            Self::AfterCreate => ("POST", "/containers/create".to_owned(), true),
            Self::WhileStopping => ("POST", format!("/containers/{old_id}/stop"), false),
            Self::WhileStarting => ("POST", "/start".to_owned(), false),
            Self::WhileGating => return None,
            Self::WhileRemovingOld => ("DELETE", format!("/containers/{old_id}"), false),
            Self::WhileRollingBack => (
                "POST",
                format!("/containers/{old_id}/rename?name={name}"),
                true,
            ),
        };
        Some(Hold {
            method,
            path_contains,
            after_the_engine,
        })
    }
}

async fn killed(point: KillPoint, test: &str) {
    let Some(bench) = Bench::new(test).await else {
        return;
    };
    let sandbox = &bench.sandbox;
    let broken = matches!(point, KillPoint::WhileRollingBack);
    let extra = if broken {
        "CMD [\"sh\", \"-c\", \"exit 3\"]"
    } else {
        ""
    };
    let (name, port, old_id) = bench.web_then_new_version(extra).await;

    let engine_socket = docker_host().trim_start_matches("unix://").to_owned();
    let proxy = EngineProxy::start(engine_socket.as_ref());
    let target = [
        ("DOCKER_HOST", proxy.docker_host()),
        (
            "DOCKER_CONFIG",
            bench.docker_config.path().display().to_string(),
        ),
        ("DOCKER_UPGRADE_STABLE_S", "3".to_owned()),
    ];
    let data = tempfile::tempdir().unwrap();
    let first_run = Binary::start_for(&target, data.path()).await;
    if let Some(hold) = point.hold(&old_id, &name) {
        proxy.hold(hold);
    }
    let job = notify(&first_run, &name).await;
    match point {
        KillPoint::WhileGating => until_step(&first_run, job, "gating").await,
        _ => proxy.until_held().await,
    }
    first_run.kill_hard().await;
    proxy.release();

    let second_run = Binary::start_for(&target, data.path()).await;
    let job = second_run.wait_until_done(job).await;
    let unit = &job["units"][0];
    assert_eq!(sandbox.containers().await, [name.as_str()], "{job}");
    let container = sandbox.inspect(&name).await.unwrap();
    assert_eq!(container["State"]["Running"], true, "{job}");
    assert_eq!(container["HostConfig"]["RestartPolicy"]["Name"], "always");
    if broken {
        assert_eq!(unit["end"], "rolled-back", "{job}");
        assert_eq!(container["Id"], old_id);
        assert_eq!(read_published(port, "/").await.unwrap(), "v1");
    } else {
        assert_eq!(unit["end"], "upgraded", "{job}");
        assert_ne!(container["Id"], old_id);
        assert_eq!(read_published(port, "/").await.unwrap(), "v2");
    }
    second_run.kill_hard().await;
}

async fn notify(binary: &Binary, name: &str) -> i64 {
    let answer = http_client()
        .post(format!("{}/notify/{name}", binary.address()))
        .bearer_auth(WEBHOOK_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    answer.json::<Value>().await.unwrap()["job"]
        .as_i64()
        .unwrap()
}

async fn until_step(binary: &Binary, job: i64, step: &str) {
    binary
        .wait_for(job, |detail| detail["units"][0]["step"] == step)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_before_the_create_reached_the_engine() {
    killed(KillPoint::BeforeCreate, "k-create").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_the_engine_created_the_new_container() {
    killed(KillPoint::AfterCreate, "k-created").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_while_the_old_container_stops() {
    killed(KillPoint::WhileStopping, "k-stop").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_while_the_new_container_starts() {
    killed(KillPoint::WhileStarting, "k-start").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_while_the_new_container_is_on_trial() {
    killed(KillPoint::WhileGating, "k-gate").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_while_the_old_container_is_removed() {
    killed(KillPoint::WhileRemovingOld, "k-remove").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_while_rolling_back() {
    killed(KillPoint::WhileRollingBack, "k-rollback").await;
}
