use serde_json::{Value, json};

use std::time::Duration;

use crate::helpers::{named, spawn_app, spawn_app_with};
use crate::support::fake_rancher::{FakeRancher, dns_service, external_service, service};

const PULL_LABEL: &str = "io.rancher.container.pull_image";

fn requests_for(rancher: &FakeRancher, id: &str) -> Vec<String> {
    rancher
        .requests()
        .iter()
        .filter(|r| {
            r.path
                .trim_end_matches('/')
                .ends_with(&format!("/services/{id}"))
        })
        .map(|r| r.action().unwrap_or_else(|| r.method.to_lowercase()))
        .collect()
}

#[tokio::test]
async fn a_push_upgrades_finishes_and_keeps_every_key_of_the_launch_config() {
    let rancher = FakeRancher::start(vec![service("web", "docker:myorg/web:latest")]).await;
    let original = rancher.service("1s1")["launchConfig"].clone();
    let mut app = spawn_app(&rancher).await;

    let (outcomes, job) = app.push_and_wait("myorg/web", Some("latest")).await;

    assert_eq!(named(&outcomes, "upgraded"), ["web"]);
    assert_eq!(outcomes[0].unit.id, "1s1");
    assert_eq!(outcomes[0].unit.target.as_str(), "rancher");
    assert_eq!(outcomes[0].image.to_string(), "docker.io/myorg/web:latest");
    assert_eq!(job.scan.as_ref().unwrap().pages, 1);

    let bodies = rancher.upgrade_bodies();
    assert_eq!(bodies.len(), 1);
    let strategy = &bodies[0].1["inServiceStrategy"];
    assert_eq!(
        (
            strategy["batchSize"].as_u64(),
            strategy["intervalMillis"].as_u64()
        ),
        (Some(1), Some(2000))
    );
    assert_eq!(strategy["startFirst"], false);
    let sent = strategy["launchConfig"].as_object().unwrap();
    let original = original.as_object().unwrap();
    assert_eq!(
        sent.keys().collect::<Vec<_>>(),
        original.keys().collect::<Vec<_>>()
    );

    let after = rancher.service("1s1");
    assert_eq!(after["state"], "active");
    let now = after["launchConfig"].as_object().unwrap();
    for (key, value) in original {
        match key.as_str() {
            "version" => assert_ne!(&now[key], value, "a new version was issued"),
            "labels" => {
                let mut expected = value.clone();
                expected[PULL_LABEL] = Value::from("always");
                assert_eq!(now[key], expected);
            }
            _ => assert_eq!(&now[key], value, "{key} survived the upgrade"),
        }
    }
    let calls = requests_for(&rancher, "1s1");
    assert_eq!(
        calls[0], "upgrade",
        "the copy just listed stands in for a fresh read when nothing had to wait: {calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| *c == "finishupgrade").count(),
        1,
        "{calls:?}"
    );
    assert!(
        !calls.contains(&"get".to_owned()),
        "waiting read no service on its own: {calls:?}"
    );
    assert!(
        rancher.requests().iter().any(|r| r.is_poll()),
        "it waited with polls of the services that are not active"
    );
}

#[tokio::test]
async fn strategy_settings_are_sent() {
    let rancher = FakeRancher::start(vec![service("web", "docker:myorg/web:latest")]).await;
    let mut app = spawn_app_with(
        &rancher,
        &[
            ("RANCHER_UPGRADE_BATCH_SIZE", "3"),
            ("RANCHER_UPGRADE_INTERVAL_MS", "750"),
            ("RANCHER_UPGRADE_START_FIRST", "true"),
        ],
    )
    .await;
    app.push_and_wait("myorg/web", None).await;
    let strategy = &rancher.upgrade_bodies()[0].1["inServiceStrategy"];
    assert_eq!(strategy["batchSize"], 3);
    assert_eq!(strategy["intervalMillis"], 750);
    assert_eq!(strategy["startFirst"], true);
}

#[tokio::test]
async fn a_matching_sidekick_is_upgraded_whole_and_the_primary_is_left_alone() {
    let rancher = FakeRancher::start(vec![
        service("app", "docker:myorg/app:1")
            .sidekick("log-shipper", "docker:myorg/shipper:2")
            .sidekick("cache", "docker:redis:7"),
    ])
    .await;
    let before = rancher.service("1s1");
    let mut app = spawn_app(&rancher).await;

    let (outcomes, _) = app.push_and_wait("myorg/shipper", Some("2")).await;

    assert_eq!(named(&outcomes, "upgraded"), ["app"]);
    let body = &rancher.upgrade_bodies()[0].1["inServiceStrategy"];
    assert!(body.get("launchConfig").is_none(), "{body}");
    let sent = body["secondaryLaunchConfigs"].as_array().unwrap();
    assert_eq!(sent.len(), 1);
    let original_sidekick = before["secondaryLaunchConfigs"][0].as_object().unwrap();
    assert_eq!(
        sent[0].as_object().unwrap().keys().collect::<Vec<_>>(),
        original_sidekick.keys().collect::<Vec<_>>()
    );

    let after = rancher.service("1s1");
    assert_eq!(after["state"], "active");
    assert_eq!(
        after["launchConfig"], before["launchConfig"],
        "the primary is untouched"
    );
    assert_eq!(
        after["secondaryLaunchConfigs"][1], before["secondaryLaunchConfigs"][1],
        "the other sidekick is untouched"
    );
    let shipper = &after["secondaryLaunchConfigs"][0];
    assert_eq!(shipper["labels"][PULL_LABEL], "always");
    assert_eq!(
        shipper["environment"],
        before["secondaryLaunchConfigs"][0]["environment"]
    );
    assert_ne!(shipper["version"], "0");
}

#[tokio::test]
async fn a_service_left_upgraded_is_finished_first_and_then_upgraded() {
    let rancher = FakeRancher::start(vec![
        service("web", "docker:myorg/web:latest").state("upgraded"),
    ])
    .await;
    let mut app = spawn_app(&rancher).await;

    let (outcomes, _) = app.push_and_wait("myorg/web", Some("latest")).await;

    assert_eq!(named(&outcomes, "upgraded"), ["web"]);
    let actions: Vec<String> = requests_for(&rancher, "1s1")
        .into_iter()
        .filter(|c| c != "get")
        .collect();
    assert_eq!(actions, ["finishupgrade", "upgrade", "finishupgrade"]);
    assert_eq!(rancher.service("1s1")["state"], "active");
}

/// A push reaching one stuck service and two healthy ones, under `policy`; the stuck one
/// must end as `end`.
async fn stuck_upgrade(
    policy: Option<&str>,
    end: &str,
) -> (FakeRancher, Vec<autoredeploy::events::UnitOutcome>, Value) {
    let rancher = FakeRancher::start(vec![
        service("stuck", "docker:myorg/web:latest").stuck(),
        service("healthy-1", "docker:myorg/web:latest"),
        service("healthy-2", "docker:myorg/web:latest"),
    ])
    .await;
    let mut overrides = vec![("RANCHER_UPGRADE_TIMEOUT_S", "2")];
    if let Some(policy) = policy {
        overrides.push(("RANCHER_UPGRADE_ON_FAILURE", policy));
    }
    let mut app = spawn_app_with(&rancher, &overrides).await;
    let (outcomes, job) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "upgraded"), ["healthy-1", "healthy-2"]);
    assert_eq!(named(&outcomes, end), ["stuck"]);
    assert_eq!(
        outcomes.last().unwrap().name,
        "stuck",
        "the others ended first"
    );
    assert_eq!((job.upgraded, job.failed), (2, 1));
    let (_, detail) = app.history(&format!("/jobs/{}", job.job)).await;
    (rancher, outcomes, detail)
}

fn stuck_record(detail: &Value) -> &Value {
    detail["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "stuck")
        .unwrap()
}

#[tokio::test]
async fn a_stuck_upgrade_is_rolled_back_without_holding_up_the_others() {
    let (rancher, outcomes, detail) = stuck_upgrade(None, "rolled-back").await;
    let reason = outcomes.last().unwrap().outcome.reason.as_deref().unwrap();
    assert!(
        reason.contains("still upgrading") && reason.contains("RANCHER_UPGRADE_TIMEOUT_S"),
        "{reason}"
    );
    assert!(reason.contains("rolled back"), "{reason}");
    let stuck = rancher.service("1s1");
    assert_eq!(stuck["state"], "active");
    assert_eq!(
        stuck["launchConfig"]["version"], "0",
        "the previous launch config is back"
    );
    assert_eq!(rancher.actions_posted("rollback"), ["1s1"]);
    let record = stuck_record(&detail);
    assert_eq!(record["end"], "rolled-back");
    let steps: Vec<&str> = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["planned", "upgrading", "rolling-back", "rolled-back"]
    );
}

#[tokio::test]
async fn a_stuck_upgrade_can_be_canceled_instead() {
    let (rancher, outcomes, detail) = stuck_upgrade(Some("cancel"), "cancelled").await;
    let reason = outcomes.last().unwrap().outcome.reason.as_deref().unwrap();
    assert!(reason.contains("cancelled"), "{reason}");
    assert_eq!(rancher.service("1s1")["state"], "canceled-upgrade");
    assert_eq!(rancher.actions_posted("cancelupgrade"), ["1s1"]);
    assert_eq!(stuck_record(&detail)["end"], "cancelled");
}

#[tokio::test]
async fn a_stuck_upgrade_can_be_left_alone() {
    let (rancher, outcomes, detail) = stuck_upgrade(Some("leave"), "left").await;
    let reason = outcomes.last().unwrap().outcome.reason.as_deref().unwrap();
    assert!(reason.contains("left as it is"), "{reason}");
    assert_eq!(rancher.service("1s1")["state"], "upgrading");
    assert!(
        rancher.actions_posted("rollback").is_empty()
            && rancher.actions_posted("cancelupgrade").is_empty()
    );
    assert_eq!(stuck_record(&detail)["end"], "left");
}

#[tokio::test]
async fn with_finish_upgrade_off_the_service_is_left_upgraded() {
    let rancher = FakeRancher::start(vec![service("web", "docker:myorg/web:latest")]).await;
    let mut app = spawn_app_with(&rancher, &[("RANCHER_FINISH_UPGRADE", "false")]).await;
    let (outcomes, _) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "upgraded"), ["web"]);
    let remark = outcomes[0].outcome.reason.as_deref().unwrap_or_default();
    assert!(remark.contains("RANCHER_FINISH_UPGRADE=false"), "{remark}");
    assert_eq!(rancher.service("1s1")["state"], "upgraded");
    assert!(rancher.actions_posted("finishupgrade").is_empty());
}

#[tokio::test]
async fn server_errors_from_rancher_are_retried() {
    let rancher = FakeRancher::start(vec![service("web", "docker:myorg/web:latest")]).await;
    let mut app = spawn_app(&rancher).await;
    rancher.fail_next(3);
    let (outcomes, _) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "upgraded"), ["web"]);
    assert!(rancher.requests().iter().filter(|r| r.is_list()).count() >= 4);
}

#[tokio::test]
async fn services_without_launch_config_or_with_odd_fields_are_passed_over() {
    let rancher = FakeRancher::start(vec![
        dns_service("db-alias"),
        service("odd-state", "docker:myorg/web:latest").field("state", json!(7)),
        service("odd-labels", "docker:myorg/web:latest")
            .launch_config_field("labels", json!("oops")),
        service("web", "docker:myorg/web:latest"),
        external_service("payments"),
    ])
    .await;
    let mut app = spawn_app(&rancher).await;
    let (outcomes, job) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "upgraded"), ["web"]);
    assert_eq!(outcomes.len(), 1);
    let scan = job.scan.unwrap();
    assert_eq!((scan.listed, scan.unreadable), (5, 2));
    assert_eq!(rancher.actions_posted("upgrade"), ["1s4"]);
}

#[tokio::test]
async fn a_service_in_a_state_without_upgrade_fails_alone() {
    let rancher = FakeRancher::start(vec![
        service("canceled", "docker:myorg/web:latest").state("canceled-upgrade"),
        service("web", "docker:myorg/web:latest"),
    ])
    .await;
    let mut app = spawn_app(&rancher).await;
    let (outcomes, _) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "upgraded"), ["web"]);
    assert_eq!(named(&outcomes, "failed"), ["canceled"]);
    assert!(
        !rancher
            .actions_posted("upgrade")
            .contains(&"1s1".to_owned())
    );
}

#[tokio::test]
async fn two_jobs_reaching_one_service_take_turns_instead_of_colliding() {
    // One job reaches the service by its primary image, the other by its sidekick's.
    let rancher = FakeRancher::start(vec![
        service("web", "docker:myorg/web:latest").sidekick("log-shipper", "docker:myorg/shipper:2"),
    ])
    .await;
    let mut app = spawn_app(&rancher).await;
    app.push("myorg/web", Some("latest")).await;
    app.push("myorg/shipper", Some("2")).await;
    let (first, _) = app.next_job().await;
    let (second, _) = app.next_job().await;
    assert_eq!(named(&first, "upgraded"), ["web"]);
    assert_eq!(named(&second, "upgraded"), ["web"]);
    assert_eq!(
        rancher.upgrades_per_service(),
        [("1s1".to_owned(), 2)].into()
    );
    assert_eq!(
        rancher.refusals(),
        0,
        "the second upgrade waited for the first to finish"
    );
    let after = rancher.service("1s1");
    assert_eq!(after["state"], "active");
    assert_ne!(after["launchConfig"]["version"], "0");
    assert_ne!(after["secondaryLaunchConfigs"][0]["version"], "0");
}

#[tokio::test]
async fn a_rejected_api_key_fails_the_job_at_once_with_a_hint() {
    let rancher = FakeRancher::start(vec![service("web", "docker:myorg/web:latest")]).await;
    let mut app = spawn_app_with(&rancher, &[("RANCHER_API_SECRET", "not-the-secret")]).await;
    let (outcomes, job) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert!(outcomes.is_empty());
    let error = job.scan.unwrap_err();
    assert!(
        error.contains("401") && error.contains("check RANCHER_API_KEY"),
        "{error}"
    );
    assert!(!error.contains("not-the-secret"));
    assert_eq!(rancher.requests().len(), 1, "a 401 is not retried");
}

#[tokio::test]
async fn a_service_mid_upgrade_is_waited_for_then_finished_and_upgraded() {
    let rancher = FakeRancher::start(vec![service("web", "docker:myorg/web:latest").busy(
        "upgrading",
        "upgraded",
        Duration::from_millis(300),
    )])
    .await;
    let mut app = spawn_app(&rancher).await;
    let (outcomes, _) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "upgraded"), ["web"], "{outcomes:?}");
    let calls = requests_for(&rancher, "1s1");
    let actions: Vec<&String> = calls.iter().filter(|c| *c != "get").collect();
    assert_eq!(actions, ["finishupgrade", "upgrade", "finishupgrade"]);
    let requests = rancher.requests();
    let first_action = requests.iter().position(|r| r.action().is_some()).unwrap();
    assert!(
        requests[..first_action]
            .iter()
            .filter(|r| r.is_poll())
            .count()
            >= 2,
        "it waited for the upgrade in progress: {requests:?}"
    );
    assert_eq!(rancher.service("1s1")["state"], "active");
}

#[tokio::test]
async fn an_inactive_service_is_not_started_by_a_push() {
    let rancher = FakeRancher::start(vec![
        service("stopped", "docker:myorg/web:latest").state("inactive"),
        service("web", "docker:myorg/web:latest"),
    ])
    .await;
    let mut app = spawn_app(&rancher).await;
    let (outcomes, _) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "upgraded"), ["web"]);
    assert_eq!(named(&outcomes, "skipped"), ["stopped"]);
    assert_eq!(rancher.service("1s1")["state"], "inactive");
    assert_eq!(rancher.actions_posted("upgrade"), ["1s2"]);
}

#[tokio::test]
async fn an_action_applied_whose_answer_was_lost_is_carried_on() {
    let rancher = FakeRancher::start(vec![service("web", "docker:myorg/web:latest")]).await;
    let mut app = spawn_app(&rancher).await;
    rancher.lose_next_answers(2);
    let (outcomes, _) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "upgraded"), ["web"], "{outcomes:?}");
    assert_eq!(rancher.upgrade_bodies().len(), 1, "applied once");
    assert_eq!(
        rancher.actions_posted("upgrade").len(),
        2,
        "retried once, answered 422"
    );
    assert_eq!(rancher.actions_posted("finishupgrade").len(), 2);
    assert_eq!(rancher.service("1s1")["state"], "active");
}

#[tokio::test]
async fn no_more_services_are_upgraded_at_once_than_allowed() {
    let services = (0..4)
        .map(|i| service(&format!("web-{i}"), "docker:myorg/web:latest"))
        .collect();
    let rancher = FakeRancher::start(services).await;
    let mut app = spawn_app_with(&rancher, &[("AUTOREDEPLOY_MAX_CONCURRENT_UPGRADES", "1")]).await;
    let (outcomes, _) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "upgraded").len(), 4);
    assert_eq!(rancher.most_upgrading_at_once(), 0);
}

#[tokio::test]
async fn by_default_every_matching_service_is_upgraded_at_once() {
    // More than the sixteen of 0.1.0's default bound.
    let services = (0..20)
        .map(|i| service(&format!("web-{i}"), "docker:myorg/web:latest"))
        .collect();
    let rancher = FakeRancher::start(services).await;
    // Each upgrade takes long enough that a service waiting for a slot would show.
    rancher.set_upgrade_time(std::time::Duration::from_millis(500));
    let mut app = spawn_app(&rancher).await;
    let (outcomes, _) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "upgraded").len(), 20);
    assert_eq!(
        rancher.most_upgrading_at_once(),
        19,
        "the last upgrade found the nineteen others still upgrading"
    );
}

#[tokio::test]
async fn a_service_changed_while_waiting_for_its_turn_is_upgraded_with_the_change() {
    let rancher = FakeRancher::start(vec![
        service("first", "docker:myorg/web:latest"),
        service("second", "docker:myorg/web:latest"),
    ])
    .await;
    let mut app = spawn_app_with(&rancher, &[("AUTOREDEPLOY_MAX_CONCURRENT_UPGRADES", "1")]).await;
    app.push("myorg/web", Some("latest")).await;
    // While one service is upgraded, someone edits the other one in Rancher.
    rancher.wait_for_upgrade_of_any().await;
    let waiting = if rancher.upgrade_bodies()[0].0 == "1s1" {
        "1s2"
    } else {
        "1s1"
    };
    rancher.edit_launch_config(waiting, "environment", json!({ "EDITED": "yes" }));
    let (outcomes, _) = app.next_job().await;
    assert_eq!(named(&outcomes, "upgraded").len(), 2);
    assert_eq!(
        rancher.service(waiting)["launchConfig"]["environment"],
        json!({ "EDITED": "yes" })
    );
}

#[tokio::test]
async fn an_upgrade_rancher_reports_in_error_is_rolled_back_at_once() {
    let rancher = FakeRancher::start(vec![
        service("broken", "docker:myorg/web:latest").failing(),
        service("web", "docker:myorg/web:latest"),
    ])
    .await;
    let mut app = spawn_app(&rancher).await;
    let (outcomes, _) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "upgraded"), ["web"]);
    assert_eq!(named(&outcomes, "rolled-back"), ["broken"]);
    let reason = outcomes
        .iter()
        .find(|o| o.name == "broken")
        .unwrap()
        .outcome
        .reason
        .as_deref()
        .unwrap();
    assert!(
        reason.contains("pull access denied") && reason.contains("rolled back"),
        "{reason}"
    );
    assert!(
        !reason.contains("RANCHER_UPGRADE_TIMEOUT_S"),
        "it did not wait for the timeout: {reason}"
    );
    assert_eq!(rancher.service("1s1")["state"], "active");
    assert_eq!(rancher.service("1s1")["launchConfig"]["version"], "0");
}

#[tokio::test]
async fn a_refused_upgrade_is_recorded_with_rancher_s_reason() {
    let rancher = FakeRancher::start(vec![
        service("pinned-ip", "docker:myorg/web:latest").field("retainIp", json!(true)),
        service("web", "docker:myorg/web:latest"),
    ])
    .await;
    let mut app = spawn_app_with(&rancher, &[("RANCHER_UPGRADE_START_FIRST", "true")]).await;
    let (outcomes, job) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "failed"), ["pinned-ip"]);
    assert_eq!(named(&outcomes, "upgraded"), ["web"]);
    let (_, detail) = app.history(&format!("/jobs/{}", job.job)).await;
    let record = detail["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "pinned-ip")
        .unwrap();
    assert_eq!(record["end"], "failed");
    let reason = record["reason"].as_str().unwrap();
    assert!(
        reason.contains("422 InvalidOption") && reason.contains("retainIp"),
        "{reason}"
    );
    assert_eq!(
        rancher
            .actions_posted("upgrade")
            .iter()
            .filter(|id| *id == "1s1")
            .count(),
        1,
        "a 422 is not retried"
    );
}

#[tokio::test]
async fn credentials_refused_during_an_upgrade_fail_the_job_with_a_hint() {
    let rancher = FakeRancher::start(vec![service("web", "docker:myorg/web:latest")]).await;
    let mut app = spawn_app(&rancher).await;
    rancher.fail_next_posts(1, warp::http::StatusCode::FORBIDDEN);
    let (outcomes, job) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "failed"), ["web"]);
    let error = job.scan.unwrap_err();
    assert!(
        error.contains("403") && error.contains("check RANCHER_API_KEY"),
        "{error}"
    );
    let (_, detail) = app.history(&format!("/jobs/{}", job.job)).await;
    assert_eq!(detail["state"], "failed");
    assert_eq!(
        rancher.actions_posted("upgrade").len(),
        1,
        "a 403 is not retried"
    );
}
