//! Rancher's error documents, in the real shape.

use serde_json::{Value, json};
use warp::http::StatusCode;

/// An error document with `status`, Rancher's `code`, and optionally a message and the
/// field at fault.
pub(super) fn error(
    status: StatusCode,
    code: &str,
    message: Option<&str>,
    field_name: Option<&str>,
) -> (StatusCode, Value) {
    let body = json!({
        "id": format!("{:08x}-0000-4000-8000-000000000000", status.as_u16()),
        "type": "error", "links": {}, "actions": {},
        "status": status.as_u16(), "code": code, "message": message,
        "detail": null, "fieldName": field_name,
    });
    (status, body)
}

/// What an action the service's state does not allow is answered.
pub(super) fn not_available() -> (StatusCode, Value) {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "ActionNotAvailable",
        None,
        Some("action"),
    )
}

/// What a request for something that does not exist is answered.
pub(super) fn not_found() -> (StatusCode, Value) {
    error(StatusCode::NOT_FOUND, "Not Found", Some("Not Found"), None)
}
