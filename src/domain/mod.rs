//! Domain values shared by every stage of the data path.

mod image_ref;
mod push_event;

pub use image_ref::{ImageRef, ImageRefError, excerpt};
pub use push_event::PushEvent;
