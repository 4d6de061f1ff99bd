//! The document each channel is sent about an ended job, in that channel's own format:
//! Slack's and Discord's incoming-webhook messages, a Teams Adaptive Card, the generic
//! webhook's JSON, symfoni/deployer's beanstalkd message, and Docker Hub's callback.

use serde_json::{Value, json};

use crate::config::MessageTemplate;
use crate::domain::{ImageRef, UnitEnd};
use crate::journal::{JobNotice, JobState, UnitRecord};

/// Units listed by name in a chat message; the rest are counted.
const LISTED_UNITS: usize = 20;

/// Discord refuses a message longer than this many characters.
const DISCORD_MAX_CHARS: usize = 2000;

/// Docker Hub's bounds on a callback's fields.
const CALLBACK_DESCRIPTION_CHARS: usize = 255;
const CALLBACK_CONTEXT_CHARS: usize = 100;

/// The pushed image as people write it.
pub(super) fn artifact(job: &JobNotice) -> String {
    ImageRef::parse(&job.summary.image)
        .map(|image| image.familiar())
        .unwrap_or_else(|_| job.summary.image.clone())
}

/// One line about the job: what was pushed, and what came of it.
fn headline(job: &JobNotice) -> String {
    let summary = &job.summary;
    let mut counts = Vec::new();
    for (count, what) in [
        (summary.upgraded, "upgraded"),
        (summary.failed, "failed"),
        (summary.up_to_date, "up to date"),
        (summary.skipped, "skipped"),
    ] {
        if count > 0 {
            counts.push(format!("{count} {what}"));
        }
    }
    let tally = if counts.is_empty() {
        "no workload runs it".to_owned()
    } else {
        counts.join(", ")
    };
    let mut line = format!(
        "autoredeploy job {}: {} pushed ({}): {tally}",
        summary.id,
        artifact(job),
        summary.source
    );
    if let Some(error) = &summary.error {
        line.push_str(&format!("; the job failed: {error}"));
    }
    line
}

/// The units worth a line (every one that was not skipped), at most [`LISTED_UNITS`],
/// and how many more there are.
fn listed_units(job: &JobNotice) -> (Vec<&UnitRecord>, usize) {
    let worth: Vec<&UnitRecord> = job
        .units
        .iter()
        .filter(|unit| unit.end != Some(UnitEnd::Skipped))
        .collect();
    let more = worth.len().saturating_sub(LISTED_UNITS);
    (worth.into_iter().take(LISTED_UNITS).collect(), more)
}

/// A unit's end, and why when it says so.
fn unit_result(unit: &UnitRecord) -> String {
    let end = unit.end.map_or("unfinished", UnitEnd::as_str);
    match &unit.reason {
        Some(reason) => format!("{end}: {reason}"),
        None => end.to_owned(),
    }
}

/// The job as plain lines: the headline, then one line per unit.
fn lines(job: &JobNotice) -> Vec<String> {
    let (units, more) = listed_units(job);
    let mut lines = vec![headline(job)];
    for unit in units {
        lines.push(format!(
            "• {} {}: {}",
            unit.target,
            unit.name,
            unit_result(unit)
        ));
    }
    if more > 0 {
        lines.push(format!("• and {more} more"));
    }
    lines
}

/// Slack's incoming-webhook message. Slack reads `&`, `<` and `>` as markup, so they are
/// escaped as its documentation asks.
pub(super) fn slack(job: &JobNotice, username: Option<&str>) -> Value {
    let text = lines(job)
        .join("\n")
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let mut message = json!({ "text": text });
    if let Some(username) = username {
        message["username"] = username.into();
    }
    message
}

/// Discord's webhook message, within its 2000 characters, mentioning no one whatever the
/// unit names say.
pub(super) fn discord(job: &JobNotice) -> Value {
    let mut content = lines(job).join("\n");
    if content.chars().count() > DISCORD_MAX_CHARS {
        content = content.chars().take(DISCORD_MAX_CHARS - 1).collect();
        content.push('…');
    }
    json!({ "content": content, "allowed_mentions": { "parse": [] } })
}

/// A Teams message holding an Adaptive Card, as Teams' incoming webhooks (Workflows)
/// take it: the headline, then a fact per unit.
pub(super) fn teams(job: &JobNotice) -> Value {
    let (units, more) = listed_units(job);
    let mut facts: Vec<Value> = units
        .iter()
        .map(|unit| {
            json!({
                "title": format!("{} {}", unit.target, unit.name),
                "value": unit_result(unit),
            })
        })
        .collect();
    if more > 0 {
        facts.push(json!({ "title": "…", "value": format!("and {more} more") }));
    }
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": headline(job),
        "weight": "Bolder",
        "wrap": true,
    })];
    if !facts.is_empty() {
        body.push(json!({ "type": "FactSet", "facts": facts }));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.2",
                "body": body,
            },
        }],
    })
}

/// The generic webhook's document: the job and every unit with its end (see the README
/// for the schema).
pub(super) fn webhook(job: &JobNotice) -> Value {
    let summary = &job.summary;
    let units: Vec<Value> = job
        .units
        .iter()
        .map(|unit| {
            json!({
                "target": unit.target.as_str(),
                "id": unit.id,
                "name": unit.name,
                "outcome": unit.end.map(UnitEnd::as_str),
                "reason": unit.reason,
                "ended_at": unit.end.map(|_| unit.updated_at),
            })
        })
        .collect();
    json!({
        "job": summary.id,
        "state": summary.state,
        "error": summary.error,
        "source": summary.source,
        "image": summary.image,
        "digest": job.digest,
        "pusher": summary.pusher,
        "pushes": summary.pushes,
        "received_at": summary.received_at,
        "started_at": summary.started_at,
        "finished_at": summary.finished_at,
        "upgraded": summary.upgraded,
        "up_to_date": summary.up_to_date,
        "failed": summary.failed,
        "skipped": summary.skipped,
        "units": units,
    })
}

/// symfoni/deployer's message for one upgraded unit.
pub(super) fn beanstalk(job: &JobNotice, unit: &UnitRecord, template: &MessageTemplate) -> String {
    template.render(&artifact(job), &unit.name)
}

/// Docker Hub's callback document: `success` when nothing failed, `failure` when a unit
/// failed, `error` when the job failed as a whole.
pub(super) fn callback(job: &JobNotice, target_url: Option<String>) -> Value {
    let summary = &job.summary;
    let (state, description) = match (&summary.state, &summary.error) {
        (JobState::Failed, Some(error)) => ("error", format!("autoredeploy: {error}")),
        _ if summary.failed > 0 => ("failure", headline(job)),
        _ => ("success", headline(job)),
    };
    let mut document = json!({
        "state": state,
        "description": truncated(&description, CALLBACK_DESCRIPTION_CHARS),
        "context": truncated(&format!("autoredeploy job {}", summary.id), CALLBACK_CONTEXT_CHARS),
    });
    if let Some(target_url) = target_url {
        document["target_url"] = target_url.into();
    }
    document
}

/// `text` cut to at most `chars` characters.
fn truncated(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        None => text.to_owned(),
        Some((end, _)) => text[..end].to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TargetKind;
    use crate::journal::{JobId, JobSummary, Time};

    fn unit(name: &str, end: UnitEnd, reason: Option<&str>) -> UnitRecord {
        UnitRecord {
            seq: 1,
            target: TargetKind::Swarm,
            id: format!("id-{name}"),
            name: name.into(),
            step: end.as_str().into(),
            end: Some(end),
            reason: reason.map(str::to_owned),
            checkpoint: None,
            planned_at: Time(0),
            updated_at: Time(1_700_000_000_000),
            steps: Vec::new(),
        }
    }

    fn job(units: Vec<UnitRecord>, error: Option<&str>) -> JobNotice {
        let count = |wanted: fn(UnitEnd) -> bool| {
            units.iter().filter(|u| u.end.is_some_and(wanted)).count() as i64
        };
        JobNotice {
            summary: JobSummary {
                id: JobId(7),
                image: "docker.io/library/web:latest".into(),
                source: "dockerhub".into(),
                pusher: Some("alice".into()),
                pushes: 1,
                state: if error.is_some() {
                    JobState::Failed
                } else {
                    JobState::Done
                },
                received_at: Time(1_700_000_000_000),
                started_at: Some(Time(1_700_000_000_000)),
                finished_at: Some(Time(1_700_000_000_000)),
                error: error.map(str::to_owned),
                upgraded: count(|end| end == UnitEnd::Upgraded),
                up_to_date: count(|end| end == UnitEnd::UpToDate),
                failed: count(UnitEnd::is_failure),
                skipped: count(|end| end == UnitEnd::Skipped),
                pending: 0,
            },
            digest: None,
            units,
        }
    }

    #[test]
    fn callbacks_say_success_failure_or_error_within_docker_hub_s_bounds() {
        let fine = job(vec![unit("web", UnitEnd::Upgraded, None)], None);
        assert_eq!(callback(&fine, None)["state"], "success");
        assert!(callback(&fine, None).get("target_url").is_none());
        let broken = job(
            vec![unit("web", UnitEnd::RolledBack, Some(&"x".repeat(400)))],
            None,
        );
        assert_eq!(callback(&broken, None)["state"], "failure");
        let failed = job(Vec::new(), Some(&"rancher refused ".repeat(40)));
        let document = callback(&failed, Some("https://deploy.example/jobs/7".into()));
        assert_eq!(document["state"], "error");
        assert_eq!(document["target_url"], "https://deploy.example/jobs/7");
        let description = document["description"].as_str().unwrap();
        assert_eq!(description.chars().count(), CALLBACK_DESCRIPTION_CHARS);
        assert!(document["context"].as_str().unwrap().chars().count() <= CALLBACK_CONTEXT_CHARS);
    }

    #[test]
    fn chat_messages_list_units_up_to_a_bound_and_escape_slack_markup() {
        let units = (0..30)
            .map(|n| unit(&format!("<web-{n}>"), UnitEnd::Upgraded, None))
            .collect();
        let job = job(units, None);
        let text = slack(&job, Some("deploys"))["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(text.starts_with("autoredeploy job 7: web:latest pushed (dockerhub): 30 upgraded"));
        assert!(
            text.contains("&lt;web-0&gt;") && !text.contains("<web-0>"),
            "{text}"
        );
        assert!(text.ends_with("• and 10 more"), "{text}");
        assert_eq!(slack(&job, Some("deploys"))["username"], "deploys");
        let facts = &teams(&job)["attachments"][0]["content"]["body"][1]["facts"];
        assert_eq!(facts.as_array().unwrap().len(), LISTED_UNITS + 1);
        let discord = discord(&job);
        assert!(discord["content"].as_str().unwrap().chars().count() <= DISCORD_MAX_CHARS);
        assert_eq!(discord["allowed_mentions"]["parse"], json!([]));
    }
}
