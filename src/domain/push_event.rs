use super::ImageRef;

/// "A new version of this image was pushed": what every inbound webhook format becomes.
///
/// The Rancher side of the program only ever sees this type, never a registry payload.
#[derive(Debug, Clone, PartialEq)]
pub struct PushEvent {
    /// The pushed image, normalised, always with a tag and never with a digest.
    pub image: ImageRef,
    /// Who pushed, when the registry says so; only for the log.
    pub pusher: Option<String>,
}
