//! `POST /<source path>`: a sender says an image was pushed. The caller is judged before
//! the body is read, the body is read within limits and parsed by its source into
//! [`PushEvent`]s, and each push is journaled before the answer `202` names its job.

use std::net::SocketAddr;

use serde_json::{Value, json};
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::{Reply, Response};
use warp::{Buf, Stream};

use super::auth::{bare_key_as_bearer, hmac_matches};
use super::body::{self, BODY_LIMIT, BodyError};
use super::replies::{error_reply, method_not_allowed, unavailable};
use super::sources::{Auth, Delivery, Source};
use super::{Intake, limiter};
use crate::domain::{PushEvent, SourceKind};
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
        // Keys are judged before the body is read; signatures once it is.
        let refusal = match source.auth {
            Auth::Key => self.refuse_caller(client_ip, query, headers),
            Auth::KeyHeader => self.refuse_caller(client_ip, "", &bare_key_as_bearer(headers)),
            Auth::GitHubSignature | Auth::GiteaSignature | Auth::JFrog => {
                self.route_off(source.auth)
            }
        };
        if let Some(refusal) = refusal {
            return refusal;
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
        if let Some(signed) = self.signature_verified(source.auth, &body, headers)
            && let Some(refusal) = self.judge_caller(client_ip, signed)
        {
            return refusal;
        }
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
        if announced.ping {
            return warp::reply::json(&json!({ "status": "pong" })).into_response();
        }
        let delivery_id = source
            .delivery_id
            .and_then(|name| headers.get(name))
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        if let Some(id) = &delivery_id
            && self.deliveries.seen(source.kind, id)
        {
            tracing::info!(client, source = %source.kind, "webhook ignored: a delivery received before");
            return ignored(&format!(
                "delivery {} was received before",
                crate::domain::excerpt(id)
            ));
        }
        let mut ignored_here = announced.ignored;
        let mut pushes = Vec::new();
        for mut push in self.with_aliases(announced.pushes) {
            if push
                .callback_url
                .as_ref()
                .is_some_and(|url| !self.callback_origins.contains(&url.origin()))
            {
                tracing::warn!(client, source = %source.kind, "callback_url ignored: its origin is not in AUTOREDEPLOY_CALLBACK_ORIGINS (the URL is not shown)");
                push.callback_url = None;
            }
            if self.is_allowed(&push.image) {
                pushes.push(push);
                continue;
            }
            let image = push.image.to_string();
            tracing::warn!(
                client,
                source = %source.kind,
                image,
                "push refused: repository not in AUTOREDEPLOY_ALLOWED_REPOS"
            );
            let refusal =
                format!("pushes of {image} are not accepted here (AUTOREDEPLOY_ALLOWED_REPOS)");
            // A registry sends again what it is not answered 2xx for, holding back its
            // later events: it is told the push was ignored. Docker Hub and a CI job are
            // told no.
            if matches!(source.kind, SourceKind::DockerHub | SourceKind::Image) {
                return error_reply(StatusCode::FORBIDDEN, "forbidden", &refusal);
            }
            ignored_here.push(refusal);
        }
        if pushes.is_empty() {
            let why = ignored_here.join("; ");
            tracing::debug!(client, source = %source.kind, ignored = why, "webhook ignored: no push to act on");
            return ignored(&why);
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
        if let Some(id) = &delivery_id {
            self.deliveries.remember(source.kind, id);
        }
        let body = match <[Value; 1]>::try_from(accepted) {
            Ok([one]) => one,
            Err(several) => json!({ "status": "accepted", "pushes": several }),
        };
        warp::reply::with_status(warp::reply::json(&body), StatusCode::ACCEPTED).into_response()
    }

    /// `pushes`, each followed by its copy under every other name of its registry
    /// (`AUTOREDEPLOY_REGISTRY_ALIASES`).
    fn with_aliases(&self, pushes: Vec<PushEvent>) -> Vec<PushEvent> {
        let mut all = Vec::with_capacity(pushes.len());
        for push in pushes {
            let aliases: Vec<PushEvent> = self
                .registry_aliases
                .iter()
                .filter(|(pushed, _)| pushed == push.image.registry())
                .filter_map(|(_, used)| {
                    let tag = push.image.tag()?;
                    let reference = format!("{used}/{}:{tag}", push.image.repository());
                    let image = crate::domain::ImageRef::parse(&reference).ok()?;
                    // The sender is owed one callback, by the push it made.
                    Some(PushEvent {
                        image,
                        callback_url: None,
                        ..push.clone()
                    })
                })
                .collect();
            all.push(push);
            all.extend(aliases);
        }
        all
    }

    /// `404` for a route whose signing secret is not set.
    fn route_off(&self, auth: Auth) -> Option<Response> {
        let (unset, variable, sender) = match auth {
            Auth::GitHubSignature => (
                self.signing_secrets.github.is_none(),
                "GITHUB_WEBHOOK_SECRET",
                "GitHub",
            ),
            Auth::GiteaSignature => (
                self.signing_secrets.gitea.is_none(),
                "GITEA_WEBHOOK_SECRET",
                "Gitea",
            ),
            _ => (false, "", ""),
        };
        unset.then(|| {
            error_reply(
                StatusCode::NOT_FOUND,
                "route_off",
                &format!("{sender}'s webhooks are not received: set {variable}"),
            )
        })
    }

    /// Whether the body is signed as the sender of `auth` signs it; `None` for senders
    /// judged by their key alone.
    fn signature_verified(&self, auth: Auth, body: &[u8], headers: &HeaderMap) -> Option<bool> {
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        let secret = |secret: &Option<secrecy::SecretString>| {
            secret
                .as_ref()
                .map(|secret| {
                    secrecy::ExposeSecret::expose_secret(secret)
                        .as_bytes()
                        .to_vec()
                })
                .unwrap_or_default()
        };
        Some(match auth {
            Auth::Key | Auth::KeyHeader => return None,
            Auth::GitHubSignature => header("x-hub-signature-256")
                .and_then(|value| value.strip_prefix("sha256="))
                .is_some_and(|signature| {
                    hmac_matches(&secret(&self.signing_secrets.github), body, signature)
                }),
            Auth::GiteaSignature => header("x-gitea-signature")
                .or_else(|| header("x-forgejo-signature"))
                .is_some_and(|signature| {
                    hmac_matches(&secret(&self.signing_secrets.gitea), body, signature)
                }),
            // The secret token itself, or the body signed with it.
            Auth::JFrog => header("x-jfrog-event-auth").is_some_and(|value| {
                let key = self.key.verify(value);
                let signed = self.key.signed(body, value);
                key | signed
            }),
        })
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

/// `202` for a delivery with nothing to act on, and why: senders retry anything else.
fn ignored(why: &str) -> Response {
    let body = json!({ "status": "ignored", "ignored": why });
    let mut answer =
        warp::reply::with_status(warp::reply::json(&body), StatusCode::ACCEPTED).into_response();
    answer.extensions_mut().insert(super::metrics::Ignored);
    answer
}
