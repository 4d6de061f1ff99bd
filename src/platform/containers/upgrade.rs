//! The redeploy of one container, step by step, each step journaled before it is taken.
//!
//! 1. Pull the tag; the same image as the container's ends the unit `up-to-date`.
//! 2. Create the new container under a temporary name, from the old one's inspect.
//! 3. Switch: stop the old container (its restart policy set to `no` first, so an engine
//!    restart cannot bring it back), park it under another name, give the new one the
//!    name, start it.
//! 4. Gate the new container; once it passes, remove the old one.
//! 5. Recreate the containers that ran in the old one's network namespace, in the
//!    namespace of whichever container holds the name now (after a rollback too).
//!
//! A failure from the switch on rolls back: the new container is removed, and the old one
//! gets its name, its restart policy and its run back. Every step works by container id
//! and checks names before renaming, so a step taken twice (after a kill) does no harm.

use std::path::PathBuf;

use serde_json::json;

use super::api::{ContainerApi, Inspected, short};
use super::checkpoint::{Checkpoint, Step};
use super::dependants;
use super::gate::{self, Verdict};
use super::matching::{self, Verdict as Match};
use super::recreate::new_container;
use crate::config::{GateSettings, MatchSettings};
use crate::domain::{ImageRef, Outcome, UnitEnd};
use crate::journal::UnitRecord;
use crate::platform::engine::EngineError;
use crate::platform::engine::credentials::registry_auth;
use crate::platform::{Progress, StepLog};
use crate::shutdown::ShutdownSignal;

/// Why driving a unit stopped before an end.
enum Halt {
    /// The engine or the journal is out of reach: resume later from the recorded step.
    Later(String),
    /// The process is shutting down.
    Interrupted,
}

impl From<EngineError> for Halt {
    fn from(error: EngineError) -> Self {
        Halt::Later(error.to_string())
    }
}

/// A step's failure that puts the old container back.
enum Failure {
    Halt(Halt),
    RollBack(String),
}

impl From<EngineError> for Failure {
    fn from(error: EngineError) -> Self {
        if error.is_transient() {
            Failure::Halt(error.into())
        } else {
            Failure::RollBack(error.to_string())
        }
    }
}

impl From<Halt> for Failure {
    fn from(halt: Halt) -> Self {
        Failure::Halt(halt)
    }
}

/// Drives the redeploys of the containers target.
#[derive(Debug)]
pub(super) struct Redeployer {
    pub api: ContainerApi,
    pub rule: MatchSettings,
    pub gate: GateSettings,
    /// The folder of the `config.json` with registry credentials.
    pub config_folder: Option<PathBuf>,
    /// The container autoredeploy runs in, if any.
    pub own_id: Option<String>,
    pub shutdown: ShutdownSignal,
}

/// Why a container started with `--rm` is not redeployed.
pub(super) const AUTO_REMOVED: &str = "the container was started with --rm: stopping it \
     would remove it, and it could not be put back if its successor failed; create it \
     without --rm to have it redeployed";

/// The name the new container has until the switch.
fn temporary_name(name: &str) -> String {
    format!("{name}-autoredeploy-new")
}

/// The name the old container has from the switch until it is removed or put back.
fn parked_name(name: &str) -> String {
    format!("{name}-autoredeploy-old")
}

impl Redeployer {
    /// Carries the container of `unit` from its recorded step to an end.
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
        let checkpoint = Checkpoint::from_json(unit.checkpoint.as_deref());
        match self
            .run(&unit.id, image, digest, step, checkpoint, log)
            .await
        {
            Ok(outcome) => Progress::Ended(outcome),
            Err(Halt::Later(reason)) => Progress::Later(reason),
            Err(Halt::Interrupted) => Progress::Interrupted,
        }
    }

    async fn run(
        &self,
        name: &str,
        image: &ImageRef,
        digest: Option<&str>,
        step: Step,
        checkpoint: Option<Checkpoint>,
        log: &StepLog,
    ) -> Result<Outcome, Halt> {
        let mut checkpoint = match (step, checkpoint) {
            (Step::Planned | Step::Pulling, _) => {
                match self.prepare(name, image, digest, log).await? {
                    Ok(checkpoint) => checkpoint,
                    Err(outcome) => return Ok(outcome),
                }
            }
            (_, Some(checkpoint)) => checkpoint,
            (_, None) => {
                return Ok(Outcome::failed(
                    "the journal holds no checkpoint for this redeploy's step",
                ));
            }
        };
        let mut step = match step {
            Step::Planned | Step::Pulling => Step::Creating,
            step => step,
        };
        loop {
            let next = match step {
                Step::Planned | Step::Pulling => Ok(Step::Creating),
                Step::Creating => match self.create(name, &mut checkpoint).await {
                    Ok(()) => Ok(Step::Switching),
                    Err(Failure::RollBack(reason)) => {
                        return Ok(Outcome::failed(format!(
                            "{reason}; the old container was left running, untouched"
                        )));
                    }
                    Err(Failure::Halt(halt)) => return Err(halt),
                },
                Step::Switching => self.switch(name, &checkpoint).await.map(|()| Step::Gating),
                Step::Gating => self.gate(&checkpoint).await.map(|()| Step::RemovingOld),
                Step::RemovingOld => {
                    match self.api.remove_old(&checkpoint.old_id).await {
                        Ok(()) => {}
                        Err(error) if error.is_transient() => return Err(error.into()),
                        // The new container runs and passed its gate: that stands.
                        Err(error) => {
                            checkpoint.remark = Some(format!(
                                "the old container, stopped as {}, could not be removed: {error}",
                                parked_name(name)
                            ));
                        }
                    }
                    if checkpoint.dependants.is_empty() {
                        return Ok(upgraded(&checkpoint, Vec::new()));
                    }
                    Ok(Step::Dependants)
                }
                Step::RollingBack => match self.roll_back(name, &checkpoint).await? {
                    Ok(()) if !checkpoint.dependants.is_empty() => Ok(Step::Dependants),
                    Ok(()) => return Ok(rolled_back(&checkpoint, Vec::new())),
                    Err(outcome) => return Ok(outcome),
                },
                Step::Dependants => {
                    let failures =
                        dependants::recreate(&self.api, name, &checkpoint.dependants).await?;
                    return Ok(match checkpoint.failure {
                        Some(_) => rolled_back(&checkpoint, failures),
                        None => upgraded(&checkpoint, failures),
                    });
                }
            };
            step = match next {
                Ok(next) => next,
                Err(Failure::Halt(halt)) => return Err(halt),
                Err(Failure::RollBack(reason)) => {
                    checkpoint.failure = Some(reason);
                    Step::RollingBack
                }
            };
            record(log, step, &checkpoint).await?;
        }
    }

    /// Checks that the container still runs the pushed image, pulls it, and compares.
    /// Returns the checkpoint to create the new container with, or the unit's end. A
    /// container whose image the registry knows by the pushed `digest` is up to date
    /// without a pull.
    async fn prepare(
        &self,
        name: &str,
        image: &ImageRef,
        digest: Option<&str>,
        log: &StepLog,
    ) -> Result<Result<Checkpoint, Outcome>, Halt> {
        let Some(Inspected { view, .. }) = self.api.inspect(name).await? else {
            return Ok(Err(Outcome::skipped(format!(
                "there is no container named {name} any more"
            ))));
        };
        if !view.state.running {
            return Ok(Err(Outcome::skipped("the container is not running")));
        }
        if view.host_config.auto_remove {
            return Ok(Err(Outcome::skipped(AUTO_REMOVED)));
        }
        let is_own = self.own_id.as_deref() == Some(view.id.as_str());
        match matching::judge(
            &view.config.image,
            view.config.labels.as_ref(),
            is_own,
            image,
            &self.rule,
        ) {
            Match::Redeploy => {}
            Match::Skip(reason) => return Ok(Err(Outcome::skipped(reason))),
            Match::NotRunning => {
                return Ok(Err(Outcome::skipped(format!(
                    "the container runs {} now",
                    view.config.image
                ))));
            }
        }
        if let Some(digest) = digest
            && self.api.runs_digest(&view.image_id, image, digest).await?
        {
            return Ok(Err(Outcome::because(
                UnitEnd::UpToDate,
                format!("it already runs {digest}, the pushed digest"),
            )));
        }
        log.record(
            Step::Pulling.as_str(),
            Some(view.config.image.clone()),
            None,
        )
        .await
        .map_err(|error| Halt::Later(error.to_string()))?;
        let auth = registry_auth(self.config_folder.as_deref(), image.registry());
        let repository = format!("{}/{}", image.registry(), image.repository());
        let tag = image.tag().unwrap_or("latest");
        if let Err(error) = self.api.pull(&repository, tag, auth.as_ref()).await {
            if error.is_transient() {
                return Err(error.into());
            }
            return Ok(Err(Outcome::failed(format!(
                "{error}; nothing was changed"
            ))));
        }
        let Some(image_id) = self.api.image_id(&view.config.image).await? else {
            return Ok(Err(Outcome::failed(format!(
                "the engine has no image {} after pulling it; nothing was changed",
                view.config.image
            ))));
        };
        if image_id == view.image_id {
            return Ok(Err(Outcome::because(
                UnitEnd::UpToDate,
                format!("it already runs image {}", short_image(&image_id)),
            )));
        }
        let checkpoint = Checkpoint {
            old_id: view.id,
            image_id,
            new_id: None,
            restart_policy: serde_json::Value::Null,
            failure: None,
            dependants: Vec::new(),
            remark: None,
        };
        record(log, Step::Creating, &checkpoint).await?;
        Ok(Ok(checkpoint))
    }

    /// Creates the new container under the temporary name, from the old one's inspect
    /// without its old image's defaults, and connects it to the networks `create` did not
    /// take.
    async fn create(&self, name: &str, checkpoint: &mut Checkpoint) -> Result<(), Failure> {
        let temporary = temporary_name(name);
        // Left by an attempt that was cut short.
        self.api.discard_new(&temporary).await?;
        let Some(old) = self.api.inspect(&checkpoint.old_id).await? else {
            return Err(Failure::RollBack(
                "the container was removed meanwhile".into(),
            ));
        };
        checkpoint.dependants =
            dependants::of(&self.api, &checkpoint.old_id, name, self.own_id.as_deref()).await?;
        let Some(old_image) = self.api.image(&old.view.image_id).await? else {
            return Err(Failure::RollBack(format!(
                "the image the container runs ({}) is gone, so its defaults cannot be told \
                 from the container's own settings",
                short_image(&old.view.image_id)
            )));
        };
        let version = self.api.client().version().await.map_err(Halt::from)?;
        let made = new_container(
            &old.document,
            &old_image,
            &old.view.config.image,
            &checkpoint.image_id,
            version,
        )
        .map_err(Failure::RollBack)?;
        let new_id = match self.api.create(&temporary, &made.body).await {
            Ok(id) => id,
            Err(error) => {
                let _ = self.api.discard_new(&temporary).await;
                return Err(error.into());
            }
        };
        for (network, endpoint) in &made.later_networks {
            if let Err(error) = self.api.connect(&new_id, network, endpoint).await {
                let _ = self.api.discard_new(&new_id).await;
                return Err(error.into());
            }
        }
        checkpoint.new_id = Some(new_id);
        checkpoint.restart_policy = old.view.host_config.restart_policy;
        Ok(())
    }

    /// Stops and parks the old container, names and starts the new one.
    async fn switch(&self, name: &str, checkpoint: &Checkpoint) -> Result<(), Failure> {
        let new_id = new_id(checkpoint)?;
        let Some(old) = self.api.inspect(&checkpoint.old_id).await? else {
            return Err(Failure::RollBack(
                "the old container was removed meanwhile".into(),
            ));
        };
        self.api
            .set_restart_policy(&checkpoint.old_id, &json!({ "Name": "no" }))
            .await?;
        self.api
            .stop(&checkpoint.old_id, old.view.config.stop_timeout())
            .await?;
        if old.view.name() == name {
            let parked = parked_name(name);
            // Left by a redeploy that could not remove it: stopped, and of no use now.
            if let Some(left) = self.api.inspect(&parked).await? {
                if left.view.state.running {
                    return Err(Failure::RollBack(format!(
                        "a running container is named {parked}, the name the old container \
                         takes while it is replaced"
                    )));
                }
                self.api.remove_old(&left.view.id).await?;
            }
            self.api.rename(&checkpoint.old_id, &parked).await?;
        }
        let Some(new) = self.api.inspect(new_id).await? else {
            return Err(Failure::RollBack(
                "the new container was removed meanwhile".into(),
            ));
        };
        if new.view.name() != name {
            self.api.rename(new_id, name).await?;
        }
        Ok(self.api.start(new_id).await?)
    }

    /// Watches the new container until it passes or fails the gate.
    async fn gate(&self, checkpoint: &Checkpoint) -> Result<(), Failure> {
        let new_id = new_id(checkpoint)?;
        match gate::watch(&self.api, new_id, self.gate, &self.shutdown).await? {
            Verdict::Passed => Ok(()),
            Verdict::Failed(reason) => Err(Failure::RollBack(reason)),
            Verdict::Interrupted => Err(Failure::Halt(Halt::Interrupted)),
        }
    }

    /// Removes the new container and puts the old one back under its name; `Err` holds
    /// the unit's end when that failed.
    async fn roll_back(
        &self,
        name: &str,
        checkpoint: &Checkpoint,
    ) -> Result<Result<(), Outcome>, Halt> {
        match self.put_back(name, checkpoint).await {
            Ok(()) => Ok(Ok(())),
            Err(error) if error.is_transient() => Err(error.into()),
            Err(error) => Ok(Err(Outcome::failed(format!(
                "{}; putting the old container {} back failed: {error}",
                failure_of(checkpoint),
                short(&checkpoint.old_id)
            )))),
        }
    }

    async fn put_back(&self, name: &str, checkpoint: &Checkpoint) -> Result<(), EngineError> {
        // Without the old container, the new one is all there is: it stays.
        let Some(old) = self.api.inspect(&checkpoint.old_id).await? else {
            return Err(EngineError::Unreadable {
                what: "putting the old container back".into(),
                reason: "it is gone; the new container was left as it is".into(),
            });
        };
        match &checkpoint.new_id {
            Some(new_id) => self.api.discard_new(new_id).await?,
            None => self.api.discard_new(&temporary_name(name)).await?,
        }
        if old.view.name() != name {
            self.api.rename(&checkpoint.old_id, name).await?;
        }
        if !checkpoint.restart_policy.is_null() {
            self.api
                .set_restart_policy(&checkpoint.old_id, &checkpoint.restart_policy)
                .await?;
        }
        self.api.start(&checkpoint.old_id).await
    }
}

/// Why the new container was rolled back.
fn failure_of(checkpoint: &Checkpoint) -> String {
    checkpoint
        .failure
        .clone()
        .unwrap_or_else(|| "the new container failed".into())
}

/// The end of a unit upgraded, with what went wrong after its gate.
fn upgraded(checkpoint: &Checkpoint, failures: Vec<String>) -> Outcome {
    let remarks: Vec<String> = checkpoint.remark.iter().cloned().chain(failures).collect();
    if remarks.is_empty() {
        Outcome::upgraded()
    } else {
        Outcome::because(UnitEnd::Upgraded, remarks.join("; "))
    }
}

/// The end of a unit rolled back, with what failed in recreating its dependants.
fn rolled_back(checkpoint: &Checkpoint, failures: Vec<String>) -> Outcome {
    let mut reason = failure_of(checkpoint);
    for failure in failures {
        reason.push_str("; ");
        reason.push_str(&failure);
    }
    Outcome::because(UnitEnd::RolledBack, reason)
}

fn new_id(checkpoint: &Checkpoint) -> Result<&str, Failure> {
    checkpoint
        .new_id
        .as_deref()
        .ok_or_else(|| Failure::RollBack("the journal holds no id of the new container".into()))
}

async fn record(log: &StepLog, step: Step, checkpoint: &Checkpoint) -> Result<(), Halt> {
    let detail = checkpoint.failure.clone();
    log.record(step.as_str(), detail, Some(checkpoint.to_json()))
        .await
        .map_err(|error| Halt::Later(error.to_string()))
}

/// `sha256:0123456789ab`, the short form of an image id.
fn short_image(id: &str) -> &str {
    &id[..id.len().min("sha256:".len() + 12)]
}
