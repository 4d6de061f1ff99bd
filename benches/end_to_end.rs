//! One push, end to end: the release binary against the fake Rancher of the integration
//! tests, holding N services of which M run the pushed image, answering every request after
//! an injected latency.
//!
//! Run with `cargo bench --bench end_to_end` (all cases) or
//! `cargo bench --bench end_to_end -- 10000:20` (N:latency-in-ms cases). autoredeploy runs
//! with its default settings; `BENCH_UPGRADES=<n>` sets `AUTOREDEPLOY_MAX_CONCURRENT_UPGRADES`
//! and `BENCH_POLL_MS=<ms>` sets `RANCHER_UPGRADE_POLL_MS`. For each case it reports the
//! medians over several runs of:
//!
//! - the time from sending the webhook request to Rancher answering the last upgrade
//!   request, and the same for an ideal client written here (one page of 3000, the other
//!   pages at once, every upgrade at once) against its own fake Rancher in the same run;
//! - the time to Rancher answering the last `finishupgrade`, and to the job's end;
//! - every request Rancher received for the push (pages, upgrades, finishes, polls, reads);
//! - autoredeploy's peak resident memory (`VmHWM`) over the whole job, and its resident
//!   memory when idle before the push;
//! - its CPU time over the whole job, per listed service.
//!
//! `BENCH_LOG=debug` shows autoredeploy's log. `BENCH_WRAP="valgrind --tool=massif"` runs
//! the binary under a wrapper (it is stopped with SIGTERM, so the wrapper writes its
//! report), and `BENCH_BINARY` names another build of it, such as one with symbols.

// The bench uses only part of the integration tests' support code.
#[allow(dead_code, unused_imports)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::fake_rancher::{self, Behaviour, FakeRancher, ServiceSpec, service};
use tokio::process::{Child, Command};

const BINARY: &str = env!("CARGO_BIN_EXE_autoredeploy");
const WEBHOOK_KEY: &str = "bench-webhook-key-0123456789";
/// Rancher ≥ 1.3 serves at most this many services per page.
const PAGE: usize = 3000;
/// Bound on one run, so a broken build fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Case {
    services: usize,
    latency: Duration,
}

impl Case {
    fn matching(&self) -> usize {
        (self.services / 100).max(1)
    }

    fn runs(&self) -> usize {
        if self.services >= 100_000 { 3 } else { 5 }
    }
}

/// What one run measured.
#[derive(Debug, Clone, Copy)]
struct Run {
    to_last_upgrade: Duration,
    ideal_to_last_upgrade: Duration,
    to_last_finish: Duration,
    to_job_end: Duration,
    requests: usize,
    peak_rss_kib: u64,
    idle_rss_kib: u64,
    cpu: Duration,
}

/// N services; every hundredth (from the fiftieth) runs the pushed image.
fn environment(services: usize) -> Vec<ServiceSpec> {
    (0..services)
        .map(|i| {
            let image = if i % 100 == 50 || services < 100 && i == 0 {
                "docker:myorg/web:latest".to_owned()
            } else {
                format!("docker:myorg/other-{}:latest", i % 13)
            };
            service(&format!("svc-{i:06}"), &image)
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A field of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// User and system CPU time of the process so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // The kernel's USER_HZ, 100 on every Linux this runs on.
    Duration::from_millis(ticks * 10)
}

async fn start_binary(rancher: &FakeRancher, data: &std::path::Path) -> (Child, String) {
    let port = free_port();
    let log = std::env::var("BENCH_LOG").ok();
    let binary = std::env::var("BENCH_BINARY").unwrap_or_else(|_| BINARY.to_owned());
    let mut command = match std::env::var("BENCH_WRAP") {
        Ok(wrapper) => {
            let mut words = wrapper.split_whitespace();
            let mut command = Command::new(words.next().unwrap());
            command.args(words).arg(binary);
            command
        }
        Err(_) => Command::new(binary),
    };
    let child = command
        .env_clear()
        .env("BIND_ADDRESS", "127.0.0.1")
        .env("BIND_PORT", port.to_string())
        .env("AUTOREDEPLOY_DATA_DIR", data)
        .env("DOCKER_HUB_KEY", WEBHOOK_KEY)
        .env("RANCHER_HOST", rancher.host())
        .env("RANCHER_PROJECT_ID", fake_rancher::PROJECT_ID)
        .env("RANCHER_API_KEY", fake_rancher::ACCESS_KEY)
        .env("RANCHER_API_SECRET", fake_rancher::SECRET_KEY)
        .envs(
            [
                ("AUTOREDEPLOY_MAX_CONCURRENT_UPGRADES", "BENCH_UPGRADES"),
                ("RANCHER_UPGRADE_POLL_MS", "BENCH_POLL_MS"),
            ]
            .into_iter()
            .filter_map(|(setting, told)| Some((setting, std::env::var(told).ok()?))),
        )
        .env("RUST_LOG", log.as_deref().unwrap_or("warn"))
        .stdin(Stdio::null())
        .stdout(if log.is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true)
        .spawn()
        .expect("the release binary starts");
    let address = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    while http.get(format!("{address}/health")).send().await.is_err() {
        assert!(started.elapsed() < PATIENCE, "the binary did not answer");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (child, address)
}

async fn run_once(case: Case) -> Run {
    let behaviour = Behaviour {
        latency: case.latency,
        ..Behaviour::default()
    };
    let rancher = FakeRancher::start_with(environment(case.services), behaviour).await;
    let data = tempfile::tempdir().unwrap();
    let (mut child, address) = start_binary(&rancher, data.path()).await;
    let pid = child.id().unwrap();
    // Let the start settle before reading the idle figures.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss_kib = status_kib(pid, "VmRSS:");
    let http = reqwest::Client::new();
    // A push no service runs walks the whole environment once: what a server that has been
    // up for a while has done already (its journal file exists, its connections to Rancher
    // are open), and the fake Rancher has every service rendered.
    let warm_up = push(&http, &address, "myorg/warm-up").await;
    wait_until_done(&http, &address, &warm_up).await;
    let cpu_before = cpu_time(pid);

    let before = rancher.requests().len();
    let sent = Instant::now();
    let job = push(&http, &address, "myorg/web").await;

    let matching = case.matching();
    let last_upgrade = last_action_at(&rancher, "upgrade", matching, sent).await;
    wait_until_done(&http, &address, &job).await;
    let ended = Instant::now();
    let last_finish = last_action_at(&rancher, "finishupgrade", matching, sent).await;
    let mut run = Run {
        to_last_upgrade: last_upgrade.duration_since(sent),
        ideal_to_last_upgrade: Duration::ZERO,
        to_last_finish: last_finish.duration_since(sent),
        to_job_end: ended.duration_since(sent),
        requests: rancher.requests().len() - before,
        peak_rss_kib: status_kib(pid, "VmHWM:"),
        idle_rss_kib,
        cpu: cpu_time(pid) - cpu_before,
    };
    // SIGTERM, so that a wrapper such as valgrind writes its report.
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let _ = tokio::time::timeout(PATIENCE, child.wait()).await;
    drop(rancher);
    run.ideal_to_last_upgrade = ideal_client(case).await;
    run
}

/// When Rancher answered the last of `count` posts of `action` made since `since`.
async fn last_action_at(
    rancher: &FakeRancher,
    action: &str,
    count: usize,
    since: Instant,
) -> Instant {
    loop {
        let answered: Vec<Instant> = rancher
            .requests()
            .iter()
            .filter(|request| request.at >= since && request.action().as_deref() == Some(action))
            .map(|request| request.at)
            .collect();
        if answered.len() >= count {
            return answered.into_iter().max().unwrap();
        }
        assert!(
            since.elapsed() < PATIENCE,
            "{} of {count} {action}s",
            answered.len()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// What the ideal client reads of a page: each service's id and launch config, kept raw.
#[derive(serde::Deserialize)]
struct IdealPage {
    data: Vec<IdealEntry>,
}

#[derive(serde::Deserialize)]
struct IdealEntry {
    id: String,
    #[serde(rename = "launchConfig")]
    launch_config: Option<Box<serde_json::value::RawValue>>,
}

/// The time an ideal client takes, against a fake Rancher of its own holding the same
/// services, from its first request to Rancher answering its last upgrade: the first page
/// of 3000, then every other page at once, then every upgrade at once, each with the whole
/// launch config as listed.
async fn ideal_client(case: Case) -> Duration {
    let behaviour = Behaviour {
        latency: case.latency,
        ..Behaviour::default()
    };
    let rancher = FakeRancher::start_with(environment(case.services), behaviour).await;
    let http = reqwest::Client::new();
    let collection = format!(
        "{}/v1/projects/{}/services",
        rancher.host(),
        fake_rancher::PROJECT_ID
    );
    let page = |offset: Option<usize>| {
        let mut url = format!("{collection}?limit={PAGE}");
        if let Some(offset) = offset {
            url.push_str(&format!("&marker=m{offset}"));
        }
        let request = http
            .get(url)
            .basic_auth(fake_rancher::ACCESS_KEY, Some(fake_rancher::SECRET_KEY));
        async move {
            let body = request.send().await.unwrap().bytes().await.unwrap();
            serde_json::from_slice::<IdealPage>(&body).unwrap().data
        }
    };
    let started = Instant::now();
    let mut services = page(None).await;
    let mut pages = tokio::task::JoinSet::new();
    for offset in (PAGE..case.services).step_by(PAGE) {
        pages.spawn(page(Some(offset)));
    }
    while let Some(listed) = pages.join_next().await {
        services.extend(listed.unwrap());
    }
    let mut upgrades = tokio::task::JoinSet::new();
    for listed in services.iter().filter(|s| {
        s.launch_config.as_ref().is_some_and(|config| {
            config
                .get()
                .contains(r#""imageUuid":"docker:myorg/web:latest""#)
        })
    }) {
        let body = serde_json::json!({
            "inServiceStrategy": {
                "launchConfig": listed.launch_config, "batchSize": 1,
                "intervalMillis": 2000, "startFirst": false
            },
            "toServiceStrategy": null
        });
        let request = http
            .post(format!("{collection}/{}/?action=upgrade", listed.id))
            .basic_auth(fake_rancher::ACCESS_KEY, Some(fake_rancher::SECRET_KEY))
            .json(&body);
        upgrades.spawn(async move { request.send().await.unwrap().status() });
    }
    while let Some(status) = upgrades.join_next().await {
        assert_eq!(status.unwrap(), 202, "the ideal client's upgrade");
    }
    last_action_at(&rancher, "upgrade", case.matching(), started)
        .await
        .duration_since(started)
}

/// Pushes `repo_name:latest`; returns the job's number.
async fn push(http: &reqwest::Client, address: &str, repo_name: &str) -> serde_json::Value {
    let body = serde_json::json!({
        "push_data": { "tag": "latest", "pusher": "bench" },
        "repository": { "repo_name": repo_name },
    });
    let answer = http
        .post(format!("{address}/autoredeploy?key={WEBHOOK_KEY}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    answer.json::<serde_json::Value>().await.unwrap()["job"].clone()
}

/// Asks for the job every 50 ms until it is done (more often would make autoredeploy's CPU
/// figure that of answering the benchmark), with a page of one unit: only its state is
/// needed, and a page of 500 units, built while the job runs, is not the push's memory.
async fn wait_until_done(http: &reqwest::Client, address: &str, job: &serde_json::Value) {
    let started = Instant::now();
    loop {
        let state = http
            .get(format!("{address}/jobs/{job}?limit=1"))
            .bearer_auth(WEBHOOK_KEY)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()["state"]
            .clone();
        if state == "done" {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "job {job} did not end: {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn median<T: Copy + Ord>(mut values: Vec<T>) -> T {
    values.sort();
    values[values.len() / 2]
}

fn parse_cases(arguments: &[String]) -> Vec<Case> {
    let all = [100, 10_000, 100_000]
        .into_iter()
        .flat_map(|services| {
            [0, 20].into_iter().map(move |ms| Case {
                services,
                latency: Duration::from_millis(ms),
            })
        })
        .collect();
    let chosen: Vec<Case> = arguments
        .iter()
        .filter_map(|argument| {
            let (services, ms) = argument.split_once(':')?;
            Some(Case {
                services: services.parse().ok()?,
                latency: Duration::from_millis(ms.parse().ok()?),
            })
        })
        .collect();
    if chosen.is_empty() { all } else { chosen }
}

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let cases = parse_cases(&arguments);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "| N | M | latency | to last upgrade | ideal client | ratio | to last finishupgrade | to job end | Rancher requests | peak RSS | idle RSS | CPU per listed service |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for case in cases {
        let runs: Vec<Run> = (0..case.runs())
            .map(|_| runtime.block_on(run_once(case)))
            .collect();
        let ms = |pick: fn(&Run) -> Duration| {
            median(runs.iter().map(pick).collect()).as_secs_f64() * 1000.0
        };
        let (to_last, ideal) = (ms(|r| r.to_last_upgrade), ms(|r| r.ideal_to_last_upgrade));
        let requests = median(runs.iter().map(|r| r.requests).collect());
        let peak = median(runs.iter().map(|r| r.peak_rss_kib).collect());
        let idle = median(runs.iter().map(|r| r.idle_rss_kib).collect());
        let cpu = median(runs.iter().map(|r| r.cpu).collect());
        println!(
            "| {} | {} | {} ms | {to_last:.1} ms | {ideal:.1} ms | {:.2} × | {:.1} ms | {:.1} ms | {requests} | {:.1} MiB | {:.1} MiB | {:.1} µs |",
            case.services,
            case.matching(),
            case.latency.as_millis(),
            to_last / ideal,
            ms(|r| r.to_last_finish),
            ms(|r| r.to_job_end),
            peak as f64 / 1024.0,
            idle as f64 / 1024.0,
            cpu.as_secs_f64() * 1e6 / case.services as f64,
        );
    }
}
