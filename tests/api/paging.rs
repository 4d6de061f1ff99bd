use crate::helpers::{named, spawn_app, spawn_app_with};
use crate::support::fake_rancher::{Behaviour, FakeRancher, ServiceSpec, service};

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

/// Every list request asked for a page at a multiple of the step between pages (a page of
/// `stride` services, less the few each page shares with the one before); no page was asked
/// for twice; the first one asked for 3000 services.
fn assert_pages_asked_by_offset(rancher: &FakeRancher, stride: usize, needed: usize) {
    let step = stride - (stride / 10).min(32);
    let markers = list_markers(rancher);
    assert_eq!(markers[0], None, "the first page comes first");
    let mut offsets: Vec<usize> = markers[1..]
        .iter()
        .map(|marker| marker.as_deref().unwrap()[1..].parse().unwrap())
        .collect();
    offsets.sort();
    let before = offsets.len();
    offsets.dedup();
    assert_eq!(
        offsets.len(),
        before,
        "no page asked for twice: {markers:?}"
    );
    assert!(
        offsets.iter().all(|offset| offset % step == 0),
        "{markers:?}"
    );
    let wanted: Vec<usize> = (1..needed).map(|page| page * step).collect();
    assert!(
        wanted.iter().all(|offset| offsets.contains(offset)),
        "pages {wanted:?} all read: {markers:?}"
    );
    let first = rancher
        .requests()
        .into_iter()
        .find(|r| r.is_list())
        .unwrap();
    assert!(first.query.contains("limit=3000"), "{}", first.query);
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
    assert_eq!(job.scan.unwrap().listed, 6500);
    assert_pages_asked_by_offset(&rancher, 3000, 3);
}

#[tokio::test]
async fn one_page_at_a_time_follows_the_markers_exactly() {
    let rancher = FakeRancher::start(environment(6500, 3)).await;
    let mut app = spawn_app_with(&rancher, &[("RANCHER_LIST_CONCURRENCY", "1")]).await;

    let (outcomes, job) = app.push_and_wait("myorg/worker", Some("stable")).await;

    assert_eq!(named(&outcomes, "upgraded").len(), 3);
    let scan = job.scan.unwrap();
    assert_eq!((scan.pages, scan.listed), (3, 6500));
    assert_eq!(
        list_markers(&rancher),
        [None, Some("m2968".into()), Some("m5936".into())],
        "pages of 3000 that share 32 services with the page before"
    );
}

#[tokio::test]
async fn a_server_that_clamps_lower_is_followed_by_its_own_page_size() {
    for (max_limit, size) in [(1000, 2500), (100, 250)] {
        let behaviour = Behaviour {
            max_limit,
            ..Behaviour::default()
        };
        let rancher = FakeRancher::start_with(environment(size, 2), behaviour).await;
        let mut app = spawn_app(&rancher).await;

        let (outcomes, job) = app.push_and_wait("myorg/worker", Some("stable")).await;

        let last_two = [
            format!("svc-{:05}", size - 2),
            format!("svc-{:05}", size - 1),
        ];
        assert_eq!(named(&outcomes, "upgraded"), last_two);
        assert_eq!(job.scan.unwrap().listed, size);
        assert_pages_asked_by_offset(&rancher, max_limit, 3);
    }
}

/// An environment where matching services, opted-out ones, other images and entries
/// without a launch config are spread over every page.
fn mixed_environment(size: usize) -> Vec<ServiceSpec> {
    (0..size)
        .map(|i| {
            let name = format!("svc-{i:05}");
            match i % 97 {
                0 => service(&name, "docker:myorg/worker:stable"),
                1 => service(&name, "docker:myorg/worker:stable")
                    .label("tech.manas.service.autoredeploy", "false"),
                2 => crate::support::fake_rancher::dns_service(&name),
                _ => service(&name, &format!("docker:myorg/other-{}:stable", i % 5)),
            }
        })
        .collect()
}

/// What one push finds with `RANCHER_LIST_CONCURRENCY=window`: the upgraded and the
/// skipped services, the services listed, and those without a launch config.
async fn walk_with_window(
    window: &str,
    environment: Vec<ServiceSpec>,
    added_during_the_walk: Vec<ServiceSpec>,
) -> (Vec<String>, Vec<String>, usize, usize) {
    let behaviour = Behaviour {
        max_limit: 1000,
        ..Behaviour::default()
    };
    let rancher = FakeRancher::start_with(environment, behaviour).await;
    rancher.add_after_next_list(added_during_the_walk);
    let mut app = spawn_app_with(
        &rancher,
        &[
            ("RANCHER_LIST_CONCURRENCY", window),
            ("AUTOREDEPLOY_MAX_CONCURRENT_UPGRADES", "64"),
        ],
    )
    .await;
    let (outcomes, job) = app.push_and_wait("myorg/worker", Some("stable")).await;
    let scan = job.scan.unwrap();
    (
        named(&outcomes, "upgraded"),
        named(&outcomes, "skipped"),
        scan.listed,
        scan.passed_over,
    )
}

#[tokio::test]
async fn concurrent_paging_finds_exactly_what_sequential_paging_finds() {
    let sequential = walk_with_window("1", mixed_environment(5300), vec![]).await;
    let concurrent = walk_with_window("8", mixed_environment(5300), vec![]).await;
    assert_eq!(concurrent, sequential);
    assert_eq!(sequential.0.len(), 55, "every 97th service, over six pages");
    assert_eq!(sequential.2, 5300);
    assert_eq!(
        sequential.3, 55,
        "every 97th is a DNS service, counted once"
    );
}

#[tokio::test]
async fn services_added_during_the_walk_are_found_by_both_walks() {
    let added = || {
        (0..40)
            .map(|i| service(&format!("new-{i:02}"), "docker:myorg/worker:stable"))
            .collect::<Vec<_>>()
    };
    let sequential = walk_with_window("1", mixed_environment(2950), added()).await;
    let concurrent = walk_with_window("8", mixed_environment(2950), added()).await;
    assert_eq!(concurrent, sequential);
    let found_new = sequential
        .0
        .iter()
        .filter(|name| name.starts_with("new-"))
        .count();
    assert_eq!(found_new, 40);
    assert_eq!(sequential.2, 2990);
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

#[tokio::test]
async fn a_page_cut_off_midway_is_read_again_and_counted_once() {
    let rancher = FakeRancher::start(mixed_environment(2500)).await;
    let proxy = crate::support::flaky_proxy::FlakyProxy::start(rancher.address).await;
    let mut app = spawn_app_with(&rancher, &[("RANCHER_HOST", &proxy.host())]).await;
    // The first connection carries the first page (2500 services, about 9 MB): it breaks
    // after a few hundred services have been handed out.
    proxy.cut_next_answer_after(1_000_000);

    let (outcomes, job) = app.push_and_wait("myorg/worker", Some("stable")).await;

    assert_eq!(proxy.dropped(), 1, "the page was cut");
    let scan = job.scan.unwrap();
    assert_eq!((scan.pages, scan.listed), (1, 2500));
    assert_eq!(named(&outcomes, "upgraded").len(), 26, "every 97th service");
    assert!(
        rancher
            .upgrades_per_service()
            .values()
            .all(|&count| count == 1)
    );
    let first_pages = list_markers(&rancher)
        .iter()
        .filter(|marker| marker.is_none())
        .count();
    assert_eq!(first_pages, 2, "the first page was asked for again");
}

#[tokio::test]
async fn markers_that_are_not_offsets_are_followed_one_page_after_the_other() {
    let behaviour = Behaviour {
        max_limit: 1000,
        opaque_markers: true,
        ..Behaviour::default()
    };
    let rancher = FakeRancher::start_with(mixed_environment(2500), behaviour).await;
    let mut app = spawn_app(&rancher).await;

    let (outcomes, job) = app.push_and_wait("myorg/worker", Some("stable")).await;

    assert_eq!(named(&outcomes, "upgraded").len(), 26);
    let scan = job.scan.unwrap();
    assert_eq!((scan.pages, scan.listed), (3, 2500));
    assert_eq!(
        list_markers(&rancher),
        [None, Some("x3e8".into()), Some("x7d0".into())]
    );
}

#[tokio::test]
async fn a_server_that_ignores_markers_fails_the_walk_instead_of_looping() {
    let behaviour = Behaviour {
        max_limit: 1000,
        ignore_markers: true,
        ..Behaviour::default()
    };
    let rancher = FakeRancher::start_with(mixed_environment(2500), behaviour).await;
    let mut app = spawn_app(&rancher).await;

    let (_, job) = app.push_and_wait("myorg/worker", Some("stable")).await;

    let error = job.scan.unwrap_err();
    assert!(error.contains("does not page by offset"), "{error}");
    assert!(list_markers(&rancher).len() <= 9, "one window at most");
    // The services of the first page are real: they were upgraded, once.
    assert!(
        rancher
            .upgrades_per_service()
            .values()
            .all(|&count| count == 1)
    );
}

#[tokio::test]
async fn services_removed_during_the_walk_do_not_hide_the_ones_after_them() {
    // Matching services right after the first page's end; once the first page has been
    // read, twenty services before them are removed, and they move back across the page
    // boundary.
    let environment: Vec<ServiceSpec> = (0..2500)
        .map(|i| {
            let image = if (1000..1010).contains(&i) {
                "docker:myorg/worker:stable".to_owned()
            } else {
                format!("docker:myorg/other-{}:stable", i % 5)
            };
            service(&format!("svc-{i:05}"), &image)
        })
        .collect();
    for window in ["1", "8"] {
        let behaviour = Behaviour {
            max_limit: 1000,
            ..Behaviour::default()
        };
        let rancher = FakeRancher::start_with(environment.clone(), behaviour).await;
        rancher.purge_first_after_next_list(20);
        let mut app = spawn_app_with(&rancher, &[("RANCHER_LIST_CONCURRENCY", window)]).await;

        let (outcomes, _) = app.push_and_wait("myorg/worker", Some("stable")).await;

        let expected: Vec<String> = (1000..1010).map(|i| format!("svc-{i:05}")).collect();
        assert_eq!(named(&outcomes, "upgraded"), expected, "window {window}");
    }
}
