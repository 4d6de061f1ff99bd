//! `POST /<source path>`: a sender says an image was pushed. The caller is judged before
//! the body is read, the body is read within limits and parsed by its source into
//! [`PushEvent`]s, and each push is journaled before the answer `202` names its job.

use std::net::SocketAddr;

use serde_json::{Value, json};
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::{Reply, Response};
use warp::{Buf, Stream};

use super::body::{self, BODY_LIMIT, BodyError};
use super::replies::{error_reply, method_not_allowed, unavailable};
use super::sources::{Auth, Delivery, Source};
use super::{Intake, limiter};
use crate::domain::PushEvent;
use crate::journal::AcceptError;

impl Intake {
    /// Handles one webhook call from `source`.
    pub(super) async fn webhook<S, B>(
        &self,
        source: &'static Source,
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
        let client_ip = limiter::client_address(remote, headers, &self.trusted_proxies);
        let client = client_ip.to_string();
        if method != Method::POST {
            return method_not_allowed("POST");
        }
        match source.auth {
            Auth::Key => {
                if let Some(refusal) = self.refuse_caller(client_ip, query, headers) {
                    return refusal;
                }
            }
        }
        if body::declares_other_than_json(headers) {
            tracing::info!(client, source = %source.kind, "webhook refused: not JSON");
            return error_reply(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON (Content-Type: application/json)",
            );
        }
        let body = match self
            .read_body(headers, body, &client, source.kind.as_str())
            .await
        {
            Ok(body) => body,
            Err(refusal) => return *refusal,
        };
        let delivery = Delivery {
            body: &body,
            headers,
        };
        let announced = match (source.parse)(&delivery) {
            Ok(announced) => announced,
            Err(reason) => {
                tracing::info!(client, source = %source.kind, %reason, "webhook refused: not a push");
                return error_reply(StatusCode::BAD_REQUEST, "not_a_push", &reason.to_string());
            }
        };
        let pushes = announced.pushes;
        if pushes.is_empty() {
            let ignored = announced.ignored.join("; ");
            tracing::debug!(client, source = %source.kind, ignored, "webhook ignored: no push to act on");
            let body = json!({ "status": "ignored", "ignored": ignored });
            return warp::reply::with_status(warp::reply::json(&body), StatusCode::ACCEPTED)
                .into_response();
        }
        if let Some(push) = pushes.iter().find(|push| !self.is_allowed(&push.image)) {
            let image = push.image.to_string();
            tracing::warn!(
                client,
                image,
                "push refused: repository not in AUTOREDEPLOY_ALLOWED_REPOS"
            );
            return error_reply(
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!("pushes of {image} are not accepted here (AUTOREDEPLOY_ALLOWED_REPOS)"),
            );
        }
        if self.shutdown.is_triggered() {
            tracing::warn!(client, "push refused: shutting down");
            return unavailable("autoredeploy is shutting down");
        }
        let mut accepted = Vec::with_capacity(pushes.len());
        for push in &pushes {
            match self.accept(&client, push).await {
                Ok(answer) => accepted.push(answer),
                Err(refusal) => return refusal,
            }
        }
        let body = match <[Value; 1]>::try_from(accepted) {
            Ok([one]) => one,
            Err(several) => json!({ "status": "accepted", "pushes": several }),
        };
        warp::reply::with_status(warp::reply::json(&body), StatusCode::ACCEPTED).into_response()
    }

    /// Reads a request's body within [`BODY_LIMIT`] and the read timeout, or answers the
    /// request of `client` to `route` with the reason it could not be read.
    pub(super) async fn read_body<S, B>(
        &self,
        headers: &HeaderMap,
        body: S,
        client: &str,
        route: &str,
    ) -> Result<Vec<u8>, Box<Response>>
    where
        S: Stream<Item = Result<B, warp::Error>>,
        B: Buf,
    {
        let body = if body::declared_too_large(headers) {
            Err(BodyError::TooLarge)
        } else {
            tokio::time::timeout(self.read_timeout, body::read_limited(body, BODY_LIMIT))
                .await
                .unwrap_or(Err(BodyError::TooSlow))
        };
        let refusal = match body {
            Ok(body) => return Ok(body),
            Err(BodyError::TooLarge) => {
                tracing::info!(client, route, "request refused: body too large");
                error_reply(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    &format!("the body is larger than {BODY_LIMIT} bytes"),
                )
            }
            Err(BodyError::TooSlow) => {
                tracing::info!(client, route, "request refused: body not sent in time");
                error_reply(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    &format!(
                        "the body did not arrive within {} s",
                        self.read_timeout.as_secs()
                    ),
                )
            }
            Err(BodyError::Broken) => error_reply(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the body could not be read to its end",
            ),
        };
        Err(Box::new(refusal))
    }

    /// Journals one push; its part of the `202` answer, or the refusal.
    pub(super) async fn accept(&self, client: &str, push: &PushEvent) -> Result<Value, Response> {
        let image = push.image.to_string();
        match self.journal.accept(push, self.queue_size).await {
            Ok(accepted) => {
                self.wake.notify_one();
                tracing::info!(client, source = %push.source, image, job = %accepted.job, coalesced = accepted.coalesced, "push accepted");
                Ok(json!({
                    "status": "accepted",
                    "image": image,
                    "job": accepted.job,
                    "coalesced": accepted.coalesced,
                }))
            }
            Err(AcceptError::QueueFull) => {
                tracing::warn!(client, image, "push refused: the queue is full");
                Err(unavailable(
                    "the queue of pending pushes is full (AUTOREDEPLOY_QUEUE_SIZE)",
                ))
            }
            Err(AcceptError::Journal(error)) => {
                tracing::error!(client, image, %error, "push refused: it could not be recorded");
                Err(unavailable("the push could not be recorded"))
            }
        }
    }
}
