//! Coalescing, follow-up runs, back-pressure, Rancher flapping, and the job history.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use warp::http::StatusCode;

use crate::helpers::{TestApp, WEBHOOK_KEY, named, push_body, spawn_app, spawn_app_with};
use crate::support::fake_rancher::{Behaviour, FakeRancher, service};
use crate::support::flaky_proxy::FlakyProxy;

fn environment() -> Vec<crate::support::fake_rancher::ServiceSpec> {
    vec![
        service("web-1", "docker:myorg/web:latest"),
        service("web-2", "docker:myorg/web:latest"),
        service("api", "docker:myorg/api:latest"),
    ]
}

/// Sends `count` pushes of `myorg/web:latest` at once; returns the job each answer named.
async fn push_at_once(app: &TestApp, count: usize) -> Vec<i64> {
    let body = push_body("myorg/web", Some("latest")).to_string();
    let url = format!("{}/autoredeploy?key={WEBHOOK_KEY}", app.address);
    let mut pushes = tokio::task::JoinSet::new();
    for _ in 0..count {
        let request = app
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone());
        pushes.spawn(async move { request.send().await.unwrap() });
    }
    let mut jobs = Vec::new();
    while let Some(answer) = pushes.join_next().await {
        let answer = answer.unwrap();
        assert_eq!(answer.status(), 202);
        let body: Value = answer.json().await.unwrap();
        jobs.push(body["job"].as_i64().unwrap());
    }
    jobs
}

/// A push joins the job queued for its image, if any; a running job takes no more pushes,
/// and a job for an image waits for the one running. Twenty-five identical pushes at once,
/// then, once the first job runs (and cannot end: its first upgrade is held), twenty-five
/// more: all fifty land in that job or in the one follow-up behind it, each push counted
/// once in the job its answer named, and the follow-up starts only after the first job
/// has ended.
#[tokio::test]
async fn fifty_identical_pushes_coalesce_and_never_overlap() {
    let rancher = FakeRancher::start(environment()).await;
    rancher.hold_next("upgrade");
    let mut app = spawn_app(&rancher).await;
    let mut answers = push_at_once(&app, 25).await;
    rancher.wait_until_holding().await;
    let while_running = push_at_once(&app, 25).await;
    answers.extend(&while_running);
    // How many of the pushes each job's number was given to.
    let mut answered: BTreeMap<i64, i64> = BTreeMap::new();
    for job in &answers {
        *answered.entry(*job).or_default() += 1;
    }
    assert_eq!(
        answered.len(),
        2,
        "fifty pushes make the first job and one follow-up: {answered:?}"
    );
    let (first, follow_up) = (answered.keys().min(), answered.keys().max());
    assert!(
        while_running.iter().all(|job| Some(job) == follow_up),
        "the pushes while job {first:?} ran all went to the follow-up {follow_up:?}: \
         {while_running:?}"
    );
    rancher.release(true);
    for _ in 0..2 {
        let (outcomes, _) = app.next_job().await;
        assert_eq!(named(&outcomes, "upgraded"), ["web-1", "web-2"]);
    }
    assert_eq!(
        rancher.upgrades_per_service(),
        [("1s1".to_owned(), 2), ("1s2".to_owned(), 2)].into()
    );
    assert_eq!(rancher.refusals(), 0, "no upgrade ever ran into our own");

    let (_, history) = app.history("/jobs").await;
    let mut jobs = history["jobs"].as_array().unwrap().clone();
    jobs.reverse();
    let counted: BTreeMap<i64, i64> = jobs
        .iter()
        .map(|job| (job["id"].as_i64().unwrap(), job["pushes"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        counted, answered,
        "every push is counted once, in the job its answer named"
    );
    let (earlier, later) = (&jobs[0], &jobs[1]);
    let ended = earlier["finished_at"].as_str().unwrap();
    let started = later["started_at"].as_str().unwrap();
    assert!(
        started >= ended,
        "job {} started at {started}, before job {} ended at {ended}",
        later["id"],
        earlier["id"]
    );
}

#[tokio::test]
async fn pushes_during_a_running_job_make_exactly_one_follow_up() {
    let rancher = FakeRancher::start(environment()).await;
    rancher.set_upgrade_time(Duration::from_millis(600));
    let mut app = spawn_app(&rancher).await;
    let first = app.push("myorg/web", Some("latest")).await;
    rancher.wait_for_upgrade_of_any().await;
    let mut follow_ups = BTreeSet::new();
    for _ in 0..5 {
        follow_ups.insert(
            app.push("myorg/web", Some("latest")).await["job"]
                .as_i64()
                .unwrap(),
        );
    }
    assert_eq!(follow_ups.len(), 1, "one follow-up job");
    assert!(!follow_ups.contains(&first["job"].as_i64().unwrap()));
    app.next_job().await;
    let (outcomes, job) = app.next_job().await;
    assert_eq!(Some(&job.job.0), follow_ups.first());
    assert_eq!(named(&outcomes, "upgraded"), ["web-1", "web-2"]);
    assert_eq!(
        rancher.upgrades_per_service(),
        [("1s1".to_owned(), 2), ("1s2".to_owned(), 2)].into()
    );
    assert_eq!(rancher.refusals(), 0);
}

#[tokio::test]
async fn a_full_queue_answers_503_and_writes_nothing() {
    let rancher = FakeRancher::start(environment()).await;
    rancher.set_upgrade_time(Duration::from_secs(3));
    let mut app = spawn_app_with(&rancher, &[("AUTOREDEPLOY_QUEUE_SIZE", "1")]).await;
    app.push("myorg/web", Some("latest")).await;
    rancher.wait_for_upgrade_of_any().await;
    // The follow-up for web fills the queue of one; it cannot start while web's job runs.
    app.push("myorg/web", Some("latest")).await;
    let refused = app
        .post_webhook(
            &format!("?key={WEBHOOK_KEY}"),
            push_body("myorg/api", Some("latest")).to_string(),
        )
        .await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let (_, history) = app.history("/jobs").await;
    let images: Vec<&str> = history["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["image"].as_str().unwrap())
        .collect();
    assert_eq!(
        images,
        ["docker.io/myorg/web:latest", "docker.io/myorg/web:latest"]
    );
    app.next_job().await;
}

#[tokio::test]
async fn an_upgrade_completes_once_rancher_recovers_from_errors_and_conflicts() {
    for status in [
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::BAD_GATEWAY,
        StatusCode::CONFLICT,
    ] {
        let rancher = FakeRancher::start(environment()).await;
        let mut app = spawn_app(&rancher).await;
        rancher.fail_next_with(5, status);
        let (outcomes, job) = app.push_and_wait("myorg/web", Some("latest")).await;
        assert_eq!(
            named(&outcomes, "upgraded"),
            ["web-1", "web-2"],
            "{status}: {job:?}"
        );
        assert_eq!(rancher.upgrades_per_service().values().sum::<usize>(), 2);
    }
}

#[tokio::test]
async fn an_upgrade_completes_once_rancher_stops_dropping_connections() {
    let rancher = FakeRancher::start(environment()).await;
    let proxy = FlakyProxy::start(rancher.address).await;
    let mut app = spawn_app_with(&rancher, &[("RANCHER_HOST", &proxy.host())]).await;
    proxy.drop_next(4);
    let (outcomes, _) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "upgraded"), ["web-1", "web-2"]);
    assert_eq!(proxy.dropped(), 4);
}

#[tokio::test]
async fn conflicts_and_errors_on_the_actions_themselves_are_retried() {
    for status in [StatusCode::CONFLICT, StatusCode::SERVICE_UNAVAILABLE] {
        let rancher = FakeRancher::start(environment()).await;
        let mut app = spawn_app(&rancher).await;
        rancher.fail_next_posts(4, status);
        let (outcomes, _) = app.push_and_wait("myorg/web", Some("latest")).await;
        assert_eq!(named(&outcomes, "upgraded"), ["web-1", "web-2"], "{status}");
        assert_eq!(
            rancher.upgrades_per_service(),
            [("1s1".to_owned(), 1), ("1s2".to_owned(), 1)].into()
        );
        assert_eq!(rancher.refusals(), 0);
    }
}

#[tokio::test]
async fn an_outage_while_polling_does_not_abandon_the_upgrade() {
    let rancher = FakeRancher::start(environment()).await;
    rancher.set_upgrade_time(Duration::from_millis(800));
    let mut app = spawn_app_with(
        &rancher,
        &[
            ("RANCHER_RETRY_ATTEMPTS", "1"),
            ("AUTOREDEPLOY_MAX_CONCURRENT_UPGRADES", "1"),
        ],
    )
    .await;
    app.push("myorg/web", Some("latest")).await;
    rancher.wait_for_upgrade_of_any().await;
    rancher.fail_next(6);
    let (outcomes, _) = app.next_job().await;
    assert_eq!(
        named(&outcomes, "upgraded"),
        ["web-1", "web-2"],
        "{outcomes:?}"
    );
    assert_eq!(
        rancher.upgrades_per_service(),
        [("1s1".to_owned(), 1), ("1s2".to_owned(), 1)].into()
    );
}

#[tokio::test]
async fn rancher_down_longer_than_the_request_retries_pauses_the_job_and_it_goes_on() {
    let rancher = FakeRancher::start(environment()).await;
    let mut app = spawn_app_with(
        &rancher,
        &[
            ("RANCHER_RETRY_ATTEMPTS", "1"),
            ("AUTOREDEPLOY_JOB_RETRY_S", "1"),
        ],
    )
    .await;
    rancher.fail_next(3);
    let (outcomes, job) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "upgraded"), ["web-1", "web-2"]);
    assert!(job.scan.is_ok());
}

#[tokio::test]
async fn rancher_down_for_good_fails_the_job_after_its_runs() {
    let rancher = FakeRancher::start(environment()).await;
    let mut app = spawn_app_with(
        &rancher,
        &[
            ("RANCHER_RETRY_ATTEMPTS", "1"),
            ("AUTOREDEPLOY_JOB_RETRY_S", "1"),
            ("AUTOREDEPLOY_JOB_RETRIES", "2"),
        ],
    )
    .await;
    rancher.fail_next(1000);
    let (outcomes, job) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert!(outcomes.is_empty());
    let error = job.scan.unwrap_err();
    assert!(
        error.contains("500") && error.contains("AUTOREDEPLOY_JOB_RETRIES"),
        "{error}"
    );
    let (_, detail) = app.history(&format!("/jobs/{}", job.job)).await;
    assert_eq!(detail["state"], "failed");
    assert_eq!(rancher.requests().len(), 4, "two runs of two attempts");
}

#[tokio::test]
async fn the_history_lists_jobs_newest_first_and_shows_each_step() {
    let rancher = FakeRancher::start(environment()).await;
    let mut app = spawn_app(&rancher).await;
    let (_, first) = app.push_and_wait("myorg/web", Some("latest")).await;
    let (_, second) = app.push_and_wait("myorg/api", Some("latest")).await;

    let (status, page) = app.history("/jobs?limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(page["jobs"][0]["id"], second.job.0);
    assert_eq!(page["jobs"][0]["upgraded"], 1);
    let next = page["next"].as_str().unwrap().to_owned();
    let (_, older) = app.history(&next).await;
    assert_eq!(older["jobs"][0]["id"], first.job.0);
    assert_eq!(older["jobs"][0]["state"], "done");

    let with_query_key = app
        .http
        .get(format!(
            "{}/jobs/{}?key={WEBHOOK_KEY}",
            app.address, first.job
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(with_query_key.status(), 200);
    let detail: Value = with_query_key.json().await.unwrap();
    assert_eq!(detail["image"], "docker.io/myorg/web:latest");
    assert_eq!(detail["pages"], 1);
    let services = detail["units"].as_array().unwrap();
    assert_eq!(services.len(), 2);
    for service in services {
        assert_eq!(service["end"], "upgraded");
        let steps: Vec<&str> = service["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        assert_eq!(steps, ["planned", "upgrading", "finishing", "upgraded"]);
        assert!(service["steps"][0]["at"].as_str().unwrap().ends_with('Z'));
    }
    let unauthorized = app
        .http
        .get(format!("{}/jobs", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
}

/// The most requests Rancher had in flight at once while twelve services running the pushed
/// image were upgraded together, each answer taking 20 ms, with
/// `RANCHER_MAX_CONCURRENT_REQUESTS=cap`.
async fn most_in_flight_with_cap(cap: usize) -> usize {
    let environment = (0..12)
        .map(|i| service(&format!("web-{i:02}"), "docker:myorg/web:latest"))
        .collect();
    let behaviour = Behaviour {
        latency: Duration::from_millis(20),
        ..Behaviour::default()
    };
    let rancher = FakeRancher::start_with(environment, behaviour).await;
    let mut app = spawn_app_with(
        &rancher,
        &[
            ("RANCHER_MAX_CONCURRENT_REQUESTS", &cap.to_string()),
            ("AUTOREDEPLOY_MAX_CONCURRENT_UPGRADES", "12"),
        ],
    )
    .await;
    let (outcomes, _) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "upgraded").len(), 12, "cap {cap}");
    rancher.most_in_flight()
}

/// Twelve upgrades at once want up to twelve requests in flight. A cap below that is never
/// exceeded, and is reached (it throttles to the cap, not below); a cap above it lets more
/// through than the tight caps did, so those were held back by their caps and nothing else.
#[tokio::test]
async fn requests_in_flight_to_rancher_are_capped() {
    for cap in [2, 5] {
        let most = most_in_flight_with_cap(cap).await;
        assert_eq!(
            most, cap,
            "cap {cap}: at most {most} requests were in flight at once"
        );
    }
    let most = most_in_flight_with_cap(64).await;
    assert!(
        most > 5,
        "twelve upgrades at once under a cap of 64: only {most} requests in flight at once"
    );
}
