//! Reading a webhook's body: JSON only, up to a size limit, within a time limit.

use warp::http::{HeaderMap, header};
use warp::{Buf, Stream};

/// Largest webhook body accepted; registries send a few kilobytes.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Why a body was not read.
pub(super) enum BodyError {
    /// It is larger than [`BODY_LIMIT`].
    TooLarge,
    /// It did not arrive in time.
    TooSlow,
    /// The connection broke off.
    Broken,
}

/// Whether the request says its body is not JSON: `application/json`, or a JSON-based type
/// such as a registry's `application/vnd.docker.distribution.events.v1+json` or Harbor's
/// `application/cloudevents+json`. Saying nothing is accepted: Docker Hub has sent pushes
/// without a `Content-Type`.
pub(super) fn declares_other_than_json(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|value| {
        let essence = value
            .to_str()
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim();
        let essence = essence.to_ascii_lowercase();
        essence != "application/json"
            && !(essence.starts_with("application/") && essence.ends_with("+json"))
    })
}

/// The declared length, when it is over the limit: refused before reading.
pub(super) fn declared_too_large(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .is_some_and(|length| length > BODY_LIMIT as u64)
}

/// Reads the whole body, failing as soon as it passes `limit` bytes.
pub(super) async fn read_limited<S, B>(body: S, limit: usize) -> Result<Vec<u8>, BodyError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut bytes = Vec::new();
    while let Some(chunk) = std::future::poll_fn(|cx| body.as_mut().poll_next(cx)).await {
        let mut chunk = chunk.map_err(|_| BodyError::Broken)?;
        if bytes.len() + chunk.remaining() > limit {
            return Err(BodyError::TooLarge);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            bytes.extend_from_slice(part);
            let read = part.len();
            chunk.advance(read);
        }
    }
    Ok(bytes)
}
