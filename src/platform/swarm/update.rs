//! The update of one service, step by step, each step journaled before it is taken.
//!
//! 1. Resolve the pushed tag to its digest in the registry; a service already on that
//!    digest ends `up-to-date`, untouched (an update would overwrite `PreviousSpec`, the
//!    target of any later rollback).
//! 2. `updating`: post the spec with the image pinned as `name:tag@digest` and
//!    `Placement.Platforms` set to the image's platforms, as the docker CLI sets them, from
//!    the version just read (read again and retried when Swarm answers "out of sequence").
//! 3. `following`: read `UpdateStatus` until `completed`, or a failure Swarm reports
//!    (its own `FailureAction` included), or `SWARM_UPGRADE_TIMEOUT_S` after the update was
//!    posted; then roll back (`rolling-back`) or leave it, as `SWARM_UPGRADE_ON_FAILURE`
//!    says.
//!
//! A resumed `updating` posts nothing when the service changed since the update was decided
//! and its spec names the pinned image, or a rollback started since then (Swarm's own
//! rollback leaves no `PreviousSpec` to tell which image it undid): an update whose answer
//! was lost is followed, never posted twice.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::api::{Service, SwarmApi, is_out_of_sequence};
use super::scan;
use crate::config::{MatchSettings, SwarmOnFailure};
use crate::domain::{ImageRef, Outcome, UnitEnd};
use crate::journal::UnitRecord;
use crate::platform::engine::EngineError;
use crate::platform::engine::credentials::registry_auth;
use crate::platform::{Progress, StepLog};
use crate::shutdown::ShutdownSignal;

/// Time between two reads of a service being updated.
const POLL: Duration = Duration::from_secs(1);

/// Time an `UpdateStatus` may stay empty after an update before the update counts as one
/// with nothing to do (Swarm sets no status when no task had to change).
const NOTHING_TO_DO_AFTER: Duration = Duration::from_secs(5);

/// Least time a rollback is followed.
const ROLLBACK_AT_LEAST: Duration = Duration::from_secs(120);

/// Attempts at an update that Swarm answers "out of sequence".
const OUT_OF_SEQUENCE_ATTEMPTS: usize = 5;

/// The steps of an update, as the journal records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Planned,
    Updating,
    Following,
    RollingBack,
}

impl Step {
    const ALL: [Step; 4] = [
        Step::Planned,
        Step::Updating,
        Step::Following,
        Step::RollingBack,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Planned => crate::journal::PLANNED,
            Self::Updating => "updating",
            Self::Following => "following",
            Self::RollingBack => "rolling-back",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|step| step.as_str() == name)
    }
}

/// The checkpoint of an update, journaled as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checkpoint {
    /// The image the update sets: `name:tag@digest`.
    image: String,
    /// When the update was first posted, in Unix milliseconds: the timeout counts from it.
    issued_at_ms: u64,
    /// The service's version when the update was decided: only a later version can hold
    /// this update (an earlier rollback from the same image is not one).
    #[serde(default)]
    from_version: u64,
    /// When the service's last update or rollback had started, when the update was
    /// decided: a rollback that started at another time came after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status_started_at: Option<String>,
    /// Why the update is being rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure: Option<String>,
    /// The image's platforms, for `Placement.Platforms`; empty when the registry was not
    /// asked (the request named a digest), which leaves the placement as it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    platforms: Vec<Value>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Why driving a unit stopped before an end.
enum Halt {
    Later(String),
    Interrupted,
}

impl From<EngineError> for Halt {
    fn from(error: EngineError) -> Self {
        Halt::Later(error.to_string())
    }
}

/// Drives the updates of the Swarm target.
#[derive(Debug)]
pub(super) struct Updater {
    pub api: SwarmApi,
    pub rule: MatchSettings,
    pub timeout: Duration,
    pub on_failure: SwarmOnFailure,
    pub config_folder: Option<PathBuf>,
    pub shutdown: ShutdownSignal,
}

impl Updater {
    /// Carries the service of `unit` from its recorded step to an end.
    pub async fn drive(
        &self,
        unit: &UnitRecord,
        image: &ImageRef,
        digest: Option<&str>,
        log: &StepLog,
    ) -> Progress {
        let Some(step) = Step::parse(&unit.step) else {
            return Progress::Ended(Outcome::failed(format!(
                "the journal holds a step this version does not know: `{}`",
                unit.step
            )));
        };
        let checkpoint = unit
            .checkpoint
            .as_deref()
            .and_then(|text| serde_json::from_str::<Checkpoint>(text).ok());
        let result = match (step, checkpoint) {
            (Step::Planned, _) => self.begin(&unit.id, image, digest, log).await,
            (step, Some(checkpoint)) => self.resume(&unit.id, step, checkpoint, log).await,
            (_, None) => Ok(Outcome::failed(
                "the journal holds no checkpoint for this update's step",
            )),
        };
        match result {
            Ok(outcome) => Progress::Ended(outcome),
            Err(Halt::Later(reason)) => Progress::Later(reason),
            Err(Halt::Interrupted) => Progress::Interrupted,
        }
    }

    /// Reads the service, resolves the digest of `image` (the pushed tag, or the image a
    /// request sets), and posts the update unless the service runs it already. Which
    /// services a push concerns was decided by the scan; only the label is read again.
    async fn begin(
        &self,
        id: &str,
        image: &ImageRef,
        pushed: Option<&str>,
        log: &StepLog,
    ) -> Result<Outcome, Halt> {
        let Some(service) = self.api.service(id).await? else {
            return Ok(Outcome::skipped("the service was removed"));
        };
        if let Err(reason) = scan::opted_in(&service, &self.rule) {
            return Ok(Outcome::skipped(reason));
        }
        // A push's digest only tells that a service running it is up to date: the tag
        // may have moved since, and a late or replayed delivery must not roll it back.
        let running = service
            .image()
            .and_then(|image| ImageRef::parse(image).ok());
        if let (Some(pushed), Some(running)) = (pushed, &running)
            && running
                .digest()
                .is_some_and(|digest| digest.eq_ignore_ascii_case(pushed))
        {
            return Ok(Outcome::because(
                UnitEnd::UpToDate,
                format!("it already runs {pushed}, the pushed digest"),
            ));
        }
        // A digest a request names is asked about too, for the image's platforms (and
        // whether the registry has it), as the docker CLI does.
        let asked = match image.digest() {
            Some(digest) => format!("{}/{}@{digest}", image.registry(), image.repository()),
            None => image.to_string(),
        };
        let auth = registry_auth(self.config_folder.as_deref(), image.registry());
        let (digest, platforms) = match self.api.registry_image(&asked, auth.as_ref()).await {
            Ok(resolved) => (resolved.digest, resolved.platforms),
            Err(error) if error.is_transient() => return Err(error.into()),
            Err(error) => {
                return Ok(Outcome::failed(format!("{error}; nothing was changed")));
            }
        };
        let target = pinned(service.image(), image, &digest);
        if running == ImageRef::parse(&target).ok() {
            return Ok(Outcome::because(
                UnitEnd::UpToDate,
                format!("it already runs {digest}"),
            ));
        }
        let checkpoint = Checkpoint {
            image: target,
            issued_at_ms: now_ms(),
            from_version: service.version.index,
            status_started_at: service
                .update_status
                .as_ref()
                .and_then(|status| status.started_at.clone()),
            failure: None,
            platforms,
        };
        record(log, Step::Updating, &checkpoint).await?;
        self.steps(id, Step::Updating, checkpoint, log, false).await
    }

    /// Carries an update on from a step the journal recorded before a restart.
    async fn resume(
        &self,
        id: &str,
        step: Step,
        checkpoint: Checkpoint,
        log: &StepLog,
    ) -> Result<Outcome, Halt> {
        self.steps(id, step, checkpoint, log, true).await
    }

    /// Takes the steps from `step` to an end; `resumed` when the process may have been
    /// stopped after the update was posted.
    async fn steps(
        &self,
        id: &str,
        mut step: Step,
        mut checkpoint: Checkpoint,
        log: &StepLog,
        resumed: bool,
    ) -> Result<Outcome, Halt> {
        loop {
            step = match step {
                Step::Planned => return Ok(Outcome::failed("the update went back to its start")),
                Step::Updating => match self.post_update(id, &mut checkpoint, resumed).await? {
                    Ok(()) => Step::Following,
                    Err(outcome) => return Ok(outcome),
                },
                Step::Following => match self.follow(id, &checkpoint, false).await? {
                    Followed::Ended(outcome) => return Ok(outcome),
                    Followed::TimedOut(reason) => match self.on_failure {
                        SwarmOnFailure::Leave => {
                            return Ok(Outcome::because(UnitEnd::Left, reason));
                        }
                        SwarmOnFailure::Rollback => {
                            checkpoint.failure = Some(reason);
                            Step::RollingBack
                        }
                    },
                },
                Step::RollingBack => return self.roll_back(id, &checkpoint).await,
            };
            record(log, step, &checkpoint).await?;
        }
    }

    /// Posts the update. `resumed`, it is first looked for: the service changed since the
    /// update was decided, and its spec names the image, or it was rolled back since. The
    /// timeout counts from a successful post.
    async fn post_update(
        &self,
        id: &str,
        checkpoint: &mut Checkpoint,
        resumed: bool,
    ) -> Result<Result<(), Outcome>, Halt> {
        let image = ImageRef::parse(&checkpoint.image).ok();
        let auth = image
            .as_ref()
            .and_then(|image| registry_auth(self.config_folder.as_deref(), image.registry()));
        for attempt in 0..OUT_OF_SEQUENCE_ATTEMPTS {
            let Some(service) = self.api.service(id).await? else {
                return Ok(Err(Outcome::failed("the service was removed")));
            };
            if resumed && attempt == 0 && was_posted(&service, checkpoint) {
                return Ok(Ok(()));
            }
            let spec = updated_spec(&service.spec, checkpoint);
            match self
                .api
                .update(id, service.version.index, &spec, auth.as_ref())
                .await
            {
                Ok(()) => {
                    checkpoint.issued_at_ms = now_ms();
                    return Ok(Ok(()));
                }
                Err(error) if is_out_of_sequence(&error) => continue,
                Err(error) if error.is_transient() => return Err(error.into()),
                Err(error) => {
                    return Ok(Err(Outcome::failed(format!(
                        "{error}; nothing was changed"
                    ))));
                }
            }
        }
        Ok(Err(Outcome::failed(
            "the service kept changing while its update was posted (update out of sequence)",
        )))
    }

    /// Reads the service until its update (or, `rolling_back`, its rollback) ends.
    async fn follow(
        &self,
        id: &str,
        checkpoint: &Checkpoint,
        rolling_back: bool,
    ) -> Result<Followed, Halt> {
        // A rollback has the same time again, from when it is followed, and at least
        // `ROLLBACK_AT_LEAST`.
        let timeout = match rolling_back {
            false => self.timeout,
            true => self.timeout.max(ROLLBACK_AT_LEAST),
        };
        let deadline = match rolling_back {
            false => checkpoint.issued_at_ms,
            true => now_ms(),
        } + timeout.as_millis() as u64;
        // Why Swarm rolls back: its message while rolling back, not the one it ends with.
        let mut cause: Option<String> = None;
        loop {
            let Some(service) = self.api.service(id).await? else {
                return Ok(Followed::Ended(Outcome::failed("the service was removed")));
            };
            if let Some(status) = &service.update_status
                && status.state == "rollback_started"
                && !status.message.is_empty()
            {
                cause = Some(status.message.clone());
            }
            if let Some(mut end) =
                self.update_end(&service, checkpoint, rolling_back, cause.as_deref())
            {
                // Best effort: a socket proxy may not let `/tasks` through.
                if matches!(end.end, UnitEnd::RolledBack | UnitEnd::Failed)
                    && checkpoint.failure.is_none()
                    && let Ok(Some(error)) = self.api.task_failure(id, &checkpoint.image).await
                {
                    end.reason = end
                        .reason
                        .map(|reason| format!("{reason}; a task of the new image failed: {error}"));
                }
                return Ok(Followed::Ended(end));
            }
            if !rolling_back && self.has_nothing_to_update(&service, checkpoint).await? {
                return Ok(Followed::Ended(Outcome::upgraded()));
            }
            if now_ms() >= deadline {
                let what = if rolling_back { "rollback" } else { "update" };
                return Ok(Followed::TimedOut(format!(
                    "the {what} did not complete within {} s (SWARM_UPGRADE_TIMEOUT_S)",
                    timeout.as_secs()
                )));
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = self.shutdown.triggered() => return Err(Halt::Interrupted),
            }
        }
    }

    /// Whether an update that has no status a while after it was posted had nothing to
    /// change: the service runs no task (no replicas, or a global service without nodes).
    /// While it has tasks, Swarm sets a status, however long that takes.
    async fn has_nothing_to_update(
        &self,
        service: &Service,
        checkpoint: &Checkpoint,
    ) -> Result<bool, EngineError> {
        let posted = Duration::from_millis(now_ms().saturating_sub(checkpoint.issued_at_ms));
        if service.update_status.is_some()
            || service.image() != Some(checkpoint.image.as_str())
            || posted < NOTHING_TO_DO_AFTER
        {
            return Ok(false);
        }
        Ok(self.api.running_tasks(&service.id).await? == 0)
    }

    /// The unit's end, once the service's `UpdateStatus` says the update has ended.
    fn update_end(
        &self,
        service: &Service,
        checkpoint: &Checkpoint,
        rolling_back: bool,
        cause: Option<&str>,
    ) -> Option<Outcome> {
        let status = service.update_status.clone().unwrap_or_default();
        let message = if status.message.is_empty() {
            status.state.clone()
        } else {
            format!("{}: {}", status.state, status.message)
        };
        let ours = service.image() == Some(checkpoint.image.as_str());
        match status.state.as_str() {
            "completed" if ours => Some(Outcome::upgraded()),
            "rollback_completed" => Some(Outcome::because(
                UnitEnd::RolledBack,
                match &checkpoint.failure {
                    Some(failure) => format!("{failure}; Swarm rolled the service back"),
                    None => format!(
                        "Swarm rolled the update back: {}",
                        cause.unwrap_or(&message)
                    ),
                },
            )),
            "paused" | "rollback_paused" => Some(Outcome::failed(format!(
                "Swarm paused the update ({message})"
            ))),
            // No status yet: Swarm sets none when no task has to change, which `follow`
            // finds out from the service's tasks.
            "" => None,
            _ if !ours && !rolling_back && status.state != "rollback_started" => {
                Some(Outcome::failed(format!(
                    "the service's image was changed by someone else meanwhile (it runs {})",
                    service.image().unwrap_or("no image")
                )))
            }
            _ => None,
        }
    }

    /// Asks Swarm to roll back (unless it is rolling back already), then follows it.
    async fn roll_back(&self, id: &str, checkpoint: &Checkpoint) -> Result<Outcome, Halt> {
        let Some(service) = self.api.service(id).await? else {
            return Ok(Outcome::failed("the service was removed"));
        };
        // The update may have completed since the timeout was seen.
        if service.image() == Some(checkpoint.image.as_str())
            && service
                .update_status
                .as_ref()
                .is_some_and(|status| status.state == "completed")
        {
            return Ok(Outcome::upgraded());
        }
        let state = service
            .update_status
            .as_ref()
            .map(|status| status.state.as_str());
        let rolling_back = matches!(
            state,
            Some("rollback_started" | "rollback_completed" | "rollback_paused")
        );
        if !rolling_back
            && let Err(error) = self
                .api
                .roll_back(id, service.version.index, &service.spec)
                .await
        {
            if error.is_transient() || is_out_of_sequence(&error) {
                return Err(Halt::Later(error.to_string()));
            }
            return Ok(Outcome::failed(format!(
                "{}; the rollback was refused: {error}",
                checkpoint.failure.as_deref().unwrap_or("the update failed")
            )));
        }
        match self.follow(id, checkpoint, true).await? {
            Followed::Ended(outcome) => Ok(outcome),
            Followed::TimedOut(reason) => Ok(Outcome::failed(reason)),
        }
    }
}

/// The image to set, `name:tag@digest`: in the service's own spelling when it names the
/// same image and tag, as `docker service create` wrote it.
fn pinned(running: Option<&str>, image: &ImageRef, digest: &str) -> String {
    let same_tag = running
        .map(|running| running.split('@').next().unwrap_or(running))
        .filter(|unpinned| {
            ImageRef::parse(unpinned)
                .is_ok_and(|written| written.without_digest() == image.without_digest())
        });
    match same_tag {
        // Written without a tag (`latest` by default): the tag is written out, or the
        // pinned reference would match no tag push again.
        Some(unpinned)
            if !unpinned
                .rsplit('/')
                .next()
                .unwrap_or(unpinned)
                .contains(':') =>
        {
            format!("{unpinned}:{}@{digest}", image.tag().unwrap_or("latest"))
        }
        Some(unpinned) => format!("{unpinned}@{digest}"),
        None => format!("{}@{digest}", image.without_digest()),
    }
}

/// Whether the update of `checkpoint` was posted before the process stopped: the service
/// changed since it was decided, and its spec names the image, or a rollback started since
/// (after Swarm's own rollback no `PreviousSpec` names the image it undid).
fn was_posted(service: &Service, checkpoint: &Checkpoint) -> bool {
    let status = service.update_status.as_ref();
    let rolled_back_since = status.is_some_and(|status| {
        status.state.starts_with("rollback") && status.started_at != checkpoint.status_started_at
    });
    service.version.index > checkpoint.from_version
        && (service.image() == Some(checkpoint.image.as_str())
            || service.was_rolled_back_from(&checkpoint.image)
            || rolled_back_since)
}

/// `spec` with the checkpoint's image, and its platforms when the registry named them.
fn updated_spec(spec: &Value, checkpoint: &Checkpoint) -> Value {
    let mut spec = spec.clone();
    let Some(template) = spec.get_mut("TaskTemplate").and_then(Value::as_object_mut) else {
        return spec;
    };
    if let Some(container) = template
        .get_mut("ContainerSpec")
        .and_then(Value::as_object_mut)
    {
        container.insert("Image".into(), Value::String(checkpoint.image.clone()));
    }
    if !checkpoint.platforms.is_empty() {
        let placement = template.entry("Placement").or_insert(Value::Null);
        if !placement.is_object() {
            *placement = Value::Object(Default::default());
        }
        placement["Platforms"] = Value::Array(checkpoint.platforms.clone());
    }
    spec
}

/// How following an update ended.
enum Followed {
    Ended(Outcome),
    TimedOut(String),
}

async fn record(log: &StepLog, step: Step, checkpoint: &Checkpoint) -> Result<(), Halt> {
    log.record(
        step.as_str(),
        checkpoint
            .failure
            .clone()
            .or_else(|| Some(checkpoint.image.clone())),
        serde_json::to_string(checkpoint).ok(),
    )
    .await
    .map_err(|error| Halt::Later(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789012345678901234567890123456789012345678901234567890123";

    #[test]
    fn the_pinned_image_keeps_the_service_spelling_and_always_a_tag() {
        let pushed = ImageRef::parse("localhost:5000/myorg/app:latest").unwrap();
        let old = format!("localhost:5000/myorg/app:latest@{DIGEST}");
        assert_eq!(
            pinned(Some(&old), &pushed, "sha256:new"),
            "localhost:5000/myorg/app:latest@sha256:new"
        );
        assert_eq!(
            pinned(Some("localhost:5000/myorg/app"), &pushed, "sha256:new"),
            "localhost:5000/myorg/app:latest@sha256:new"
        );
        let other_tag = ImageRef::parse("myorg/app:2").unwrap();
        assert_eq!(
            pinned(Some("myorg/app:1"), &other_tag, "sha256:new"),
            "docker.io/myorg/app:2@sha256:new"
        );
    }

    #[test]
    fn the_update_sets_the_image_and_its_platforms_and_keeps_the_rest() {
        let recorded: Value = serde_json::from_str(include_str!(
            "../../../fixtures/docker/swarm-service-inspect-before-update.json"
        ))
        .unwrap();
        let spec = &recorded[0]["Spec"];
        let arm = serde_json::json!({ "Architecture": "", "OS": "linux" });
        let mut checkpoint = Checkpoint {
            image: format!("localhost:5000/myorg/app:latest@{DIGEST}"),
            issued_at_ms: 0,
            from_version: 0,
            status_started_at: None,
            failure: None,
            platforms: vec![arm.clone()],
        };
        let updated = updated_spec(spec, &checkpoint);
        assert_eq!(
            updated["TaskTemplate"]["ContainerSpec"]["Image"],
            checkpoint.image.as_str()
        );
        assert_eq!(
            updated["TaskTemplate"]["Placement"]["Platforms"],
            serde_json::json!([arm])
        );
        assert_eq!(updated["Labels"], spec["Labels"]);
        assert_eq!(updated["Mode"], spec["Mode"]);
        assert_eq!(
            updated["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"],
            spec["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"]
        );

        // Without platforms, the placement stays; without one, none is added.
        checkpoint.platforms.clear();
        let updated = updated_spec(spec, &checkpoint);
        assert_eq!(
            updated["TaskTemplate"]["Placement"],
            spec["TaskTemplate"]["Placement"]
        );
        let mut bare = spec.clone();
        bare["TaskTemplate"]
            .as_object_mut()
            .unwrap()
            .remove("Placement");
        assert!(
            updated_spec(&bare, &checkpoint)["TaskTemplate"]
                .get("Placement")
                .is_none()
        );
    }

    fn recorded(name: &str) -> Service {
        let text = match name {
            "before" => {
                include_str!("../../../fixtures/docker/swarm-service-inspect-before-update.json")
            }
            "after-update" => {
                include_str!("../../../fixtures/docker/swarm-service-inspect-after-update.json")
            }
            _ => include_str!("../../../fixtures/docker/swarm-service-inspect-after-rollback.json"),
        };
        let mut services: Vec<Service> = serde_json::from_str(text).unwrap();
        services.remove(0)
    }

    #[test]
    fn a_resumed_update_is_found_posted_in_what_swarm_did_since() {
        let before = recorded("before");
        let updated = recorded("after-update");
        let decided = |service: &Service, image: &str| Checkpoint {
            image: image.to_owned(),
            issued_at_ms: 0,
            from_version: service.version.index,
            status_started_at: service
                .update_status
                .as_ref()
                .and_then(|s| s.started_at.clone()),
            failure: None,
            platforms: Vec::new(),
        };
        let ours = updated.image().unwrap().to_owned();
        let checkpoint = decided(&before, &ours);
        assert!(!was_posted(&before, &checkpoint), "nothing happened yet");
        assert!(was_posted(&updated, &checkpoint), "the spec names it");
        // Swarm's own rollback leaves no PreviousSpec: the rollback since tells.
        let rolled_back = recorded("after-rollback");
        assert!(rolled_back.previous_spec.is_null());
        assert!(was_posted(&rolled_back, &checkpoint));
        // Decided after that rollback, the same image again: the old rollback is not it.
        let again = decided(&rolled_back, &ours);
        assert!(!was_posted(&rolled_back, &again));
    }
}
