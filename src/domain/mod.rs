//! Domain values shared by every stage of the data path; no platform and no sender in here.

mod image_ref;
mod push_event;
mod reference_grammar;
mod unit;

pub use image_ref::{ImageRef, ImageRefError, excerpt};
pub use push_event::{PushEvent, SourceKind};
pub use unit::{Outcome, TargetKind, UnitEnd, UnitRef};
