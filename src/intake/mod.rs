//! The HTTP surface: the senders' webhooks, the job history and the health check.
//!
//! * [`webhook`](self) requests are judged before their body is read, the body is read
//!   within limits ([`body`](self)) and parsed by its [`sources`] module into
//!   [`PushEvent`](crate::domain::PushEvent)s, which are written to the journal; the caller
//!   gets `202` with the job's number once each push is safely recorded.
//! * `jobs` serves the history, `replies` the JSON error answers every route shares,
//!   `auth` and `limiter` judge callers, and [`server`] serves connections with limits.
//!
//! Nothing reaches a platform from here. Keys are never logged.

mod auth;
mod body;
mod deliveries;
mod deploy_service;
mod jobs;
mod limiter;
mod lookup;
mod metrics;
mod notify;
mod replies;
pub mod server;
pub mod sources;
mod webhook;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::json;
use tokio::sync::Notify;
use warp::Filter;
use warp::http::{HeaderMap, Method, StatusCode, header};
use warp::reply::{Reply, Response};

pub use auth::WebhookKey;
pub use body::BODY_LIMIT;

use crate::config::{AccessSettings, SigningSecrets};
use crate::domain::SourceKind;
use crate::events::metrics::Metrics;
use crate::journal::Journal;
use crate::platform::NamedUnits;
use crate::shutdown::ShutdownSignal;
use limiter::FailureLimiter;
use replies::{error_reply, method_not_allowed, unauthorized};

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
    /// Failed authentications of `/metrics` per client, counted apart: a scraper with a
    /// stale key never locks out the pushes from behind the same address.
    metrics_limiter: Arc<FailureLimiter>,
    /// Proxies whose `X-Forwarded-For` names the client.
    trusted_proxies: Vec<IpNet>,
    /// Repositories whose pushes are accepted; empty means all.
    allowed_repos: Vec<glob::Pattern>,
    /// Registry hosts whose pushes are also pushes of another host name.
    registry_aliases: Vec<(String, String)>,
    /// Time a client has to send the body once its head has arrived.
    read_timeout: Duration,
    /// Containers by name, for `/notify/{container}`, when that target is used.
    named_containers: Option<Arc<dyn NamedUnits>>,
    /// Swarm services by name, for `PUT /service/{name}`, when that target is used.
    named_services: Option<Arc<dyn NamedUnits>>,
    /// The secrets GitHub and Gitea sign with; their routes are off without them.
    signing_secrets: SigningSecrets,
    /// Deliveries accepted lately, by their sender's id for them.
    deliveries: Arc<deliveries::RecentDeliveries>,
    /// What `/metrics` shows, and where pushes are counted.
    metrics: Arc<Metrics>,
    /// The key `/metrics` asks for; the route is off without it.
    metrics_key: Option<WebhookKey>,
    /// The origins a Docker Hub `callback_url` may point at.
    callback_origins: Vec<url::Origin>,
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
            metrics_limiter: Arc::new(FailureLimiter::new(access.auth_failures_per_minute)),
            trusted_proxies: access.trusted_proxies.clone(),
            allowed_repos: access.allowed_repos.clone(),
            registry_aliases: access.registry_aliases.clone(),
            read_timeout: access.read_timeout,
            named_containers: None,
            named_services: None,
            signing_secrets: SigningSecrets::default(),
            deliveries: Arc::default(),
            metrics: Arc::default(),
            metrics_key: None,
            callback_origins: Vec::new(),
        }
    }

    /// The same intake, counting into `metrics` and showing them on `/metrics` to callers
    /// with `metrics_key`, and keeping the Docker Hub callbacks that point at
    /// `callback_origins`.
    pub fn with_events(
        mut self,
        metrics: Arc<Metrics>,
        metrics_key: Option<&secrecy::SecretString>,
        callback_origins: Vec<url::Origin>,
    ) -> Self {
        self.metrics = metrics;
        self.metrics_key = metrics_key.map(|key| WebhookKey::new(std::slice::from_ref(key)));
        self.callback_origins = callback_origins;
        self
    }

    /// The same intake, checking the signatures of GitHub and Gitea with `secrets`.
    pub fn with_signing_secrets(mut self, secrets: SigningSecrets) -> Self {
        self.signing_secrets = secrets;
        self
    }

    /// The same intake, answering `PUT /service/{name}` with the services of `named`.
    pub fn with_named_services(mut self, named: Arc<dyn NamedUnits>) -> Self {
        self.named_services = Some(named);
        self
    }

    /// The same intake, answering `/notify/{container}` with the containers of `named`.
    pub fn with_named_containers(mut self, named: Arc<dyn NamedUnits>) -> Self {
        self.named_containers = Some(named);
        self
    }

    /// Refuses a caller that failed to authenticate too often, or one without the key
    /// (which counts as a failure). `None` lets the request go on.
    ///
    /// A caller locked out is refused whatever key it sends; when it did send the right one,
    /// the refusal is logged as an error: Docker Hub does not send a refused push again.
    fn refuse_caller(&self, client: IpAddr, query: &str, headers: &HeaderMap) -> Option<Response> {
        self.judge_caller(client, self.is_authorized(query, headers))
    }

    /// Refuses a caller that failed to authenticate too often, or one that is not
    /// `authorized` (which counts as a failure). `None` lets the request go on.
    fn judge_caller(&self, client: IpAddr, authorized: bool) -> Option<Response> {
        self.judge_caller_with(&self.limiter, client, authorized)
    }

    /// [`Self::judge_caller`], counting failures in `limiter`.
    fn judge_caller_with(
        &self,
        limiter: &FailureLimiter,
        client: IpAddr,
        authorized: bool,
    ) -> Option<Response> {
        if let Some(lockout) = limiter.blocked(client) {
            let counted_as = lockout.counter.to_string();
            if authorized {
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
        if !authorized {
            limiter.record_failure(client);
            tracing::warn!(%client, "request refused: missing or wrong key");
            return Some(unauthorized());
        }
        None
    }

    /// Whether pushes of `image` are accepted: its name matches one of
    /// `AUTOREDEPLOY_ALLOWED_REPOS`, or the list is empty. The name of a Docker Hub image is
    /// its short name (`nginx`, `myorg/web`); that of another registry's starts with its
    /// host (`registry.example.com:5000/team/app`), so that a pattern without a host never
    /// lets in the same repository on a host someone else runs.
    fn is_allowed(&self, image: &crate::domain::ImageRef) -> bool {
        let repository = image.repository();
        let name = match image.registry() {
            "docker.io" => repository
                .strip_prefix("library/")
                .unwrap_or(repository)
                .to_owned(),
            host => format!("{host}/{repository}"),
        };
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        self.allowed_repos.is_empty()
            || self
                .allowed_repos
                .iter()
                .any(|pattern| pattern.matches_with(&name, options))
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

/// All routes: `POST /<path>` of each source (`/autoredeploy` for Docker Hub),
/// `POST /notify/{container}`, `GET /jobs`,
/// `GET /jobs/{id}`, `GET /health`, and JSON errors for everything else.
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
    let source = warp::path::tail().and_then(|path: warp::path::Tail| async move {
        sources::by_path(path.as_str().trim_end_matches('/')).ok_or_else(warp::reject::not_found)
    });
    let webhook = source
        .and(caller)
        .and(warp::body::stream())
        .and(with_intake.clone())
        .then(
            |source: &'static sources::Source,
             method,
             query: String,
             headers,
             remote,
             body,
             intake: Arc<Intake>| async move {
                let answer = intake
                    .webhook(source, method, &query, &headers, remote, body)
                    .await;
                intake.count_push(source.kind, answer)
            },
        );
    let notify = warp::path("notify")
        .and(
            warp::path::param::<String>()
                .or(warp::any().map(String::new))
                .unify(),
        )
        .and(warp::path::end())
        .and(caller)
        .and(with_intake.clone())
        .then(
            |name: String, method, query: String, headers, remote, intake: Arc<Intake>| async move {
                let answer = intake.notify(&name, method, &query, &headers, remote).await;
                intake.count_push(SourceKind::Notify, answer)
            },
        );
    let deploy_service =
        warp::path("service")
            .and(
                warp::path::param::<String>()
                    .or(warp::any().map(String::new))
                    .unify(),
            )
            .and(warp::path::end())
            .and(caller)
            .and(warp::body::stream())
            .and(with_intake.clone())
            .then(
                |name: String,
                 method,
                 query: String,
                 headers,
                 remote,
                 body,
                 intake: Arc<Intake>| async move {
                    let answer = intake
                        .deploy_service(&name, method, &query, &headers, remote, body)
                        .await;
                    intake.count_push(SourceKind::Service, answer)
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
    let metrics = warp::path!("metrics")
        .and(caller)
        .and(with_intake.clone())
        .then(
            |method, _query: String, headers, remote, intake: Arc<Intake>| async move {
                intake.metrics(method, &headers, remote).await
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
        .or(notify)
        .unify()
        .or(deploy_service)
        .unify()
        .or(jobs)
        .unify()
        .or(job)
        .unify()
        .or(metrics)
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
}

#[cfg(test)]
mod tests;
