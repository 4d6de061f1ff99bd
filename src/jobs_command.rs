//! `autoredeploy jobs [ID] [--limit N] [--json]`: the job history, read straight from the
//! journal in `AUTOREDEPLOY_DATA_DIR`, as `GET /jobs` and `GET /jobs/{id}` show it.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::journal::{self, JobDetail, JobId, JobSummary};

/// Runs the `jobs` command with the arguments that follow it.
pub fn run(arguments: &[String]) -> ExitCode {
    match run_inner(arguments) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("autoredeploy jobs: {message}");
            ExitCode::from(2)
        }
    }
}

fn run_inner(arguments: &[String]) -> Result<String, String> {
    let mut limit = 20;
    let mut job = None;
    let mut json = false;
    let mut arguments = arguments.iter();
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--json" => json = true,
            "--limit" => {
                limit = arguments
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or("--limit takes a positive number")?;
            }
            id => {
                job = Some(JobId(id.parse().map_err(|_| {
                    format!(
                        "`{id}` is not a job id; usage: autoredeploy jobs [ID] [--limit N] [--json]"
                    )
                })?))
            }
        }
    }
    let directory =
        PathBuf::from(std::env::var("AUTOREDEPLOY_DATA_DIR").unwrap_or_else(|_| "data".into()));
    let db = journal::read_only(&directory).map_err(|err| err.to_string())?;
    match job {
        Some(id) => {
            // The command shows every unit: it reads a local file, and prints what it reads.
            let every_unit = journal::UnitPage {
                limit: usize::MAX >> 1,
                after: None,
            };
            let detail = journal::job_detail(&db, id, every_unit)
                .map_err(|err| err.to_string())?
                .ok_or_else(|| format!("no job {id}"))?;
            Ok(if json {
                to_json(&detail)?
            } else {
                describe(&detail)
            })
        }
        None => {
            let jobs = journal::list_jobs(&db, limit, None).map_err(|err| err.to_string())?;
            Ok(if json { to_json(&jobs)? } else { table(&jobs) })
        }
    }
}

fn to_json(value: &impl serde::Serialize) -> Result<String, String> {
    serde_json::to_string_pretty(value)
        .map(|text| text + "\n")
        .map_err(|err| err.to_string())
}

fn state_of(job: &JobSummary) -> String {
    serde_json::to_value(job.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn table(jobs: &[JobSummary]) -> String {
    let mut text = format!(
        "{:>6}  {:<8}  {:>6}  {:>8}  {:>6}  {:>7}  {:>7}  {:<24}  {}\n",
        "JOB", "STATE", "PUSHES", "UPGRADED", "FAILED", "SKIPPED", "PENDING", "RECEIVED", "IMAGE"
    );
    for job in jobs {
        let _ = writeln!(
            text,
            "{:>6}  {:<8}  {:>6}  {:>8}  {:>6}  {:>7}  {:>7}  {:<24}  {}",
            job.id,
            state_of(job),
            job.pushes,
            job.upgraded,
            job.failed,
            job.skipped,
            job.pending,
            job.received_at,
            job.image
        );
    }
    text
}

fn describe(job: &JobDetail) -> String {
    let summary = &job.summary;
    let mut text = format!(
        "job {}: {} ({}), {} push(es), received {}\n",
        summary.id,
        summary.image,
        state_of(summary),
        summary.pushes,
        summary.received_at
    );
    if let Some(error) = &summary.error {
        let _ = writeln!(text, "  error: {error}");
    }
    for scan in &job.scans {
        let (listed, pages) = (scan.listed.unwrap_or(0), scan.pages.unwrap_or(0));
        let _ = writeln!(
            text,
            "  {}: listed {listed} in {pages} page(s)",
            scan.target
        );
        if let Some(error) = &scan.error {
            let _ = writeln!(text, "    stopped: {error}");
        }
    }
    for unit in &job.units {
        let state = unit.end.map_or(unit.step.as_str(), |end| end.as_str());
        let _ = writeln!(
            text,
            "  {} {} ({}): {state}",
            unit.target, unit.name, unit.id
        );
        if let Some(reason) = &unit.reason {
            let _ = writeln!(text, "    reason: {reason}");
        }
        for step in &unit.steps {
            let _ = writeln!(text, "    {}  {}", step.at, step.step);
        }
    }
    text
}
