//! The JSON answers every route shares: `{"error": …, "message": …}` with a precise status.

use warp::http::{StatusCode, header};
use warp::reply::{Reply, Response};

/// Seconds a caller is asked to wait when a push cannot be taken now.
pub(super) const RETRY_AFTER_S: &str = "10";

/// An error answer: `error` is a stable word for programs, `message` a sentence for people.
pub(super) fn error_reply(status: StatusCode, error: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": error, "message": message });
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

/// `401`: the key is missing or wrong (which one, is not said).
pub(super) fn unauthorized() -> Response {
    error_reply(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or wrong key",
    )
}

/// `503` with `Retry-After`: the push may succeed later.
pub(super) fn unavailable(reason: &str) -> Response {
    let mut response = error_reply(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        &format!("{reason}; try again later"),
    );
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from_static(RETRY_AFTER_S),
    );
    response
}

/// `405` with the methods the route accepts.
pub(super) fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = error_reply(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("this endpoint accepts {allow}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    response
}
