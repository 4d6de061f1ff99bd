//! The walk through an engine's running containers for one push: one list, and an
//! inspect of those listed by image id (the engine lists a container by its image's id
//! once its reference names another image, as it does after a pull).

use std::collections::HashMap;

use super::api::ContainerApi;
use super::matching::{self, Verdict};
use super::wire::ListedContainer;
use crate::config::MatchSettings;
use crate::domain::{ImageRef, TargetKind, UnitRef};
use crate::platform::engine::EngineError;
use crate::platform::{BoxFuture, Candidate, Plan, Prefetched, Scan, ScanError, ScanSummary};

/// A running container as the scan judges it.
struct Seen {
    id: String,
    /// The reference it was created from.
    reference: String,
    labels: Option<HashMap<String, String>>,
}

/// One walk.
pub(super) struct ContainerScan {
    api: ContainerApi,
    image: ImageRef,
    rule: MatchSettings,
    own_id: Option<String>,
    summary: ScanSummary,
    done: bool,
}

impl ContainerScan {
    pub fn new(
        api: ContainerApi,
        image: &ImageRef,
        rule: MatchSettings,
        own_id: Option<String>,
    ) -> Self {
        Self {
            api,
            image: image.clone(),
            rule,
            own_id,
            summary: ScanSummary::default(),
            done: false,
        }
    }

    async fn candidates(&mut self) -> Result<Vec<Candidate>, EngineError> {
        let listed = self.api.running().await?;
        self.summary.pages = 1;
        self.summary.listed = listed.len();
        let mut candidates = Vec::new();
        for container in listed {
            let Some(name) = container.name().map(str::to_owned) else {
                self.summary.unreadable += 1;
                continue;
            };
            let Some(seen) = self.read(container).await? else {
                continue;
            };
            let is_own = self.own_id.as_deref() == Some(seen.id.as_str());
            let plan = match matching::judge(
                &seen.reference,
                seen.labels.as_ref(),
                is_own,
                &self.image,
                &self.rule,
            ) {
                Verdict::NotRunning => continue,
                Verdict::Skip(reason) => Plan::Skip(reason),
                // A redeploy inspects the container afresh: the list's entry holds too
                // little to make a new container from.
                Verdict::Redeploy => Plan::Deploy(Prefetched {
                    copy: Box::new(()),
                    asked_at: tokio::time::Instant::now(),
                }),
            };
            candidates.push(Candidate {
                unit: UnitRef {
                    target: TargetKind::Containers,
                    id: name.clone(),
                },
                name,
                plan,
            });
        }
        Ok(candidates)
    }

    /// What the image rule and the label need of a listed container; the reference is
    /// read from its inspect when the list shows only an image id. `None` for one that
    /// went away meanwhile.
    async fn read(&self, container: ListedContainer) -> Result<Option<Seen>, EngineError> {
        if !container.image.starts_with("sha256:") {
            return Ok(Some(Seen {
                id: container.id,
                reference: container.image,
                labels: container.labels,
            }));
        }
        Ok(self.api.inspect(&container.id).await?.map(|inspected| {
            let view = inspected.view;
            Seen {
                id: view.id,
                reference: view.config.image,
                labels: view.config.labels,
            }
        }))
    }
}

impl Scan for ContainerScan {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<Vec<Candidate>>, ScanError>> {
        Box::pin(async move {
            if self.done {
                return Ok(None);
            }
            self.done = true;
            match self.candidates().await {
                Ok(candidates) => Ok(Some(candidates)),
                Err(error) if error.is_transient() => Err(ScanError::Later(error.to_string())),
                Err(error) => Err(ScanError::Failed(error.to_string())),
            }
        })
    }

    fn summary(&self) -> ScanSummary {
        self.summary.clone()
    }
}
