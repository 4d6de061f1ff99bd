use super::*;
use crate::domain::{ImageRef, SourceKind, UnitEnd};
use crate::platform::Prefetched;

fn push(image: &str) -> PushEvent {
    PushEvent {
        image: ImageRef::parse(image).unwrap(),
        digest: None,
        source: SourceKind::DockerHub,
        pusher: Some("ci".into()),
        callback_url: None,
        only: None,
    }
}

fn rancher(id: &str) -> UnitRef {
    UnitRef {
        target: TargetKind::Rancher,
        id: id.into(),
    }
}

/// A unit a scan found, to be deployed.
fn planned(id: &str, name: &str) -> Candidate {
    Candidate {
        unit: rancher(id),
        name: name.into(),
        plan: Plan::Deploy(Prefetched {
            copy: Box::new(()),
            asked_at: tokio::time::Instant::now(),
        }),
    }
}

const ALL_UNITS: UnitPage = UnitPage {
    limit: 1000,
    after: None,
};

#[tokio::test]
async fn pushes_of_a_waiting_image_merge_and_the_queue_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    let first = journal.accept(&push("myorg/web"), 2).await.unwrap();
    let again = journal
        .accept(&push("docker.io/myorg/web:latest"), 2)
        .await
        .unwrap();
    assert_eq!((again.job, again.coalesced), (first.job, true));
    let other = journal.accept(&push("myorg/api"), 2).await.unwrap();
    assert!(!other.coalesced);
    assert!(matches!(
        journal.accept(&push("myorg/third"), 2).await,
        Err(AcceptError::QueueFull)
    ));
    // A merge adds no waiting job, so it is accepted even with the queue full.
    assert!(
        journal
            .accept(&push("myorg/api"), 2)
            .await
            .unwrap()
            .coalesced
    );
    let jobs = journal.list_jobs(10, None).await.unwrap();
    assert_eq!(
        jobs.iter()
            .map(|j| (j.image.as_str(), j.pushes))
            .collect::<Vec<_>>(),
        [
            ("docker.io/myorg/api:latest", 2),
            ("docker.io/myorg/web:latest", 2)
        ]
    );
}

#[tokio::test]
async fn a_running_job_gets_a_follow_up_instead_of_more_pushes() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    let first = journal.accept(&push("myorg/web"), 10).await.unwrap().job;
    journal.start_job(first).await.unwrap();
    let follow_up = journal.accept(&push("myorg/web"), 10).await.unwrap();
    assert!(!follow_up.coalesced);
    assert_ne!(follow_up.job, first);
    assert_eq!(
        journal.accept(&push("myorg/web"), 10).await.unwrap().job,
        follow_up.job
    );
    let runnable = journal.runnable().await.unwrap();
    assert_eq!(
        runnable
            .iter()
            .map(|j| (j.id, j.resuming))
            .collect::<Vec<_>>(),
        [(first, true), (follow_up.job, false)]
    );
}

#[tokio::test]
async fn steps_survive_a_reopen_and_tell_where_a_unit_stood() {
    let dir = tempfile::tempdir().unwrap();
    let job = {
        let journal = Journal::open(dir.path()).unwrap();
        let job = journal.accept(&push("myorg/web"), 10).await.unwrap().job;
        journal.start_job(job).await.unwrap();
        let web = [planned("1s1", "web")];
        let new = journal.plan_units(job, &web).await.unwrap();
        assert_eq!((new.len(), new[0].step.as_str()), (1, "planned"));
        assert!(journal.plan_units(job, &web).await.unwrap().is_empty());
        journal
            .record_step(
                job,
                &rancher("1s1"),
                "upgrading",
                None,
                Some(r#"{"versions":{"":"0"}}"#.into()),
            )
            .await
            .unwrap();
        let kept = Candidate {
            unit: rancher("1s2"),
            name: "kept".into(),
            plan: Plan::Skip("label is \"false\"".into()),
        };
        journal.plan_units(job, &[kept]).await.unwrap();
        job
    };
    let journal = Journal::open(dir.path()).unwrap();
    let units = journal.units(job).await.unwrap();
    assert_eq!(units[0].step, "upgrading");
    assert_eq!(units[0].end, None);
    assert_eq!(
        units[0].checkpoint.as_deref(),
        Some(r#"{"versions":{"":"0"}}"#)
    );
    assert_eq!(units[1].end, Some(UnitEnd::Skipped));
    assert_eq!(units[1].reason.as_deref(), Some("label is \"false\""));
    let detail = journal.job(job, ALL_UNITS).await.unwrap().unwrap();
    assert_eq!(detail.summary.state, JobState::Running);
    assert_eq!((detail.summary.skipped, detail.summary.pending), (1, 1));
    let steps: Vec<&str> = detail.units[0]
        .steps
        .iter()
        .map(|s| s.step.as_str())
        .collect();
    assert_eq!(steps, ["planned", "upgrading"]);
}

#[tokio::test]
async fn a_large_job_is_shown_a_page_of_units_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    let job = journal.accept(&push("myorg/web"), 10).await.unwrap().job;
    journal.start_job(job).await.unwrap();
    let units: Vec<Candidate> = (0..25)
        .map(|n| planned(&format!("1s{n}"), &format!("web-{n}")))
        .collect();
    journal.plan_units(job, &units).await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = UnitPage { limit: 10, after };
        let detail = journal.job(job, page).await.unwrap().unwrap();
        assert_eq!(detail.summary.pending, 25, "counts cover every unit");
        assert!(detail.units.len() <= 10);
        seen.extend(detail.units.iter().map(|u| u.name.clone()));
        match detail.units.last() {
            Some(last) if detail.units.len() == 10 => after = Some(last.seq),
            _ => break,
        }
    }
    assert_eq!(
        seen,
        (0..25).map(|n| format!("web-{n}")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn giving_up_ends_every_unfinished_unit_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    let job = journal.accept(&push("myorg/web"), 10).await.unwrap().job;
    journal.start_job(job).await.unwrap();
    journal
        .plan_units(job, &[planned("1s1", "1s1"), planned("1s2", "1s2")])
        .await
        .unwrap();
    journal
        .end_unit(job, &rancher("1s1"), &Outcome::upgraded())
        .await
        .unwrap();
    let failed = journal
        .give_up(job, "gave up".into(), &NoticePlan::callbacks_only())
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].id, "1s2");
    let units = journal.units(job).await.unwrap();
    assert_eq!(units[1].end, Some(UnitEnd::Failed));
    assert_eq!(units[1].reason.as_deref(), Some("gave up"));
}

#[tokio::test]
async fn ended_jobs_are_pruned_and_others_kept() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    let ended = journal.accept(&push("myorg/web"), 10).await.unwrap().job;
    journal.start_job(ended).await.unwrap();
    journal
        .finish_job(ended, None, &NoticePlan::callbacks_only())
        .await
        .unwrap();
    let waiting = journal.accept(&push("myorg/api"), 10).await.unwrap().job;
    assert_eq!(journal.prune(Duration::from_secs(3600)).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(journal.prune(Duration::ZERO).await.unwrap(), 1);
    let left: Vec<JobId> = journal
        .list_jobs(10, None)
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(left, [waiting]);
}

#[tokio::test]
async fn a_failing_call_does_not_undo_the_others_of_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    let failing = journal
        .writer
        .call(|db| db.execute("INSERT INTO nowhere VALUES (1)", []));
    let push = push("myorg/web");
    let accepted = journal.accept(&push, 10);
    let (failed, accepted) = tokio::join!(failing, accepted);
    assert!(failed.is_err());
    let job = accepted.unwrap().job;
    drop(journal);
    let reopened = Journal::open(dir.path()).unwrap();
    assert_eq!(reopened.list_jobs(10, None).await.unwrap()[0].id, job);
}

#[test]
fn a_directory_in_use_by_another_server_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Journal::open(dir.path()).unwrap();
    let error = Journal::open(dir.path()).unwrap_err().to_string();
    assert!(error.contains("in use by another autoredeploy"), "{error}");
    drop(first);
}

#[test]
fn an_unwritable_directory_is_refused_by_name() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let error = Journal::open(&file.path().join("data"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("AUTOREDEPLOY_DATA_DIR") && error.contains("writable"),
        "{error}"
    );
}

#[test]
fn a_journal_of_a_newer_release_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Journal::open(dir.path()).unwrap());
    let db = rusqlite::Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
    db.pragma_update(None, "user_version", 99).unwrap();
    drop(db);
    let error = Journal::open(dir.path()).unwrap_err().to_string();
    assert!(error.contains("newer release"), "{error}");
}

/// A journal written by release 0.1.0 (see `fixtures/journal/CONTENTS.md`).
fn journal_of_release_0_1_0() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(DATABASE_FILE),
        include_bytes!("../../fixtures/journal/release-0.1.0.sqlite3"),
    )
    .unwrap();
    dir
}

#[tokio::test]
async fn a_journal_of_release_0_1_0_is_upgraded_in_place_and_its_jobs_resume() {
    let dir = journal_of_release_0_1_0();
    let journal = Journal::open(dir.path()).unwrap();

    let runnable = journal.runnable().await.unwrap();
    assert_eq!(
        runnable
            .iter()
            .map(|j| (j.id.0, j.image.to_string(), j.resuming))
            .collect::<Vec<_>>(),
        [
            (3, "docker.io/myorg/web:latest".to_owned(), true),
            (4, "docker.io/myorg/api:2.0".to_owned(), false)
        ]
    );

    let running = journal.units(JobId(3)).await.unwrap();
    let stood: Vec<(&str, &str, Option<UnitEnd>)> = running
        .iter()
        .map(|u| (u.id.as_str(), u.step.as_str(), u.end))
        .collect();
    assert_eq!(
        stood,
        [
            ("1s12", "planned", None),
            ("1s13", "upgrading", None),
            ("1s14", "finishing", None),
            ("1s15", "finishing-previous", None),
            ("1s16", "rolling-back", None),
            ("1s17", "cancelling", None),
        ]
    );
    assert!(running.iter().all(|u| u.target == TargetKind::Rancher));
    let checkpoint = |id: &str| -> serde_json::Value {
        let unit = running.iter().find(|u| u.id == id).unwrap();
        serde_json::from_str(unit.checkpoint.as_deref().unwrap()).unwrap()
    };
    assert_eq!(
        checkpoint("1s13"),
        serde_json::json!({ "versions": { "": "5", "log-shipper": "2" } })
    );
    assert_eq!(checkpoint("1s14")["versions"][""], "7");
    assert!(
        checkpoint("1s16")["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "a rollback in progress keeps its reason"
    );
    assert!(running[0].checkpoint.is_none());
    assert!(!journal.scans(JobId(3)).await.unwrap()[0].complete);

    let done = journal.job(JobId(1), ALL_UNITS).await.unwrap().unwrap();
    let ends: Vec<(&str, Option<UnitEnd>)> = done
        .units
        .iter()
        .map(|u| (u.name.as_str(), u.end))
        .collect();
    assert_eq!(
        ends,
        [
            ("web", Some(UnitEnd::Upgraded)),
            ("worker", Some(UnitEnd::Skipped)),
            ("batch", Some(UnitEnd::Upgraded)),
            ("api", Some(UnitEnd::RolledBack)),
            ("cron", Some(UnitEnd::Cancelled)),
            ("old", Some(UnitEnd::Failed)),
        ]
    );
    assert_eq!(
        (
            done.summary.upgraded,
            done.summary.skipped,
            done.summary.failed,
            done.summary.pending
        ),
        (2, 1, 3, 0)
    );
    assert_eq!((done.pages, done.listed), (Some(2), Some(137)));
    let web_steps: Vec<&str> = done.units[0]
        .steps
        .iter()
        .map(|s| s.step.as_str())
        .collect();
    assert_eq!(web_steps, ["planned", "upgrading", "finishing", "upgraded"]);
    assert!(
        done.units[2]
            .reason
            .as_deref()
            .unwrap()
            .contains("left in upgraded")
    );

    let failed = journal.job(JobId(2), ALL_UNITS).await.unwrap().unwrap();
    assert_eq!(failed.summary.state, JobState::Failed);
    assert!(
        failed
            .summary
            .error
            .as_deref()
            .unwrap()
            .contains("unreadable")
    );

    // The upgraded journal goes on working, and a later push follows the running job.
    let follow_up = journal.accept(&push("myorg/web"), 10).await.unwrap();
    assert_eq!(follow_up.job, JobId(5));
    drop(journal);
    let db = read_only(dir.path()).unwrap();
    assert_eq!(
        migrations::version_of(&db).unwrap(),
        migrations::CURRENT_VERSION
    );
}

#[tokio::test]
async fn services_0_1_0_left_without_an_end_in_an_ended_job_end_failed() {
    // 0.1.0 gave a job up with its service still `upgrading`.
    let dir = journal_of_release_0_1_0();
    let db = rusqlite::Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
    db.execute(
        "UPDATE job_services SET step = 'upgrading', reason = NULL WHERE service_id = '1s11'",
        [],
    )
    .unwrap();
    drop(db);
    let journal = Journal::open(dir.path()).unwrap();
    let given_up = journal.job(JobId(2), ALL_UNITS).await.unwrap().unwrap();
    assert_eq!(given_up.summary.state, JobState::Failed);
    assert_eq!((given_up.summary.pending, given_up.summary.failed), (0, 1));
    let unit = &given_up.units[0];
    assert_eq!(unit.end, Some(UnitEnd::Failed));
    assert!(
        unit.reason.as_deref().unwrap().contains("0.1.0"),
        "{unit:?}"
    );
    assert_eq!(unit.steps.last().unwrap().step, "failed");
    let scan = &given_up.scans[0];
    assert!(scan.complete && scan.error.as_deref().unwrap().contains("unreadable"));
}

#[test]
fn the_jobs_command_asks_for_an_upgrade_of_an_old_journal() {
    let dir = journal_of_release_0_1_0();
    let error = read_only(dir.path()).unwrap_err().to_string();
    assert!(error.contains("start the server"), "{error}");
}

/// Ends a job with units `ends` (one per end), writing the notices of `plan`; returns the
/// channels of what the outbox holds for it.
async fn notices_of(ends: &[UnitEnd], plan: &NoticePlan, callbacks: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    let mut job = None;
    for url in callbacks.iter().map(Some).chain([None]) {
        let mut push = push("myorg/web");
        push.callback_url = url.map(|url| url::Url::parse(url).unwrap());
        job = Some(journal.accept(&push, 10).await.unwrap().job);
    }
    let job = job.unwrap();
    journal.start_job(job).await.unwrap();
    let units: Vec<Candidate> = (0..ends.len())
        .map(|n| planned(&format!("1s{n}"), &format!("web-{n}")))
        .collect();
    journal.plan_units(job, &units).await.unwrap();
    for (n, end) in ends.iter().enumerate() {
        let outcome = Outcome::because(*end, "why");
        journal
            .end_unit(job, &rancher(&format!("1s{n}")), &outcome)
            .await
            .unwrap();
    }
    journal.finish_job(job, None, plan).await.unwrap();
    let due = journal
        .claim_notices(100, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        due.iter()
            .all(|notice| notice.job == job && notice.attempts == 0)
    );
    due.iter()
        .map(|notice| match (&notice.unit_seq, &notice.callback_url) {
            (Some(seq), _) => format!("{}:{seq}", notice.channel.as_str()),
            (_, Some(url)) => format!("{}:{url}", notice.channel.as_str()),
            _ => notice.channel.as_str().to_owned(),
        })
        .collect()
}

#[tokio::test]
async fn an_ended_job_writes_the_notices_its_setting_asks_for() {
    let plan = |on| NoticePlan {
        channels: vec![Channel::Slack, Channel::Beanstalk],
        on,
    };
    use crate::config::NotifyOn::{All, Changes, Failures};
    let unchanged = [UnitEnd::UpToDate, UnitEnd::Skipped];
    assert!(notices_of(&unchanged, &plan(Changes), &[]).await.is_empty());
    assert!(notices_of(&[], &plan(Changes), &[]).await.is_empty());
    assert_eq!(notices_of(&[], &plan(All), &[]).await, ["slack"]);
    let upgraded = [UnitEnd::Upgraded, UnitEnd::UpToDate, UnitEnd::Upgraded];
    assert_eq!(
        notices_of(&upgraded, &plan(Changes), &[]).await,
        ["slack", "beanstalk:1", "beanstalk:3"],
        "a beanstalkd message per upgraded unit"
    );
    assert!(notices_of(&upgraded, &plan(Failures), &[]).await.is_empty());
    let rolled_back = [UnitEnd::RolledBack];
    assert_eq!(
        notices_of(&rolled_back, &plan(Failures), &[]).await,
        ["slack"]
    );
}

#[tokio::test]
async fn every_merged_push_gets_its_callback_whatever_the_setting() {
    let first = "https://registry.hub.docker.com/u/me/web/hook/1/";
    let second = "https://registry.hub.docker.com/u/me/web/hook/2/";
    let notices = notices_of(
        &[UnitEnd::UpToDate],
        &NoticePlan::callbacks_only(),
        &[first, second, first],
    )
    .await;
    assert_eq!(
        notices,
        [format!("callback:{first}"), format!("callback:{second}")]
    );
}

#[tokio::test]
async fn a_job_with_a_notice_still_in_the_outbox_is_not_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    let mut pushed = push("myorg/web");
    pushed.callback_url = Some(url::Url::parse("https://registry.hub.docker.com/hook/1/").unwrap());
    let job = journal.accept(&pushed, 10).await.unwrap().job;
    journal.start_job(job).await.unwrap();
    journal
        .finish_job(job, None, &NoticePlan::callbacks_only())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(journal.prune(Duration::ZERO).await.unwrap(), 0);
    let notice = journal
        .claim_notices(10, Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    let claimed = journal.claim_notices(10, Duration::from_secs(60)).await;
    assert!(
        claimed.unwrap().is_empty(),
        "a notice is taken once per lease"
    );
    journal.release_notices(vec![notice.id]).await.unwrap();
    let released = journal.claim_notices(10, Duration::from_secs(60)).await;
    assert_eq!(released.unwrap()[0].id, notice.id);
    journal.remove_notice(notice.id).await.unwrap();
    assert_eq!(journal.prune(Duration::ZERO).await.unwrap(), 1);
}

#[tokio::test]
async fn a_waiting_job_s_callback_is_carried_over_from_a_version_3_journal() {
    let dir = tempfile::tempdir().unwrap();
    let hook = "https://registry.hub.docker.com/u/myorg/web/hook/1/";
    {
        let db = rusqlite::Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        for (version, statements) in migrations::MIGRATIONS.iter().take(3).enumerate() {
            db.execute_batch(statements).unwrap();
            db.pragma_update(None, "user_version", version as i64 + 1)
                .unwrap();
        }
        for (state, finished) in [("done", Some(2)), ("queued", None)] {
            db.execute(
                "INSERT INTO jobs (image, pushes, state, received_at, last_push_at, finished_at, callback_url)
                 VALUES ('docker.io/myorg/web:latest', 1, ?1, 1, 1, ?2, ?3)",
                params![state, finished, hook],
            )
            .unwrap();
        }
    }
    let journal = Journal::open(dir.path()).unwrap();
    let waiting = journal.runnable().await.unwrap().remove(0).id;
    assert_eq!(waiting, JobId(2));
    journal.start_job(waiting).await.unwrap();
    journal
        .finish_job(waiting, None, &NoticePlan::callbacks_only())
        .await
        .unwrap();
    let notices = journal
        .claim_notices(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        notices.len(),
        1,
        "the ended job's callback is not owed any more"
    );
    assert_eq!(notices[0].job, waiting);
    assert_eq!(notices[0].callback_url.as_deref(), Some(hook));
}
