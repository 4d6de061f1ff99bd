//! The deploy core driven with a platform made up for the test: what the core does with
//! runs that panic, units that cannot be carried on, and jobs whose runs are used up.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::config::JobRetrySettings;
use crate::domain::{ImageRef, PushEvent, SourceKind, TargetKind, UnitEnd, UnitRef};
use crate::events::{DeployEvent, JobOutcome, UnitOutcome};
use crate::journal::UnitRecord;
use crate::journal::{JobId, Journal, UnitPage};
use crate::platform::{
    BoxFuture, Candidate, Plan, Prefetched, Progress, Scan, ScanError, ScanSummary, StepLog,
};
use crate::shutdown::Shutdown;

/// What the test platform does.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Its scan panics.
    ScanPanics,
    /// Its one unit cannot be carried on now.
    UnitLater,
    /// Its one unit is upgraded.
    UnitUpgraded,
}

/// One unit, `1s1`, and a scan of one page.
#[derive(Debug)]
struct TestPlatform {
    behaviour: Behaviour,
    scans: AtomicUsize,
    drives: AtomicUsize,
    /// The steps the unit was driven from, in order.
    drove_from: Mutex<Vec<String>>,
}

struct OnePage {
    behaviour: Behaviour,
    done: bool,
}

impl Scan for OnePage {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<Vec<Candidate>>, ScanError>> {
        Box::pin(async move {
            if let Behaviour::ScanPanics = self.behaviour {
                panic!("the test platform's scan panics");
            }
            if std::mem::replace(&mut self.done, true) {
                return Ok(None);
            }
            Ok(Some(vec![Candidate {
                unit: unit(),
                name: "web".into(),
                plan: Plan::Deploy(Prefetched {
                    copy: Box::new(()),
                    asked_at: tokio::time::Instant::now(),
                }),
            }]))
        })
    }

    fn summary(&self) -> ScanSummary {
        ScanSummary::default()
    }
}

impl Platform for TestPlatform {
    fn target(&self) -> TargetKind {
        TargetKind::Rancher
    }

    fn warn_about_its_settings(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    fn scan(&self, _: &ImageRef) -> Box<dyn Scan> {
        self.scans.fetch_add(1, Ordering::SeqCst);
        Box::new(OnePage {
            behaviour: self.behaviour,
            done: false,
        })
    }

    fn drive<'a>(
        &'a self,
        unit: &'a UnitRecord,
        _: Option<Prefetched>,
        _: &'a ImageRef,
        _: Option<&'a str>,
        _: &'a StepLog,
    ) -> BoxFuture<'a, Progress> {
        self.drives.fetch_add(1, Ordering::SeqCst);
        self.drove_from.lock().unwrap().push(unit.step.clone());
        Box::pin(async move {
            match self.behaviour {
                Behaviour::UnitUpgraded => Progress::Ended(crate::domain::Outcome::upgraded()),
                _ => Progress::Later("the test platform is unreachable".into()),
            }
        })
    }
}

fn unit() -> UnitRef {
    UnitRef {
        target: TargetKind::Rancher,
        id: "1s1".into(),
    }
}

struct Running {
    platform: Arc<TestPlatform>,
    journal: Journal,
    events: tokio::sync::broadcast::Receiver<DeployEvent>,
    wake: Arc<Notify>,
    _shutdown: Shutdown,
    _data: tempfile::TempDir,
}

fn start(behaviour: Behaviour, runs: u32) -> Running {
    let data = tempfile::tempdir().unwrap();
    let journal = Journal::open(data.path()).unwrap();
    let platform = Arc::new(TestPlatform {
        behaviour,
        scans: AtomicUsize::new(0),
        drives: AtomicUsize::new(0),
        drove_from: Mutex::new(Vec::new()),
    });
    let reporter = OutcomeReporter::new(64, Arc::default());
    let events = reporter.subscribe();
    let wake = Arc::new(Notify::new());
    let (shutdown, signal) = Shutdown::new();
    let deployer = Deployer::new(DeployerParts {
        platforms: vec![Arc::clone(&platform) as Arc<dyn Platform>],
        journal: journal.clone(),
        reporter,
        wake: Arc::clone(&wake),
        max_concurrent: Some(4),
        shutdown: signal,
        job_retry: JobRetrySettings {
            pause: Duration::from_millis(20),
            runs,
        },
        notices: NoticePlan::callbacks_only(),
        notices_written: Arc::new(Notify::new()),
    });
    tokio::spawn(deployer.run(Duration::from_secs(1)));
    Running {
        platform,
        journal,
        events,
        wake,
        _shutdown: shutdown,
        _data: data,
    }
}

impl Running {
    async fn push(&self) -> JobId {
        let push = PushEvent {
            image: ImageRef::parse("myorg/web").unwrap(),
            digest: None,
            source: SourceKind::DockerHub,
            pusher: None,
            callback_url: None,
            only: None,
        };
        let job = self.journal.accept(&push, 10).await.unwrap().job;
        self.wake.notify_one();
        job
    }

    /// The next job's units and its tally.
    async fn next_job(&mut self) -> (Vec<UnitOutcome>, JobOutcome) {
        let mut units = Vec::new();
        let wait = async {
            loop {
                match self.events.recv().await.unwrap() {
                    DeployEvent::Unit(outcome) => units.push(outcome),
                    DeployEvent::Job(job) => return job,
                }
            }
        };
        let job = tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .expect("the job ends");
        (units, job)
    }
}

#[tokio::test]
async fn a_run_that_panics_counts_against_the_retries() {
    let mut running = start(Behaviour::ScanPanics, 3);
    let job = running.push().await;
    let (_, outcome) = running.next_job().await;
    assert_eq!(outcome.job, job);
    let error = outcome.scan.unwrap_err();
    assert!(
        error.contains("ended abnormally") && error.contains("gave up after 3 runs"),
        "{error}"
    );
    assert_eq!(running.platform.scans.load(Ordering::SeqCst), 3);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        running.platform.scans.load(Ordering::SeqCst),
        3,
        "not run again after it was given up"
    );
}

#[tokio::test]
async fn a_job_whose_runs_are_used_up_ends_every_unit_and_reports_it() {
    let mut running = start(Behaviour::UnitLater, 2);
    let job = running.push().await;
    let (units, outcome) = running.next_job().await;
    assert_eq!(running.platform.drives.load(Ordering::SeqCst), 2);
    assert_eq!(units.len(), 1, "the unit gets its outcome line");
    assert_eq!(units[0].outcome.end, UnitEnd::Failed);
    let reason = units[0].outcome.reason.as_deref().unwrap();
    assert!(
        reason.contains("unreachable") && reason.contains("gave up"),
        "{reason}"
    );
    assert_eq!(outcome.failed, 1);
    let page = UnitPage {
        limit: 10,
        after: None,
    };
    let detail = running.journal.job(job, page).await.unwrap().unwrap();
    assert_eq!(detail.summary.pending, 0, "no unit is left without an end");
    assert_eq!(detail.units[0].end, Some(UnitEnd::Failed));
}

#[tokio::test]
async fn pushes_of_one_image_are_deployed_in_the_order_they_came() {
    let mut running = start(Behaviour::UnitUpgraded, 3);
    let first = running.push().await;
    running.journal.start_job(first).await.unwrap();
    let second = running.push().await;
    assert_ne!(first, second, "a push during a running job follows it");
    let ended = [
        running.next_job().await.1.job,
        running.next_job().await.1.job,
    ];
    assert_eq!(ended, [first, second]);
    assert_eq!(
        *running.platform.drove_from.lock().unwrap(),
        ["planned", "planned"]
    );
}
