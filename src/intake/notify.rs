//! `POST /notify/{container}`: redeploy that container from its own image reference, as
//! trigger-docker-pull did. The caller is judged before anything else; the container is
//! looked up at once, so that a wrong name is answered now rather than found out later.

use std::net::SocketAddr;

use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::{Reply, Response};

use super::lookup::{self, Named};
use super::replies::{error_reply, method_not_allowed, unavailable};
use super::{Intake, limiter};
use crate::domain::{PushEvent, SourceKind};

/// Longest container name accepted (the engine sets no bound; a longer one is no name).
const MAX_NAME: usize = 255;

/// Whether `name` is in Docker's grammar of container and service names,
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub(super) fn is_docker_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric())
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'))
        && name.len() <= MAX_NAME
}

impl Intake {
    /// Handles `POST /notify/{name}`.
    pub(super) async fn notify(
        &self,
        name: &str,
        method: Method,
        query: &str,
        headers: &HeaderMap,
        remote: Option<SocketAddr>,
    ) -> Response {
        let client_ip = limiter::client_address(remote, headers, &self.trusted_proxies);
        let client = client_ip.to_string();
        if method != Method::POST {
            return method_not_allowed("POST");
        }
        if let Some(refusal) = self.refuse_caller(client_ip, query, headers) {
            return refusal;
        }
        if !is_docker_name(name) {
            return error_reply(
                StatusCode::BAD_REQUEST,
                "bad_container_name",
                "the container name must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 255 characters)",
            );
        }
        let Some(containers) = &self.named_containers else {
            return error_reply(
                StatusCode::NOT_FOUND,
                "no_containers_target",
                "the containers target is not configured (DOCKER_HOST, AUTOREDEPLOY_TARGETS)",
            );
        };
        if self.shutdown.is_triggered() {
            return unavailable("autoredeploy is shutting down");
        }
        let (unit, image) =
            match lookup::found(containers.find(name).await, Named::Container, name, &client) {
                Ok(found) => found,
                Err(refusal) => return *refusal,
            };
        if !self.is_allowed(&image) {
            return error_reply(
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!(
                    "container {name} runs {image}, which is not accepted here \
                     (AUTOREDEPLOY_ALLOWED_REPOS)"
                ),
            );
        }
        let push = PushEvent {
            image,
            digest: None,
            source: SourceKind::Notify,
            pusher: None,
            callback_url: None,
            only: Some(unit),
        };
        match self.accept(&client, &push).await {
            Ok(mut answer) => {
                answer["container"] = name.into();
                warp::reply::with_status(warp::reply::json(&answer), StatusCode::ACCEPTED)
                    .into_response()
            }
            Err(refusal) => refusal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_follow_docker_grammar() {
        for name in ["web", "Web_1", "a", "my.app-2", "0abc"] {
            assert!(is_docker_name(name), "{name}");
        }
        for name in [
            "", "_web", "-web", ".web", "web/1", "web 1", "wéb", "web:1", "%2e",
        ] {
            assert!(!is_docker_name(name), "{name}");
        }
        assert!(is_docker_name(&"a".repeat(255)));
        assert!(!is_docker_name(&"a".repeat(256)));
    }
}
