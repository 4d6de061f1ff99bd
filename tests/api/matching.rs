use crate::helpers::{named, spawn_app, spawn_app_with};
use crate::support::fake_rancher::{FakeRancher, service};

const LABEL: &str = "tech.manas.service.autoredeploy";
const DIGEST: &str = "sha256:4c5f3b4f6d8e2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b";

#[tokio::test]
async fn every_spelling_of_the_pushed_image_is_upgraded_and_near_misses_are_not() {
    let spellings = [
        "docker:nginx",
        "docker:nginx:latest",
        "docker:library/nginx",
        "docker:library/nginx:latest",
        "docker:docker.io/nginx",
        "docker:docker.io/library/nginx:latest",
        "docker:index.docker.io/library/nginx",
    ];
    let near_misses = [
        "docker:nginx:1.25".to_owned(),
        "docker:nginx-unprivileged".to_owned(),
        "docker:myorg/nginx".to_owned(),
        "docker:quay.io/library/nginx".to_owned(),
        "docker:registry.example.com:5000/nginx:latest".to_owned(),
        format!("docker:nginx@{DIGEST}"),
        format!("docker:nginx:latest@{DIGEST}"),
        "nginx".to_owned(),
    ];
    let mut services = Vec::new();
    for (i, image) in spellings.iter().enumerate() {
        services.push(service(&format!("match-{i}"), image));
    }
    for (i, image) in near_misses.iter().enumerate() {
        services.push(service(&format!("miss-{i}"), image));
    }
    let rancher = FakeRancher::start(services).await;
    let mut app = spawn_app(&rancher).await;

    // An official image arrives as `repo_name: "nginx"`, and old payloads have no tag.
    let (outcomes, job) = app.push_and_wait("nginx", None).await;

    let expected: Vec<String> = (0..spellings.len()).map(|i| format!("match-{i}")).collect();
    assert_eq!(named(&outcomes, "upgraded"), expected);
    assert_eq!(outcomes.len(), spellings.len(), "{outcomes:?}");
    assert_eq!(
        (job.upgraded, job.failed, job.skipped),
        (spellings.len(), 0, 0)
    );
    let upgraded = rancher.actions_posted("upgrade");
    for i in spellings.len()..spellings.len() + near_misses.len() {
        assert!(
            !upgraded.contains(&format!("1s{}", i + 1)),
            "near miss {} was upgraded",
            near_misses[i - spellings.len()]
        );
    }
}

#[tokio::test]
async fn the_opt_in_label_and_the_default_decide() {
    let environment = || {
        vec![
            service("unlabelled", "docker:myorg/api:2"),
            service("opted-in", "docker:myorg/api:2").label(LABEL, "true"),
            service("opted-out", "docker:myorg/api:2").label(LABEL, "false"),
        ]
    };
    for (default, upgraded, skipped) in [
        ("true", vec!["opted-in", "unlabelled"], vec!["opted-out"]),
        ("false", vec!["opted-in"], vec!["opted-out", "unlabelled"]),
    ] {
        let rancher = FakeRancher::start(environment()).await;
        let mut app = spawn_app_with(&rancher, &[("RANCHER_AUTOREDEPLOY_DEFAULT", default)]).await;
        let (outcomes, _) = app.push_and_wait("myorg/api", Some("2")).await;
        assert_eq!(named(&outcomes, "upgraded"), upgraded, "default {default}");
        assert_eq!(named(&outcomes, "skipped"), skipped, "default {default}");
        assert_eq!(rancher.actions_posted("upgrade").len(), upgraded.len());
    }
}

#[tokio::test]
async fn a_custom_label_name_is_honoured() {
    let rancher = FakeRancher::start(vec![
        service("old-label", "docker:myorg/api:2").label(LABEL, "false"),
        service("new-label", "docker:myorg/api:2").label("com.example.deploy", "false"),
    ])
    .await;
    let mut app = spawn_app_with(
        &rancher,
        &[("RANCHER_AUTOREDEPLOY_LABEL_NAME", "com.example.deploy")],
    )
    .await;
    let (outcomes, _) = app.push_and_wait("myorg/api", Some("2")).await;
    assert_eq!(named(&outcomes, "upgraded"), ["old-label"]);
    assert_eq!(named(&outcomes, "skipped"), ["new-label"]);
}
