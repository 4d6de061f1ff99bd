//! A service found by its name, for `PUT /service/{name}`, and the walk of a job that
//! sets one service's image.

use super::SwarmPlatform;
use super::api::SwarmApi;
use super::scan;
use crate::config::MatchSettings;
use crate::domain::{ImageRef, TargetKind, UnitRef};
use crate::platform::{
    BoxFuture, Candidate, Lookup, NamedUnits, Plan, Prefetched, Scan, ScanError, ScanSummary,
};

impl NamedUnits for SwarmPlatform {
    fn find<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Lookup> {
        Box::pin(async move {
            match self.updater.api.is_manager().await {
                Ok(true) => {}
                Ok(false) => return Lookup::NotFound,
                Err(error) => return Lookup::Unavailable(error.to_string()),
            }
            let service = match self.updater.api.service(name).await {
                Ok(Some(service)) => service,
                Ok(None) => return Lookup::NotFound,
                Err(error) => return Lookup::Unavailable(error.to_string()),
            };
            // The engine also finds a service by a prefix of its id.
            if service.name() != name {
                return Lookup::NotFound;
            }
            if let Err(reason) = scan::opted_in(&service, &self.settings.matching) {
                return Lookup::OptedOut(format!("service {name}: {reason}"));
            }
            match service
                .image()
                .and_then(|image| ImageRef::parse(image).ok())
            {
                Some(image) => Lookup::Found {
                    unit: UnitRef {
                        target: TargetKind::Swarm,
                        id: service.id.clone(),
                    },
                    image,
                },
                None => Lookup::Unfit(format!(
                    "service {name} names no image autoredeploy can read"
                )),
            }
        })
    }
}

/// The walk of a job that concerns one service: that service, whatever image it runs.
pub(super) struct OneService {
    pub api: SwarmApi,
    pub id: String,
    pub rule: MatchSettings,
    pub summary: ScanSummary,
    pub done: bool,
}

impl Scan for OneService {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<Vec<Candidate>>, ScanError>> {
        Box::pin(async move {
            if self.done {
                return Ok(None);
            }
            self.done = true;
            let service = match self.api.service(&self.id).await {
                Ok(Some(service)) => service,
                Ok(None) => return Ok(Some(Vec::new())),
                Err(error) if error.is_transient() => {
                    return Err(ScanError::Later(error.to_string()));
                }
                Err(error) => return Err(ScanError::Failed(error.to_string())),
            };
            self.summary.pages = 1;
            self.summary.listed = 1;
            let plan = match scan::opted_in(&service, &self.rule) {
                Ok(()) => Plan::Deploy(Prefetched {
                    copy: Box::new(()),
                    asked_at: tokio::time::Instant::now(),
                }),
                Err(reason) => Plan::Skip(reason),
            };
            Ok(Some(vec![Candidate {
                unit: UnitRef {
                    target: TargetKind::Swarm,
                    id: service.id.clone(),
                },
                name: service.name().to_owned(),
                plan,
            }]))
        })
    }

    fn summary(&self) -> ScanSummary {
        self.summary.clone()
    }
}
