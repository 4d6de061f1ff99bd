//! Walks the environment's services page by page and decides, per service, what a push means.
//!
//! Pages are processed as they arrive and dropped: memory does not grow with the number of
//! services, and an upgrade can start while later pages are still being read.

use crate::config::MatchSettings;
use crate::domain::ImageRef;
use crate::matching::{self, Verdict};
use std::collections::HashSet;

use crate::rancher::{RancherClient, RancherError};

/// A service to upgrade. The upgrader reads it again before acting, so only its identity is
/// kept: memory stays small however many services match.
#[derive(Debug, Clone)]
pub struct UpgradePlan {
    /// Rancher id.
    pub service_id: String,
    /// Service name, for the log.
    pub service_name: String,
}

/// A decision about a service that runs the pushed image (or might, but cannot be read).
#[derive(Debug)]
pub enum Decision {
    /// Upgrade it.
    Upgrade(UpgradePlan),
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

/// Counts from one walk through the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanSummary {
    /// Pages read.
    pub pages: usize,
    /// Services listed, readable or not.
    pub listed: usize,
    /// Services planned for upgrade.
    pub planned: usize,
    /// Services skipped although they run the image.
    pub skipped: usize,
    /// Services without a launch config (DNS, external, …), passed over.
    pub without_launch_config: usize,
    /// Entries that could not be read and were passed over.
    pub unreadable: usize,
}

/// Lists every service and calls `decide` for each one that the push concerns, in order.
pub async fn scan(
    client: &RancherClient,
    pushed: &ImageRef,
    rule: &MatchSettings,
    mut decide: impl FnMut(Decision),
) -> Result<ScanSummary, RancherError> {
    let mut summary = ScanSummary::default();
    let mut marker: Option<String> = None;
    // Markers are offsets: a service created or removed during the walk shifts the pages,
    // and a service may be listed twice. It is decided once.
    let mut decided: HashSet<String> = HashSet::new();
    loop {
        let page = client.list_page(marker.as_deref()).await?;
        summary.pages += 1;
        summary.listed += page.services.len() + page.skipped.len();
        for entry in &page.skipped {
            summary.unreadable += 1;
            tracing::warn!(service_id = entry.id.as_deref().unwrap_or("?"), reason = %entry.reason, "unreadable service entry passed over");
        }
        for service in page.services {
            match matching::judge(&service, pushed, rule) {
                Verdict::NotRunning => {}
                Verdict::NoLaunchConfig => {
                    summary.without_launch_config += 1;
                    tracing::debug!(service_id = %service.id, kind = service.resource_type.as_deref().unwrap_or("?"), "service has no launch config, passed over");
                }
                Verdict::Unreadable(reason) => {
                    summary.unreadable += 1;
                    tracing::warn!(service_id = %service.id, service = service.display_name(), %reason, "service with unexpected fields passed over");
                }
                Verdict::OptedOut(_) | Verdict::Upgrade(_)
                    if !decided.insert(service.id.clone()) =>
                {
                    tracing::debug!(service_id = %service.id, "listed twice (the environment changed during the walk)");
                }
                Verdict::OptedOut(reason) => {
                    summary.skipped += 1;
                    decide(Decision::Skip {
                        service_id: service.id.clone(),
                        service_name: service.display_name().to_owned(),
                        reason,
                    });
                }
                Verdict::Upgrade(_) => {
                    summary.planned += 1;
                    decide(Decision::Upgrade(UpgradePlan {
                        service_id: service.id.clone(),
                        service_name: service.display_name().to_owned(),
                    }));
                }
            }
        }
        match page.next_marker {
            None => return Ok(summary),
            Some(next) if marker.as_deref() == Some(next.as_str()) => {
                return Err(RancherError::Decode {
                    what: "listing services".into(),
                    reason: format!("pagination.next points to the same page again ({next})"),
                });
            }
            Some(next) => marker = Some(next),
        }
    }
}
