//! Walks the environment's services page by page and decides, per service, what a push means.
//!
//! Pages are judged as they arrive and dropped: memory does not grow with the number of
//! services, and upgrades can start while later pages are still being read.

use std::collections::HashSet;

use crate::config::MatchSettings;
use crate::domain::ImageRef;
use crate::matching::{self, Verdict};
use crate::rancher::{RancherClient, RancherError};

/// A decision about a service that runs the pushed image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Upgrade it. The upgrader reads it again before acting, so only its identity is kept.
    Upgrade {
        /// Rancher id.
        service_id: String,
        /// Service name.
        service_name: String,
    },
    /// Leave it alone, and say why.
    Skip {
        /// Rancher id.
        service_id: String,
        /// Service name.
        service_name: String,
        /// Why.
        reason: String,
    },
}

impl Decision {
    /// The service concerned.
    pub fn service_id(&self) -> &str {
        match self {
            Self::Upgrade { service_id, .. } | Self::Skip { service_id, .. } => service_id,
        }
    }
}

/// Counts from one walk through the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanSummary {
    /// Pages read.
    pub pages: usize,
    /// Services listed, readable or not.
    pub listed: usize,
    /// Services without a launch config (DNS, external, …), passed over.
    pub without_launch_config: usize,
    /// Entries that could not be read and were passed over.
    pub unreadable: usize,
}

/// One walk through the environment for one pushed image.
#[derive(Debug)]
pub struct Scanner<'a> {
    client: &'a RancherClient,
    pushed: &'a ImageRef,
    rule: &'a MatchSettings,
    /// `None` before the first page; `Some(None)` after the last.
    next: Option<Option<String>>,
    /// Markers are offsets: a service created or removed during the walk shifts the pages,
    /// and a service may be listed twice. It is decided once.
    decided: HashSet<String>,
    summary: ScanSummary,
}

impl<'a> Scanner<'a> {
    /// A walk that has not read anything yet.
    pub fn new(client: &'a RancherClient, pushed: &'a ImageRef, rule: &'a MatchSettings) -> Self {
        Self {
            client,
            pushed,
            rule,
            next: None,
            decided: HashSet::new(),
            summary: ScanSummary::default(),
        }
    }

    /// Reads the next page and returns the decisions about its services, in order; `None`
    /// once the last page has been read.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Decision>>, RancherError> {
        let marker = match &self.next {
            None => None,
            Some(None) => return Ok(None),
            Some(Some(marker)) => Some(marker.clone()),
        };
        let page = self.client.list_page(marker.as_deref()).await?;
        self.summary.pages += 1;
        self.summary.listed += page.services.len() + page.skipped.len();
        for entry in &page.skipped {
            self.summary.unreadable += 1;
            tracing::warn!(service_id = entry.id.as_deref().unwrap_or("?"), reason = %entry.reason, "unreadable service entry passed over");
        }
        let mut decisions = Vec::new();
        for service in page.services {
            let decision = match matching::judge(&service, self.pushed, self.rule) {
                Verdict::NotRunning => continue,
                Verdict::NoLaunchConfig => {
                    self.summary.without_launch_config += 1;
                    tracing::debug!(service_id = %service.id, kind = service.resource_type.as_deref().unwrap_or("?"), "service has no launch config, passed over");
                    continue;
                }
                Verdict::Unreadable(reason) => {
                    self.summary.unreadable += 1;
                    tracing::warn!(service_id = %service.id, service = service.display_name(), %reason, "service with unexpected fields passed over");
                    continue;
                }
                Verdict::OptedOut(reason) => Decision::Skip {
                    service_id: service.id.clone(),
                    service_name: service.display_name().to_owned(),
                    reason,
                },
                Verdict::Upgrade(_) => Decision::Upgrade {
                    service_id: service.id.clone(),
                    service_name: service.display_name().to_owned(),
                },
            };
            if self.decided.insert(service.id.clone()) {
                decisions.push(decision);
            } else {
                tracing::debug!(service_id = %service.id, "listed twice (the environment changed during the walk)");
            }
        }
        self.next = match page.next_marker {
            Some(next) if marker.as_deref() == Some(next.as_str()) => {
                return Err(RancherError::Decode {
                    what: "listing services".into(),
                    reason: format!("pagination.next points to the same page again ({next})"),
                });
            }
            next => Some(next),
        };
        Ok(Some(decisions))
    }

    /// What the walk has seen so far.
    pub fn summary(&self) -> &ScanSummary {
        &self.summary
    }
}
