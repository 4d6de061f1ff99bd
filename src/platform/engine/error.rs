//! How a request to the Docker Engine can fail.

use hyper::StatusCode;

/// An error of the Engine API client. No message holds a credential: the registry
/// credentials travel only in a header, and headers are never quoted.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine could not be reached (no socket, connection refused, TLS refused, the
    /// connection dropped): try again later.
    #[error("the Docker Engine at {address} cannot be reached: {reason}")]
    Unreachable {
        /// `DOCKER_HOST`, as given.
        address: String,
        /// What went wrong.
        reason: String,
    },
    /// The TLS handshake with the engine failed: its certificate, or ours, was refused.
    /// Waiting does not cure that.
    #[error("the TLS handshake with the Docker Engine at {address} failed: {reason}")]
    Handshake {
        /// `DOCKER_HOST`, as given.
        address: String,
        /// What went wrong.
        reason: String,
    },
    /// The engine did not answer in time.
    #[error("the Docker Engine did not answer {what} within {seconds} s")]
    Timeout {
        /// The request.
        what: String,
        /// The time allowed.
        seconds: u64,
    },
    /// The engine answered with an error status.
    #[error("{what}: the Docker Engine answered {status}: {message}")]
    Answer {
        /// The request.
        what: String,
        /// The status.
        status: StatusCode,
        /// The engine's `message`, or the start of its answer.
        message: String,
    },
    /// The engine's answer could not be read as expected.
    #[error("{what}: unexpected answer from the Docker Engine: {reason}")]
    Unreadable {
        /// The request.
        what: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The engine speaks only API versions this release cannot use.
    #[error(
        "the Docker Engine at {address} speaks API {engine}, but autoredeploy needs API \
         {oldest} (Docker 20.10) or newer"
    )]
    TooOld {
        /// `DOCKER_HOST`, as given.
        address: String,
        /// The newest version the engine speaks.
        engine: String,
        /// The oldest version autoredeploy speaks.
        oldest: String,
    },
}

impl EngineError {
    /// Whether the engine answered `404 Not Found`.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }

    /// The status the engine answered with, if it answered with an error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Answer { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether waiting may help: the engine was out of reach or slow.
    pub fn is_transient(&self) -> bool {
        // The engine answers `500` for refusals that waiting does not cure (a host port
        // already taken, a missing volume driver), so only silence counts.
        matches!(self, Self::Unreachable { .. } | Self::Timeout { .. })
    }
}
