//! The fake Rancher is only useful if it behaves like the real one: these pin the behaviour
//! the other tests rely on, with the real error shapes.

use serde_json::{Value, json};

use crate::helpers::http_client;
use crate::support::fake_rancher::{
    ACCESS_KEY, Behaviour, FakeRancher, PROJECT_ID, SECRET_KEY, service,
};

async fn call(
    rancher: &FakeRancher,
    method: reqwest::Method,
    path_and_query: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http_client()
        .request(
            method,
            format!(
                "{}/v1/projects/{PROJECT_ID}/{path_and_query}",
                rancher.host()
            ),
        )
        .basic_auth(ACCESS_KEY, Some(SECRET_KEY));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn pages_default_to_100_clamp_to_the_maximum_and_use_offset_markers() {
    let services = (0..250)
        .map(|i| service(&format!("s{i}"), "docker:nginx"))
        .collect();
    let rancher = FakeRancher::start_with(
        services,
        Behaviour {
            max_limit: 200,
            ..Behaviour::default()
        },
    )
    .await;

    let (_, page) = call(&rancher, reqwest::Method::GET, "services", None).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 100);
    assert_eq!(page["pagination"]["limit"], 100);
    assert!(
        page["pagination"]["next"]
            .as_str()
            .unwrap()
            .ends_with("services?marker=m100")
    );

    let (_, page) = call(
        &rancher,
        reqwest::Method::GET,
        "services?limit=5000&marker=m200",
        None,
    )
    .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 50);
    assert_eq!(page["pagination"]["limit"], 200);
    assert_eq!(page["pagination"]["next"], Value::Null);
    assert_eq!(page["pagination"]["partial"], false);
    assert_eq!(page["data"][0]["name"], "s200");

    let (_, page) = call(&rancher, reqwest::Method::GET, "services?limit=0", None).await;
    assert_eq!(page["pagination"]["limit"], 200);
    assert!(
        page["pagination"]["next"]
            .as_str()
            .unwrap()
            .contains("limit=0&marker=m200")
    );
}

#[tokio::test]
async fn actions_follow_the_state_and_others_answer_422_action_not_available() {
    let rancher = FakeRancher::start(vec![service("web", "docker:nginx")]).await;
    let (_, active) = call(&rancher, reqwest::Method::GET, "services/1s1", None).await;
    assert!(active["actions"].get("upgrade").is_some());
    assert!(active["actions"].get("finishupgrade").is_none());

    let (status, error) = call(
        &rancher,
        reqwest::Method::POST,
        "services/1s1/?action=finishupgrade",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "ActionNotAvailable");
    assert_eq!(error["fieldName"], "action");
    assert_eq!(error["message"], Value::Null);

    let body = json!({ "inServiceStrategy": { "launchConfig": { "imageUuid": "docker:nginx" } } });
    let (status, upgrading) = call(
        &rancher,
        reqwest::Method::POST,
        "services/1s1/?action=upgrade",
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(upgrading["state"], "upgrading");
    assert_eq!(upgrading["transitioning"], "yes");
    assert!(upgrading["actions"].get("upgrade").is_none());
    let (status, error) = call(
        &rancher,
        reqwest::Method::POST,
        "services/1s1/?action=upgrade",
        Some(body),
    )
    .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (422, Some("ActionNotAvailable"))
    );
}

#[tokio::test]
async fn an_upgrade_replaces_the_launch_config_and_moves_through_the_states() {
    let timing = Behaviour {
        upgrade_time: std::time::Duration::from_millis(100),
        finish_time: std::time::Duration::from_secs(2),
        ..Behaviour::default()
    };
    let rancher =
        FakeRancher::start_with(vec![service("web", "docker:nginx")], timing.clone()).await;
    let body = json!({ "inServiceStrategy": { "launchConfig": { "imageUuid": "docker:nginx", "version": "mine" } } });
    call(
        &rancher,
        reqwest::Method::POST,
        "services/1s1/?action=upgrade",
        Some(body),
    )
    .await;

    let config = rancher.service("1s1")["launchConfig"].clone();
    assert_eq!(
        config.as_object().unwrap().len(),
        2,
        "keys not sent are gone: {config}"
    );
    assert_ne!(
        config["version"], "mine",
        "the server issues its own version"
    );

    tokio::time::sleep(timing.upgrade_time * 2).await;
    assert_eq!(rancher.service("1s1")["state"], "upgraded");
    let (status, _) = call(
        &rancher,
        reqwest::Method::POST,
        "services/1s1/?action=finishupgrade",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(rancher.service("1s1")["state"], "finishing-upgrade");
    tokio::time::sleep(timing.finish_time + timing.upgrade_time).await;
    assert_eq!(rancher.service("1s1")["state"], "active");
}

#[tokio::test]
async fn missing_strategy_wrong_credentials_and_forced_failures_have_the_real_shapes() {
    let rancher = FakeRancher::start(vec![service("web", "docker:nginx")]).await;
    let body = json!({ "inServiceStrategy": null, "toServiceStrategy": null });
    let (status, error) = call(
        &rancher,
        reqwest::Method::POST,
        "services/1s1/?action=upgrade",
        Some(body),
    )
    .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (422, Some("MissingRequired"))
    );
    assert_eq!(error["fieldName"], "Upgrade strategy needs to be set");

    let wrong = http_client()
        .get(format!(
            "{}/v1/projects/{PROJECT_ID}/services",
            rancher.host()
        ))
        .basic_auth(ACCESS_KEY, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    rancher.fail_next(1);
    let (status, _) = call(&rancher, reqwest::Method::GET, "services", None).await;
    assert_eq!(status, 500);
    let (status, _) = call(&rancher, reqwest::Method::GET, "services", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_injected_latency_delays_every_answer() {
    let latency = std::time::Duration::from_millis(80);
    let behaviour = Behaviour {
        latency,
        ..Behaviour::default()
    };
    let rancher = FakeRancher::start_with(vec![service("web", "docker:a")], behaviour).await;
    let sent = std::time::Instant::now();
    let (status, _) = call(&rancher, reqwest::Method::GET, "services", None).await;
    assert_eq!(status, 200);
    let answered = rancher.requests()[0].at;
    assert!(answered.duration_since(sent) >= latency);
}

#[tokio::test]
async fn collections_are_filtered_as_cattle_filters_them() {
    let rancher = FakeRancher::start(vec![
        service("web", "docker:nginx"),
        service("api", "docker:nginx").state("upgraded"),
        service("stopped", "docker:nginx").state("inactive"),
    ])
    .await;
    let names = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let get = |query: &'static str| call(&rancher, reqwest::Method::GET, query, None);
    let (_, page) = get("services?state=upgraded").await;
    assert_eq!(names(&page), ["api"]);
    assert_eq!(
        page["filters"]["state"],
        json!([{ "modifier": "eq", "value": "upgraded" }])
    );
    let (_, page) = get("services?state_ne=active&state_ne=inactive").await;
    assert_eq!(names(&page), ["api"], "repeated parameters are AND-ed");
    let (_, page) = get("services?state=active&state_ne=active").await;
    assert_eq!(
        names(&page),
        ["api", "stopped"],
        "one modifier per field: the last"
    );
    let (_, page) = get("services?imageUuid=docker:redis&limit=10").await;
    assert_eq!(names(&page).len(), 3, "unknown parameters are ignored");
    assert_eq!(page["filters"]["state"], Value::Null);

    rancher.remove("1s1");
    let (_, page) = get("services?state=removed").await;
    assert_eq!(
        names(&page),
        ["web"],
        "a removed service is listed as removed"
    );
}

#[tokio::test]
async fn a_server_that_ignores_filters_lists_everything() {
    let rancher = FakeRancher::start_with(
        vec![
            service("web", "docker:nginx"),
            service("api", "docker:nginx"),
        ],
        Behaviour {
            ignore_filters: true,
            ..Behaviour::default()
        },
    )
    .await;
    let (_, page) = call(
        &rancher,
        reqwest::Method::GET,
        "services?state=upgraded",
        None,
    )
    .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["filters"]["state"], Value::Null);
}
