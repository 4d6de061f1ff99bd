//! The order and the ends of jobs when Rancher cannot be reached for a while: the defects
//! found in 0.1.0, each reproduced against the real server.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{named, spawn_app_with};
use crate::support::fake_rancher::{FakeRancher, service};

/// A job paused because Rancher could not be reached holds its image: a later push of the
/// same image follows it and never overtakes it (0.1.0 deployed push 2, then push 1).
#[tokio::test]
async fn a_paused_job_is_not_overtaken_by_a_later_push_of_its_image() {
    let rancher = FakeRancher::start(vec![service("web", "docker:myorg/web:latest")]).await;
    let mut app = spawn_app_with(
        &rancher,
        &[
            ("RANCHER_RETRY_ATTEMPTS", "0"),
            ("AUTOREDEPLOY_JOB_RETRY_S", "1"),
        ],
    )
    .await;
    rancher.fail_next(1);
    let first = app.push("myorg/web", Some("latest")).await["job"].clone();
    // The first job's list was refused: it is paused for a second.
    tokio::time::timeout(Duration::from_secs(10), async {
        while !rancher.requests().iter().any(|r| r.is_list()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the first job asks for the list");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = app.push("myorg/web", Some("latest")).await;
    assert_eq!(second["coalesced"], false, "it follows the running job");
    let (_, ended_first) = app.next_job().await;
    let (_, ended_second) = app.next_job().await;
    assert_eq!(
        [ended_first.job.0, ended_second.job.0],
        [first.as_i64().unwrap(), second["job"].as_i64().unwrap()],
        "the jobs ended in the order of their pushes"
    );
}

/// A job whose runs are used up while a service's upgrade cannot be carried on ends that
/// service as failed, with its outcome line; it is never left without an end (0.1.0 ended
/// the job with the service `upgrading` and `pending: 1` for ever).
#[tokio::test]
async fn giving_up_a_job_ends_every_one_of_its_services() {
    let rancher = FakeRancher::start(vec![service("web", "docker:myorg/web:latest")]).await;
    let mut app = spawn_app_with(
        &rancher,
        &[
            ("RANCHER_RETRY_ATTEMPTS", "0"),
            ("AUTOREDEPLOY_JOB_RETRIES", "1"),
        ],
    )
    .await;
    rancher.fail_next_posts(1000, StatusCode::SERVICE_UNAVAILABLE);
    let (outcomes, job) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "failed"), ["web"], "{outcomes:?}");
    let reason = outcomes[0].outcome.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("AUTOREDEPLOY_JOB_RETRIES"), "{reason}");
    assert_eq!(job.failed, 1);
    let (_, detail) = app.history(&format!("/jobs/{}", job.job)).await;
    assert_eq!(detail["state"], "failed", "{detail}");
    assert_eq!(detail["pending"], 0, "{detail}");
    assert_eq!(detail["units"][0]["end"], "failed", "{detail}");
}
