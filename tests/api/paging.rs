use crate::fake_rancher::{Behaviour, FakeRancher, ServiceSpec, service};
use crate::helpers::{named, spawn_app, spawn_app_with};

fn environment(size: usize, matching_at_end: usize) -> Vec<ServiceSpec> {
    (0..size)
        .map(|i| {
            if i >= size - matching_at_end {
                service(&format!("svc-{i:05}"), "docker:myorg/worker:stable")
            } else {
                service(
                    &format!("svc-{i:05}"),
                    &format!("docker:myorg/other-{}:stable", i % 7),
                )
            }
        })
        .collect()
}

fn list_markers(rancher: &FakeRancher) -> Vec<Option<String>> {
    rancher
        .requests()
        .iter()
        .filter(|r| r.is_list())
        .map(|r| {
            url::form_urlencoded::parse(r.query.as_bytes())
                .find(|(k, _)| k == "marker")
                .map(|(_, v)| v.into_owned())
        })
        .collect()
}

#[tokio::test]
async fn a_large_environment_is_walked_to_its_last_page() {
    let rancher = FakeRancher::start(environment(6500, 3)).await;
    let mut app = spawn_app(&rancher).await;

    let (outcomes, job) = app.push_and_wait("myorg/worker", Some("stable")).await;

    assert_eq!(
        named(&outcomes, "upgraded"),
        ["svc-06497", "svc-06498", "svc-06499"]
    );
    let scan = job.scan.unwrap();
    assert_eq!((scan.pages, scan.listed), (3, 6500));
    assert_eq!(
        list_markers(&rancher),
        [None, Some("m3000".into()), Some("m6000".into())]
    );
    let first = rancher
        .requests()
        .into_iter()
        .find(|r| r.is_list())
        .unwrap();
    assert!(first.query.contains("limit=3000"), "{}", first.query);
}

#[tokio::test]
async fn a_server_that_clamps_lower_is_followed_by_its_own_markers() {
    let behaviour = Behaviour {
        max_limit: 100,
        ..Behaviour::default()
    };
    let rancher = FakeRancher::start_with(environment(250, 2), behaviour).await;
    let mut app = spawn_app(&rancher).await;

    let (outcomes, job) = app.push_and_wait("myorg/worker", Some("stable")).await;

    assert_eq!(named(&outcomes, "upgraded"), ["svc-00248", "svc-00249"]);
    assert_eq!(job.scan.unwrap().pages, 3);
    assert_eq!(
        list_markers(&rancher),
        [None, Some("m100".into()), Some("m200".into())]
    );
}

#[tokio::test]
async fn an_environment_scoped_key_uses_the_short_collection() {
    let rancher = FakeRancher::start(vec![service("web", "docker:myorg/web:latest")]).await;
    let mut app = spawn_app_with(&rancher, &[("RANCHER_PROJECT_ID", "")]).await;
    let (outcomes, _) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "upgraded"), ["web"]);
    assert!(
        rancher
            .requests()
            .iter()
            .all(|r| !r.path.contains("/projects/"))
    );
}
