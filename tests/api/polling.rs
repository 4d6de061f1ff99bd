//! Waiting for Rancher costs one filtered collection request per poll, whatever the number
//! of services waiting: the services that are not `active` are listed, and a waiting
//! service absent from that list is `active`.

use std::time::Duration;

use crate::helpers::{named, spawn_app, spawn_app_with};
use crate::support::fake_rancher::{Behaviour, FakeRancher, service};

fn environment(count: usize) -> Vec<crate::support::fake_rancher::ServiceSpec> {
    (0..count)
        .map(|i| service(&format!("web-{i}"), "docker:myorg/web:latest"))
        .collect()
}

/// Reads of one service (`GET …/services/{id}`), not lists.
fn single_reads(rancher: &FakeRancher) -> usize {
    rancher
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && !r.path.ends_with("/services"))
        .count()
}

#[tokio::test]
async fn many_services_waiting_share_each_poll() {
    let rancher = FakeRancher::start(environment(12)).await;
    rancher.set_upgrade_time(Duration::from_millis(300));
    let mut app = spawn_app(&rancher).await;
    let (outcomes, _) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "upgraded").len(), 12);
    assert_eq!(single_reads(&rancher), 0, "no service was read on its own");
    let polls = rancher.requests().iter().filter(|r| r.is_poll()).count();
    // Twelve services polled one by one every 20 ms for 300 ms would take well over a
    // hundred reads; shared, the polls are those of one service.
    assert!((1..=40).contains(&polls), "{polls} polls");
    for poll in rancher.requests().iter().filter(|r| r.is_poll()) {
        assert!(poll.query.contains("state_ne=active"), "{}", poll.query);
    }
}

#[tokio::test]
async fn a_service_removed_while_it_waits_fails_alone() {
    let rancher = FakeRancher::start(environment(3)).await;
    rancher.set_upgrade_time(Duration::from_millis(600));
    let mut app = spawn_app(&rancher).await;
    app.push("myorg/web", Some("latest")).await;
    rancher.wait_for_upgrade_of_any().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    rancher.remove("1s2");
    let (outcomes, _) = app.next_job().await;
    assert_eq!(named(&outcomes, "upgraded"), ["web-0", "web-2"]);
    assert_eq!(named(&outcomes, "failed"), ["web-1"]);
    let reason = outcomes
        .iter()
        .find(|o| o.name == "web-1")
        .and_then(|o| o.outcome.reason.clone())
        .unwrap_or_default();
    assert!(reason.contains("removed"), "{reason}");
}

#[tokio::test]
async fn a_server_that_ignores_the_filter_is_polled_service_by_service() {
    let behaviour = Behaviour {
        ignore_filters: true,
        ..Behaviour::default()
    };
    let mut services = environment(3);
    services.push(service("other", "docker:myorg/other:latest"));
    let rancher = FakeRancher::start_with(services, behaviour).await;
    rancher.set_upgrade_time(Duration::from_millis(200));
    let mut app = spawn_app_with(&rancher, &[]).await;
    let (outcomes, _) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "upgraded").len(), 3, "{outcomes:?}");
    let polls = rancher.requests().iter().filter(|r| r.is_poll()).count();
    assert_eq!(polls, 1, "the first poll showed the filter is ignored");
    assert!(
        single_reads(&rancher) >= 3,
        "each service was then read on its own"
    );
}

#[tokio::test]
async fn a_list_of_several_pages_vouches_only_for_what_it_shows() {
    // Pages of four: twelve services upgrading at once do not fit in one.
    let behaviour = Behaviour {
        max_limit: 4,
        ..Behaviour::default()
    };
    let rancher = FakeRancher::start_with(environment(12), behaviour).await;
    rancher.set_upgrade_time(Duration::from_millis(300));
    let mut app = spawn_app(&rancher).await;
    let (outcomes, _) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "upgraded").len(), 12, "{outcomes:?}");
    assert!(
        single_reads(&rancher) > 0,
        "services past the first page were read on their own"
    );
}
