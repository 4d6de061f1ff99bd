//! The senders whose webhooks say an image was pushed, one module each.

pub mod dockerhub;
