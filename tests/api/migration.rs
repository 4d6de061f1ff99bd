//! A journal written by release 0.1.0, unfinished jobs included, is upgraded in place when
//! the server starts, and its jobs resume and end.

use serde_json::json;

use crate::helpers::spawn_app_with;
use crate::support::fake_rancher::{FakeRancher, service};

#[tokio::test]
async fn the_jobs_of_a_0_1_0_journal_resume_after_the_upgrade() {
    // Services 1s12 to 1s17 are the ones the running job of the journal stopped at (see
    // fixtures/journal/CONTENTS.md); the first eleven run another image.
    let mut services: Vec<_> = (1..=11)
        .map(|n| service(&format!("other-{n}"), "docker:myorg/other:latest"))
        .collect();
    services.extend([
        service("web-planned", "docker:myorg/web:latest"),
        // Its primary and its sidekick were recorded; Rancher had applied that upgrade.
        service("web-upgrading", "docker:myorg/web:latest")
            .sidekick("log-shipper", "docker:myorg/web:latest"),
        service("web-upgraded", "docker:myorg/web:latest")
            .state("upgraded")
            .launch_config_field("version", json!("8")),
        service("web-finishing", "docker:myorg/web:latest"),
        service("web-rolling-back", "docker:myorg/web:latest"),
        service("web-canceling", "docker:myorg/web:latest").state("canceled-upgrade"),
    ]);
    let rancher = FakeRancher::start(services).await;
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("autoredeploy.sqlite3"),
        include_bytes!("../../fixtures/journal/release-0.1.0.sqlite3"),
    )
    .unwrap();
    let data_dir = data.path().display().to_string();
    let mut app = spawn_app_with(&rancher, &[("AUTOREDEPLOY_DATA_DIR", &data_dir)]).await;

    // The running job resumes and the queued one starts (different images: side by side).
    let mut ended = [app.next_job().await.1.job.0, app.next_job().await.1.job.0];
    ended.sort();
    assert_eq!(ended, [3, 4]);

    let (status, detail) = app.history("/jobs/3").await;
    assert_eq!(status, 200);
    assert_eq!(detail["state"], "done", "{detail}");
    assert_eq!(detail["pending"], 0, "{detail}");
    let ends: Vec<(&str, &str)> = detail["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|unit| {
            (
                unit["name"].as_str().unwrap(),
                unit["end"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ends,
        [
            ("web-planned", "upgraded"),
            ("web-upgrading", "upgraded"),
            ("web-upgraded", "upgraded"),
            ("web-finishing", "upgraded"),
            ("web-rolling-back", "rolled-back"),
            ("web-canceling", "cancelled"),
        ]
    );
    // Only the two that had not reached Rancher are upgraded now; the one left upgraded is
    // finished, and no recovery is posted again.
    let sorted = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };
    assert_eq!(sorted(rancher.actions_posted("upgrade")), ["1s12", "1s15"]);
    assert_eq!(
        sorted(rancher.actions_posted("finishupgrade")),
        ["1s12", "1s14", "1s15"]
    );
    assert!(rancher.actions_posted("rollback").is_empty());

    // The history of 0.1.0 is kept, in the new shape.
    let (_, done) = app.history("/jobs/1").await;
    assert_eq!(done["upgraded"], 2, "{done}");
    assert_eq!(done["units"][0]["target"], "rancher");
}
