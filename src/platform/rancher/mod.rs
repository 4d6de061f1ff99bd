//! The Rancher v1 (Cattle) API: listing services page by page, reading one service, and
//! posting its upgrade actions.
//!
//! Rancher's wire types live here and nowhere else. Launch configs are kept as raw JSON so
//! they can be sent back whole: Rancher *replaces* a launch config on upgrade, so any key
//! dropped on the way would be lost from the service.

mod client;
mod collection;
mod error;
mod wire;

pub mod matching;
pub mod scan;
pub mod upgrade;

pub use client::{PAGE_SIZE, RancherClient};
pub use error::RancherError;
pub use wire::{
    LaunchConfigView, PageEnd, Service, ServicePage, SkippedEntry, UpgradeRequest, decode_entry,
};
