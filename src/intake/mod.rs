//! The HTTP surface: the registry webhook, the job history and the health check.
//!
//! A webhook request is authenticated before its body is read, the body is read up to a
//! limit, parsed into a [`PushEvent`](crate::domain::PushEvent) and written to the journal;
//! the caller gets `202` with the job's number once the push is safely recorded. Nothing
//! reaches Rancher from here. The key is never logged.

mod auth;
mod jobs;
mod limiter;
pub mod server;
pub mod sources;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;
use warp::http::{HeaderMap, Method, StatusCode, header};
use warp::reply::{Reply, Response};
use warp::{Buf, Filter, Stream};

pub use auth::WebhookKey;

use crate::config::AccessSettings;
use crate::journal::{AcceptError, Journal};
use crate::shutdown::ShutdownSignal;
use ipnet::IpNet;
use limiter::FailureLimiter;
use std::net::IpAddr;

/// Largest webhook body accepted; Docker Hub's are a few kilobytes.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Seconds a caller is asked to wait when a push cannot be taken now.
const RETRY_AFTER_S: &str = "10";

/// What the HTTP handlers need.
#[derive(Debug, Clone)]
pub struct Intake {
    /// The accepted key.
    key: WebhookKey,
    /// Where accepted pushes are written, and the history is read.
    journal: Journal,
    /// Rung after a push is written, so the deployer picks it up.
    wake: Arc<Notify>,
    /// Most jobs waiting to be started.
    queue_size: usize,
    /// Once triggered, pushes are refused with `503`.
    shutdown: ShutdownSignal,
    /// Failed authentications per client.
    limiter: Arc<FailureLimiter>,
    /// Proxies whose `X-Forwarded-For` names the client.
    trusted_proxies: Vec<IpNet>,
    /// Repositories whose pushes are accepted; empty means all.
    allowed_repos: Vec<glob::Pattern>,
    /// Time a client has to send the body once its head has arrived.
    read_timeout: Duration,
}

impl Intake {
    /// An intake that accepts `key`, writes pushes to `journal` (at most `queue_size`
    /// waiting) and rings `wake` for each.
    pub fn new(
        key: WebhookKey,
        journal: Journal,
        wake: Arc<Notify>,
        queue_size: usize,
        shutdown: ShutdownSignal,
        access: &AccessSettings,
    ) -> Self {
        Self {
            key,
            journal,
            wake,
            queue_size,
            shutdown,
            limiter: Arc::new(FailureLimiter::new(access.auth_failures_per_minute)),
            trusted_proxies: access.trusted_proxies.clone(),
            allowed_repos: access.allowed_repos.clone(),
            read_timeout: access.read_timeout,
        }
    }

    /// Refuses a caller that failed to authenticate too often, or one without the key
    /// (which counts as a failure). `None` lets the request go on.
    ///
    /// A caller locked out is refused whatever key it sends; when it did send the right one,
    /// the refusal is logged as an error: Docker Hub does not send a refused push again.
    fn refuse_caller(&self, client: IpAddr, query: &str, headers: &HeaderMap) -> Option<Response> {
        if let Some(lockout) = self.limiter.blocked(client) {
            let counted_as = lockout.counter.to_string();
            if self.is_authorized(query, headers) {
                tracing::error!(
                    %client,
                    counted_as,
                    "request with the right key refused: too many failed authentications from \
                     its address (counted_as says whose) in the last minute. A push refused this way is lost (Docker \
                     Hub does not retry it): push the image again once the minute is over. \
                     Find who is sending wrong keys; behind a reverse proxy, list it in \
                     AUTOREDEPLOY_TRUSTED_PROXIES so each client is counted on its own"
                );
            } else {
                tracing::warn!(
                    %client,
                    counted_as,
                    "request refused: too many failed authentications"
                );
            }
            let mut response = error_reply(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "too many failed authentications from this address; try again later",
            );
            let seconds = lockout.retry_after.as_secs() + 1;
            if let Ok(value) = header::HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return Some(response);
        }
        if !self.is_authorized(query, headers) {
            self.limiter.record_failure(client);
            tracing::warn!(%client, "request refused: missing or wrong key");
            return Some(unauthorized());
        }
        None
    }

    /// Whether pushes of `image` are accepted: its Docker Hub name (`nginx`, `myorg/web`)
    /// matches one of `AUTOREDEPLOY_ALLOWED_REPOS`, or the list is empty.
    fn is_allowed(&self, image: &crate::domain::ImageRef) -> bool {
        let repository = image.repository();
        let name = repository.strip_prefix("library/").unwrap_or(repository);
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        self.allowed_repos.is_empty()
            || self
                .allowed_repos
                .iter()
                .any(|pattern| pattern.matches_with(name, options))
    }

    /// Whether the request carries the key, as `Authorization: Bearer <key>` or `?key=<key>`.
    fn is_authorized(&self, query: &str, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::to_owned);
        let in_query = || {
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == "key")
                .map(|(_, value)| value.into_owned())
        };
        bearer
            .or_else(in_query)
            .is_some_and(|key| self.key.verify(&key))
    }
}

/// All routes: `POST /autoredeploy`, `GET /jobs`, `GET /jobs/{id}`, `GET /health`, and JSON
/// errors for everything else.
pub fn routes(
    intake: Intake,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let intake = Arc::new(intake);
    let with_intake = warp::any().map(move || Arc::clone(&intake));
    // What every keyed route needs to judge its caller: method, raw query, headers, peer.
    let caller = warp::method()
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(
            warp::ext::optional::<server::Peer>()
                .map(|peer: Option<server::Peer>| peer.map(|server::Peer(address)| address)),
        );
    let webhook = warp::path!("autoredeploy")
        .and(caller)
        .and(warp::body::stream())
        .and(with_intake.clone())
        .then(
            |method, query: String, headers, remote, body, intake: Arc<Intake>| async move {
                intake.webhook(method, &query, &headers, remote, body).await
            },
        );
    let jobs = warp::path!("jobs")
        .and(caller)
        .and(with_intake.clone())
        .then(
            |method, query: String, headers, remote, intake: Arc<Intake>| async move {
                intake.list_jobs(method, &query, &headers, remote).await
            },
        );
    let job = warp::path!("jobs" / String)
        .and(caller)
        .and(with_intake.clone())
        .then(
            |id: String, method, query: String, headers, remote, intake: Arc<Intake>| async move {
                intake.job(&id, method, &query, &headers, remote).await
            },
        );
    let health = warp::path!("health")
        .and(warp::method())
        .and(with_intake)
        .map(|method, intake: Arc<Intake>| intake.health(method));
    let fallback = warp::any().map(|| {
        error_reply(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint; the webhook is POST /autoredeploy?key=…",
        )
    });
    webhook
        .or(jobs)
        .unify()
        .or(job)
        .unify()
        .or(health)
        .unify()
        .or(fallback)
        .unify()
        .with(warp::log::custom(log_request))
        .map(Reply::into_response)
}

/// One debug line per request: its path without the query (which may hold the key).
fn log_request(request: warp::log::Info<'_>) {
    tracing::debug!(
        method = %request.method(),
        path = request.path(),
        status = request.status().as_u16(),
        elapsed_ms = request.elapsed().as_millis() as u64,
        "request"
    );
}

impl Intake {
    /// `200` while pushes can be recorded; `503` if the journal has stopped, so that an
    /// orchestrator replaces the container instead of sending it pushes it cannot keep.
    fn health(&self, method: Method) -> Response {
        if method != Method::GET && method != Method::HEAD {
            return method_not_allowed("GET, HEAD");
        }
        if !self.journal.is_alive() {
            return error_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "journal_stopped",
                "the journal has stopped; restart autoredeploy",
            );
        }
        warp::reply::json(&json!({ "status": "ok" })).into_response()
    }

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
        let client_ip = limiter::client_address(remote, headers, &self.trusted_proxies);
        let client = client_ip.to_string();
        if method != Method::POST {
            return method_not_allowed("POST");
        }
        if let Some(refusal) = self.refuse_caller(client_ip, query, headers) {
            return refusal;
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
            _ => tokio::time::timeout(self.read_timeout, read_limited(body, BODY_LIMIT))
                .await
                .unwrap_or(Err(BodyError::TooSlow)),
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
            Err(BodyError::TooSlow) => {
                tracing::info!(client, "webhook refused: body not sent in time");
                return error_reply(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    &format!(
                        "the body did not arrive within {} s",
                        self.read_timeout.as_secs()
                    ),
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
        let push = match sources::dockerhub::parse_push(&body) {
            Ok(push) => push,
            Err(reason) => {
                tracing::info!(client, %reason, "webhook refused: not a push");
                return error_reply(StatusCode::BAD_REQUEST, "not_a_push", &reason.to_string());
            }
        };
        let image = push.image.to_string();
        if !self.is_allowed(&push.image) {
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
            tracing::warn!(client, image, "push refused: shutting down");
            return unavailable("autoredeploy is shutting down");
        }
        match self.journal.accept(&push, self.queue_size).await {
            Ok(accepted) => {
                self.wake.notify_one();
                tracing::info!(client, image, job = %accepted.job, coalesced = accepted.coalesced, "push accepted");
                let body = json!({
                    "status": "accepted",
                    "image": image,
                    "job": accepted.job,
                    "coalesced": accepted.coalesced,
                });
                warp::reply::with_status(warp::reply::json(&body), StatusCode::ACCEPTED)
                    .into_response()
            }
            Err(AcceptError::QueueFull) => {
                tracing::warn!(client, image, "push refused: the queue is full");
                unavailable("the queue of pending pushes is full (AUTOREDEPLOY_QUEUE_SIZE)")
            }
            Err(AcceptError::Journal(error)) => {
                tracing::error!(client, image, %error, "push refused: it could not be recorded");
                unavailable("the push could not be recorded")
            }
        }
    }
}

fn unauthorized() -> Response {
    error_reply(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or wrong key",
    )
}

fn unavailable(reason: &str) -> Response {
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

/// `application/json`, with or without parameters such as `charset=utf-8`.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

enum BodyError {
    TooLarge,
    TooSlow,
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
    use crate::shutdown::Shutdown;
    use secrecy::SecretString;

    const KEY: &str = "the-right-webhook-key";
    const PUSH: &str = r#"{"push_data":{"tag":"1.0"},"repository":{"repo_name":"org/app"}}"#;

    struct Fixture {
        intake: Intake,
        journal: Journal,
        shutdown: Shutdown,
        _dir: tempfile::TempDir,
    }

    fn fixture(queue_size: usize) -> Fixture {
        fixture_with(queue_size, &[])
    }

    fn fixture_with(queue_size: usize, allowed_repos: &[&str]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let (shutdown, signal) = Shutdown::new();
        let key = WebhookKey::new(&[SecretString::from(KEY)]);
        let access = AccessSettings {
            auth_failures_per_minute: 3,
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
            allowed_repos: allowed_repos
                .iter()
                .map(|p| glob::Pattern::new(p).unwrap())
                .collect(),
            max_connections: 8,
            read_timeout: Duration::from_secs(10),
        };
        let intake = Intake::new(
            key,
            journal.clone(),
            Arc::new(Notify::new()),
            queue_size,
            signal,
            &access,
        );
        Fixture {
            intake,
            journal,
            shutdown,
            _dir: dir,
        }
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
    async fn an_accepted_push_is_journaled_and_named() {
        let fixture = fixture(4);
        let (status, body) = status_of(
            post(&format!("/autoredeploy?key={KEY}"))
                .header("content-type", "application/json; charset=utf-8")
                .body(PUSH),
            fixture.intake.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(body["image"], "docker.io/org/app:1.0");
        let jobs = fixture.journal.list_jobs(10, None).await.unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(body["job"], jobs[0].id.0);
        assert_eq!(jobs[0].image, "docker.io/org/app:1.0");
    }

    #[tokio::test]
    async fn rejections_have_precise_statuses_and_write_nothing() {
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(BODY_LIMIT));
        let keyed = format!("/autoredeploy?key={KEY}");
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
                post("/autoredeploy")
                    .header("authorization", "Bearer wrong")
                    .body(PUSH),
                StatusCode::UNAUTHORIZED,
            ),
            (post(&keyed).body("{}"), StatusCode::BAD_REQUEST),
            (
                post(&keyed).header("content-type", "text/plain").body(PUSH),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (post(&keyed).body(big), StatusCode::PAYLOAD_TOO_LARGE),
            (
                warp::test::request().method("GET").path(&keyed),
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            (
                warp::test::request().method("PUT").path("/autoredeploy"),
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            (post("/health"), StatusCode::METHOD_NOT_ALLOWED),
            (
                warp::test::request().path("/jobs"),
                StatusCode::UNAUTHORIZED,
            ),
            (
                warp::test::request().path("/jobs/1?key=wrong"),
                StatusCode::UNAUTHORIZED,
            ),
            (
                warp::test::request()
                    .method("DELETE")
                    .path(&format!("/jobs?key={KEY}")),
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            (
                warp::test::request().path(&format!("/jobs?key={KEY}&limit=lots")),
                StatusCode::BAD_REQUEST,
            ),
            (
                warp::test::request().path(&format!("/jobs/7?key={KEY}")),
                StatusCode::NOT_FOUND,
            ),
            (
                warp::test::request().path("/elsewhere"),
                StatusCode::NOT_FOUND,
            ),
        ];
        for (request, expected) in cases {
            let fixture = fixture(4);
            let (status, body) = status_of(request, fixture.intake.clone()).await;
            assert_eq!(status, expected, "{body}");
            assert!(
                body["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{body}"
            );
            assert!(
                fixture
                    .journal
                    .list_jobs(10, None)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
    }

    #[tokio::test]
    async fn the_bearer_header_is_accepted_too() {
        let fixture = fixture(4);
        let request = post("/autoredeploy")
            .header("authorization", format!("Bearer {KEY}"))
            .body(PUSH);
        assert_eq!(
            status_of(request, fixture.intake.clone()).await.0,
            StatusCode::ACCEPTED
        );
    }

    #[tokio::test]
    async fn a_full_queue_or_a_shutdown_answers_503_with_retry_after() {
        let fixture = fixture(1);
        let filter = routes(fixture.intake.clone());
        let push = |repo: &str| {
            post(&format!("/autoredeploy?key={KEY}")).body(format!(
                r#"{{"push_data":{{}},"repository":{{"repo_name":"{repo}"}}}}"#
            ))
        };
        assert_eq!(
            push("org/one").reply(&filter).await.status(),
            StatusCode::ACCEPTED
        );
        assert_eq!(
            push("org/one").reply(&filter).await.status(),
            StatusCode::ACCEPTED,
            "merged"
        );
        let response = push("org/two").reply(&filter).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], RETRY_AFTER_S);
        fixture.shutdown.trigger();
        assert_eq!(
            push("org/one").reply(&filter).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(fixture.journal.list_jobs(10, None).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn repeated_failures_from_one_address_get_429_before_the_body_is_read() {
        let fixture = fixture(4);
        let filter = routes(fixture.intake.clone());
        let from = |ip: &str, key: &str| {
            post(&format!("/autoredeploy?key={key}"))
                .extension(server::Peer(format!("{ip}:40000").parse().unwrap()))
                .body(PUSH)
        };
        for _ in 0..3 {
            assert_eq!(
                from("203.0.113.5", "guess").reply(&filter).await.status(),
                StatusCode::UNAUTHORIZED
            );
        }
        let blocked = from("203.0.113.5", KEY).reply(&filter).await;
        assert_eq!(
            blocked.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "even with the right key"
        );
        let wait: u64 = blocked.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait));
        assert_eq!(
            from("203.0.113.6", KEY).reply(&filter).await.status(),
            StatusCode::ACCEPTED
        );
        // Behind a trusted proxy, the forwarded address is the one limited.
        let proxied = post(&format!("/autoredeploy?key={KEY}"))
            .extension(server::Peer("10.0.0.2:40000".parse().unwrap()))
            .header("x-forwarded-for", "203.0.113.5")
            .body(PUSH);
        assert_eq!(
            proxied.reply(&filter).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        let history = warp::test::request()
            .path(&format!("/jobs?key={KEY}"))
            .extension(server::Peer("203.0.113.5:40000".parse().unwrap()));
        assert_eq!(
            history.reply(&filter).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[tokio::test]
    async fn pushes_of_repositories_not_allowed_get_403_and_write_nothing() {
        let fixture = fixture_with(4, &["org/*", "busybox"]);
        let filter = routes(fixture.intake.clone());
        let push = |repo: &str| {
            post(&format!("/autoredeploy?key={KEY}")).body(format!(
                r#"{{"push_data":{{}},"repository":{{"repo_name":"{repo}"}}}}"#
            ))
        };
        for allowed in ["org/app", "busybox"] {
            assert_eq!(
                push(allowed).reply(&filter).await.status(),
                StatusCode::ACCEPTED,
                "{allowed}"
            );
        }
        for refused in ["other/app", "org/app/deeper", "nginx", "organisation/app"] {
            let response = push(refused).reply(&filter).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{refused}");
        }
        assert_eq!(fixture.journal.list_jobs(10, None).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn health_needs_no_key() {
        let fixture = fixture(1);
        let (status, body) = status_of(
            warp::test::request().path("/health"),
            fixture.intake.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");
    }
}
