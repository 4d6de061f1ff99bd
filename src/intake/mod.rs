//! The HTTP surface: the registry webhook and the health check.
//!
//! A webhook request is authenticated before its body is read, the body is read up to a
//! limit, parsed into a [`PushEvent`](crate::domain::PushEvent) and queued; the caller gets
//! `202` once the push is queued. Nothing reaches Rancher from here. The key in the query
//! string is never logged.

mod auth;
pub mod dockerhub;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::json;
use warp::http::{HeaderMap, Method, StatusCode, header};
use warp::reply::{Reply, Response};
use warp::{Buf, Filter, Stream};

pub use auth::WebhookKey;

use crate::queue::PushQueue;

/// Largest webhook body accepted; Docker Hub's are a few kilobytes.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Seconds a caller is asked to wait when the queue is full.
const RETRY_AFTER_S: &str = "10";

/// What the webhook handler needs.
#[derive(Debug, Clone)]
pub struct Intake {
    /// The accepted key.
    key: WebhookKey,
    /// Where accepted pushes go.
    queue: PushQueue,
}

impl Intake {
    /// A webhook intake that accepts `key` and queues on `queue`.
    pub fn new(key: WebhookKey, queue: PushQueue) -> Self {
        Self { key, queue }
    }
}

/// All routes: `POST /autoredeploy`, `GET /health`, and JSON errors for everything else.
pub fn routes(
    intake: Intake,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let intake = Arc::new(intake);
    let webhook = warp::path!("autoredeploy")
        .and(warp::method())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::addr::remote())
        .and(warp::body::stream())
        .and(warp::any().map(move || Arc::clone(&intake)))
        .then(
            |method, query: String, headers, remote, body, intake: Arc<Intake>| async move {
                intake.webhook(method, &query, &headers, remote, body).await
            },
        );
    let health = warp::path!("health").and(warp::method()).map(health);
    let fallback = warp::any().map(|| {
        error_reply(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint; the webhook is POST /autoredeploy?key=…",
        )
    });
    webhook.or(health).unify().or(fallback).unify()
}

fn health(method: Method) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed("GET, HEAD");
    }
    warp::reply::json(&json!({ "status": "ok" })).into_response()
}

impl Intake {
    async fn webhook<S, B>(
        &self,
        method: Method,
        query: &str,
        headers: &HeaderMap,
        remote: Option<SocketAddr>,
        body: S,
    ) -> Response
    where
        S: Stream<Item = Result<B, warp::Error>>,
        B: Buf,
    {
        let client = remote.map(|addr| addr.ip().to_string()).unwrap_or_default();
        if method != Method::POST {
            return method_not_allowed("POST");
        }
        let key = url::form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "key")
            .map(|(_, value)| value);
        if !key.is_some_and(|key| self.key.verify(&key)) {
            tracing::warn!(client, "webhook refused: missing or wrong key");
            return error_reply(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong key",
            );
        }
        if let Some(content_type) = headers.get(header::CONTENT_TYPE)
            && !is_json(content_type.to_str().unwrap_or_default())
        {
            tracing::info!(client, "webhook refused: not JSON");
            return error_reply(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON (Content-Type: application/json)",
            );
        }
        let declared_length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        let body = match declared_length {
            Some(length) if length > BODY_LIMIT as u64 => Err(BodyError::TooLarge),
            _ => read_limited(body, BODY_LIMIT).await,
        };
        let body = match body {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                tracing::info!(client, "webhook refused: body too large");
                return error_reply(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    &format!("the body is larger than {BODY_LIMIT} bytes"),
                );
            }
            Err(BodyError::Broken) => {
                return error_reply(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the body could not be read to its end",
                );
            }
        };
        let push = match dockerhub::parse_push(&body) {
            Ok(push) => push,
            Err(reason) => {
                tracing::info!(client, %reason, "webhook refused: not a push");
                return error_reply(StatusCode::BAD_REQUEST, "not_a_push", &reason.to_string());
            }
        };
        let image = push.image.to_string();
        match self.queue.try_enqueue(push) {
            Ok(()) => {
                tracing::info!(client, image, "push accepted");
                let body = json!({ "status": "accepted", "image": image });
                warp::reply::with_status(warp::reply::json(&body), StatusCode::ACCEPTED)
                    .into_response()
            }
            Err(error) => {
                tracing::warn!(client, image, %error, "push refused");
                let mut response = error_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    &format!("{error}; try again later"),
                );
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    header::HeaderValue::from_static(RETRY_AFTER_S),
                );
                response
            }
        }
    }
}

/// `application/json`, with or without parameters such as `charset=utf-8`.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

enum BodyError {
    TooLarge,
    Broken,
}

async fn read_limited<S, B>(body: S, limit: usize) -> Result<Vec<u8>, BodyError>
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

fn error_reply(status: StatusCode, error: &str, message: &str) -> Response {
    let body = json!({ "error": error, "message": message });
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

fn method_not_allowed(allow: &'static str) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PushEvent;
    use crate::queue::{self, PushReceiver};
    use secrecy::SecretString;

    const KEY: &str = "the-right-webhook-key";
    const PUSH: &str = r#"{"push_data":{"tag":"1.0"},"repository":{"repo_name":"org/app"}}"#;

    fn intake(capacity: usize) -> (Intake, PushReceiver) {
        let (sender, receiver) = queue::bounded(capacity);
        (
            Intake::new(WebhookKey::new(&SecretString::from(KEY)), sender),
            receiver,
        )
    }

    async fn status_of(
        request: warp::test::RequestBuilder,
        intake: Intake,
    ) -> (StatusCode, serde_json::Value) {
        let response = request.reply(&routes(intake)).await;
        let body = serde_json::from_slice(response.body()).unwrap_or_default();
        (response.status(), body)
    }

    fn post(path: &str) -> warp::test::RequestBuilder {
        warp::test::request().method("POST").path(path)
    }

    #[tokio::test]
    async fn an_accepted_push_is_queued_and_named() {
        let (intake, mut receiver) = intake(4);
        let (status, body) = status_of(
            post(&format!("/autoredeploy?key={KEY}"))
                .header("content-type", "application/json; charset=utf-8")
                .body(PUSH),
            intake,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(body["image"], "docker.io/org/app:1.0");
        let queued: PushEvent = receiver.next().await.unwrap();
        assert_eq!(queued.image.to_string(), "docker.io/org/app:1.0");
    }

    #[tokio::test]
    async fn rejections_have_precise_statuses_and_queue_nothing() {
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(BODY_LIMIT));
        let cases = [
            (post("/autoredeploy").body(PUSH), StatusCode::UNAUTHORIZED),
            (
                post("/autoredeploy?key=wrong").body(PUSH),
                StatusCode::UNAUTHORIZED,
            ),
            (
                post(&format!("/autoredeploy?other={KEY}")).body(PUSH),
                StatusCode::UNAUTHORIZED,
            ),
            (
                post(&format!("/autoredeploy?key={KEY}")).body("{}"),
                StatusCode::BAD_REQUEST,
            ),
            (
                post(&format!("/autoredeploy?key={KEY}"))
                    .header("content-type", "text/plain")
                    .body(PUSH),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                post(&format!("/autoredeploy?key={KEY}")).body(big),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                warp::test::request()
                    .method("GET")
                    .path(&format!("/autoredeploy?key={KEY}")),
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            (
                warp::test::request().method("PUT").path("/autoredeploy"),
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            (post("/health"), StatusCode::METHOD_NOT_ALLOWED),
            (
                warp::test::request().path("/elsewhere"),
                StatusCode::NOT_FOUND,
            ),
        ];
        for (request, expected) in cases {
            let (intake, mut receiver) = intake(4);
            let (status, body) = status_of(request, intake).await;
            assert_eq!(status, expected, "{body}");
            assert!(
                body["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{body}"
            );
            assert!(receiver.close().is_empty());
        }
    }

    #[tokio::test]
    async fn a_full_queue_answers_503_with_retry_after() {
        let (intake, _receiver) = intake(1);
        let request = || post(&format!("/autoredeploy?key={KEY}")).body(PUSH);
        let filter = routes(intake);
        assert_eq!(
            request().reply(&filter).await.status(),
            StatusCode::ACCEPTED
        );
        let response = request().reply(&filter).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], RETRY_AFTER_S);
    }

    #[tokio::test]
    async fn health_needs_no_key() {
        let (intake, _receiver) = intake(1);
        let (status, body) = status_of(warp::test::request().path("/health"), intake).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");
    }
}
