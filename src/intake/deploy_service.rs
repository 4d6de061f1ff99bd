//! `PUT /service/{name}` with `{"image": "<reference>"}`: set that Swarm service's image,
//! as symfoni/deployer did. Its callers send the key as a bare `Authorization: <key>`,
//! and its README's `curl -X PUT -d '{…}'` labels the body as a form: the body is read as
//! JSON whatever its `Content-Type` says.

use std::net::SocketAddr;

use serde::Deserialize;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::{Reply, Response};
use warp::{Buf, Stream};

use super::auth::bare_key_as_bearer;
use super::lookup::{self, Named};
use super::notify::is_docker_name;
use super::replies::{error_reply, method_not_allowed, unavailable};
use super::{Intake, limiter};
use crate::domain::{ImageRef, PushEvent, SourceKind};

/// The one body accepted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetImage {
    image: String,
}

impl Intake {
    /// Handles `PUT /service/{name}`.
    pub(super) async fn deploy_service<S, B>(
        &self,
        name: &str,
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
        if method != Method::PUT {
            return method_not_allowed("PUT");
        }
        let headers = bare_key_as_bearer(headers);
        if let Some(refusal) = self.refuse_caller(client_ip, query, &headers) {
            return refusal;
        }
        if !is_docker_name(name) {
            return error_reply(
                StatusCode::BAD_REQUEST,
                "bad_service_name",
                "the service name must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 255 characters)",
            );
        }
        let Some(services) = &self.named_services else {
            return error_reply(
                StatusCode::NOT_FOUND,
                "no_swarm_target",
                "the Swarm target is not used: DOCKER_HOST (or, unset, the default socket) must \
                 be a Swarm manager's engine, and AUTOREDEPLOY_TARGETS, when set, must name \
                 `swarm`",
            );
        };
        let body = match self.read_body(&headers, body, &client, "service").await {
            Ok(body) => body,
            Err(refusal) => return *refusal,
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            return error_reply(
                StatusCode::BAD_REQUEST,
                "missing_body",
                "the body must be {\"image\": \"<reference>\"}",
            );
        }
        let image = match serde_json::from_slice::<SetImage>(&body) {
            Ok(SetImage { image }) => image,
            Err(_) => {
                return error_reply(
                    StatusCode::BAD_REQUEST,
                    "not_an_image",
                    "the body must be a JSON object {\"image\": \"<reference>\"} and nothing else",
                );
            }
        };
        let image = match ImageRef::parse(&image) {
            Ok(image) => image,
            Err(error) => {
                return error_reply(StatusCode::BAD_REQUEST, "bad_reference", &error.to_string());
            }
        };
        if !self.is_allowed(&image) {
            return error_reply(
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!("{image} is not accepted here (AUTOREDEPLOY_ALLOWED_REPOS)"),
            );
        }
        if self.shutdown.is_triggered() {
            return unavailable("autoredeploy is shutting down");
        }
        let unit = match lookup::found(services.find(name).await, Named::Service, name, &client) {
            Ok((unit, _)) => unit,
            Err(refusal) => return *refusal,
        };
        let push = PushEvent {
            image,
            digest: None,
            source: SourceKind::Service,
            pusher: None,
            callback_url: None,
            only: Some(unit),
        };
        match self.accept(&client, &push).await {
            Ok(mut answer) => {
                answer["service"] = name.into();
                warp::reply::with_status(warp::reply::json(&answer), StatusCode::ACCEPTED)
                    .into_response()
            }
            Err(refusal) => refusal,
        }
    }
}
