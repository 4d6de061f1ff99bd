use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use reqwest::{Method, header};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Semaphore, SemaphorePermit};
use url::Url;

use http_body_util::BodyExt;

use super::collection::{CollectionSplitter, MAX_ENTRY};
use super::page_client::{PageClient, connect_timeout};
use super::wire::{PageEnd, Service, SkippedEntry, decode_entry};
use super::{RancherError, ServiceState, tls};
use crate::config::RancherSettings;
use crate::events::metrics::{PlatformCalls, status_class};

/// Page size asked for: Rancher ≥ 1.3 clamps to 3000 and says so in `pagination.limit`.
pub const PAGE_SIZE: u32 = 3000;

/// Largest answer read for one resource (a service, a few kilobytes): the same bound as one
/// entry of a collection page. A longer answer fails the request unread past that point.
const MAX_RESOURCE_ANSWER: usize = MAX_ENTRY;

/// Most of an error answer read (Rancher's are a few hundred bytes); a longer one is cut and
/// the error keeps only its status.
pub(super) const MAX_ERROR_ANSWER: usize = 64 << 10;

/// The `User-Agent` of every request.
pub(super) const USER_AGENT: &str = concat!("autoredeploy/", env!("CARGO_PKG_VERSION"));

/// Idle connections kept for collection pages between reads: one, so that a push or a poll
/// does not open a connection, while the walk's other connections close with their buffers.
const IDLE_LIST_CONNECTIONS: usize = 1;

/// First pause before a retry; later ones grow exponentially, with jitter.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);

/// A Rancher API client bound to one service collection, with HTTP Basic credentials.
///
/// Requests are made to URLs built from `RANCHER_HOST`, never to links taken from responses,
/// so the credentials only ever go to the configured host. Redirects are not followed.
#[derive(Clone)]
pub struct RancherClient {
    /// Connections for single services and actions, whose answers are a few kilobytes.
    http: reqwest::Client,
    /// Connections for collection pages, with bounded read buffers.
    lists: PageClient,
    /// Where each request is counted.
    calls: PlatformCalls,
    /// `<base>/projects/<id>/services` or `<base>/services`.
    services_url: Url,
    /// Basic auth user name.
    access_key: String,
    /// Basic auth password.
    secret_key: SecretString,
    /// Pages of the service collection read at the same time.
    list_window: usize,
    /// Bound on reading one page whole (`RANCHER_REQUEST_TIMEOUT_S`).
    page_timeout: Duration,
    /// One permit per request in flight, so a burst of upgrades or polls never opens more
    /// connections to Rancher than this.
    requests: Arc<Semaphore>,
    /// Retries of one request on transport errors, timeouts, 409 and 5xx.
    retry: ExponentialBuilder,
}

impl RancherClient {
    /// Creates a client; fails only if the TLS setup cannot be built.
    pub fn new(settings: &RancherSettings) -> Result<Self, RancherError> {
        let tls = tls::client_config(settings)?;
        let http = http_client(settings, tls.clone())?;
        let lists = PageClient::new(settings, tls, IDLE_LIST_CONNECTIONS)?;
        Ok(Self {
            http,
            lists,
            calls: PlatformCalls::default(),
            services_url: settings.services_url.clone(),
            access_key: settings.access_key.clone(),
            secret_key: settings.secret_key.clone(),
            list_window: settings.list_window,
            page_timeout: settings.request_timeout,
            requests: Arc::new(Semaphore::new(settings.max_requests)),
            retry: ExponentialBuilder::new()
                .with_jitter()
                .with_min_delay(FIRST_RETRY_DELAY.min(settings.retry.max_delay))
                .with_max_delay(settings.retry.max_delay)
                .with_max_times(settings.retry.attempts)
                .with_total_delay(Some(settings.retry.total)),
        })
    }

    /// The same client, counting its requests in `calls`.
    pub fn counted(mut self, calls: PlatformCalls) -> Self {
        self.calls = calls;
        self
    }

    /// The kind of a request to `url`, for the metrics: `GET /services` for a page of the
    /// collection, `GET /services/{id}` for a service, `POST /services/{id}?action=upgrade`
    /// for an action. Only names from closed sets appear in it.
    fn request_kind(&self, method: &Method, url: &Url) -> String {
        const ACTIONS: [&str; 4] = ["upgrade", "finishupgrade", "rollback", "cancelupgrade"];
        if url.path().trim_end_matches('/') == self.services_url.path().trim_end_matches('/') {
            return format!("{method} /services");
        }
        let action = url
            .query_pairs()
            .find(|(name, _)| name == "action")
            .map(|(_, action)| {
                ACTIONS
                    .iter()
                    .find(|known| **known == action)
                    .map_or("?action=other".to_owned(), |known| {
                        format!("?action={known}")
                    })
            });
        format!("{method} /services/{{id}}{}", action.unwrap_or_default())
    }

    /// How many pages of the service collection may be read at the same time
    /// (`RANCHER_LIST_CONCURRENCY`).
    pub fn list_window(&self) -> usize {
        self.list_window
    }

    /// Reads one page of the service collection (the first one when `marker` is `None`)
    /// entry by entry as it arrives, handing each to `entry`: a service, or an entry that
    /// could not be read. Only one entry is held at a time, whatever the page size.
    ///
    /// A page whose reading fails is read again from its start: `entry` is also given each
    /// entry's position in the page, which tells an entry seen before.
    pub async fn list_page(
        &self,
        marker: Option<&str>,
        mut entry: impl FnMut(usize, Result<Service, SkippedEntry>),
    ) -> Result<PageEnd, RancherError> {
        self.list_entries(&[], marker, |position, raw| {
            entry(position, decode_entry(raw))
        })
        .await
    }

    /// Reads one page of the service collection narrowed by collection `filters` (such as
    /// `("state_ne", "active")`), handing each entry's JSON to `entry` as it arrives, with
    /// its position in the page; a page whose reading fails is read again from its start.
    pub async fn list_entries(
        &self,
        filters: &[(&str, &str)],
        marker: Option<&str>,
        mut entry: impl FnMut(usize, &[u8]),
    ) -> Result<PageEnd, RancherError> {
        let mut url = self.services_url.clone();
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in filters {
                query.append_pair(name, value);
            }
            query.append_pair("limit", &PAGE_SIZE.to_string());
            if let Some(marker) = marker {
                query.append_pair("marker", marker);
            }
        }
        let what = match marker {
            Some(marker) => format!("listing services from {marker}"),
            None => "listing services".to_owned(),
        };
        let mut attempts = self.attempts(&what);
        loop {
            let in_flight = self.request_slot().await;
            // Bounded from the moment the request can go out, as every other request is.
            let read = async {
                let started = std::time::Instant::now();
                let answer = self.lists.get(&url, &what).await;
                let kind = || self.request_kind(&Method::GET, &url);
                self.calls.observe(kind, result_of(&answer), started);
                let mut body = answer?;
                let mut splitter = CollectionSplitter::new();
                let mut position = 0;
                let mut hand_out = |raw: &[u8]| {
                    entry(position, raw);
                    position += 1;
                };
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|source| RancherError::Transport {
                        what: what.clone(),
                        source: Box::new(source),
                    })?;
                    if let Ok(chunk) = frame.into_data() {
                        splitter
                            .feed(&chunk, &mut hand_out)
                            .map_err(|reason| decode(&what, reason))?;
                    }
                }
                let pagination = splitter.finish().map_err(|reason| decode(&what, reason))?;
                PageEnd::decode(pagination.as_deref()).map_err(|reason| decode(&what, reason))
            };
            let read = tokio::time::timeout(self.page_timeout, read)
                .await
                .unwrap_or_else(|_| {
                    Err(RancherError::Transport {
                        what: what.clone(),
                        source: format!(
                            "the page was not read whole within {} s (RANCHER_REQUEST_TIMEOUT_S)",
                            self.page_timeout.as_secs()
                        )
                        .into(),
                    })
                });
            drop(in_flight);
            match read {
                Err(error) if attempts.again_after(&error).await => {}
                done => return done,
            }
        }
    }

    // The calls below box their requests: an async caller is as large as its largest
    // await, and a thousand services in flight each hold theirs for the whole upgrade.

    /// Reads one service.
    pub async fn service(&self, id: &str) -> Result<Service, RancherError> {
        Box::pin(self.read(id, Service::decode)).await
    }

    /// Reads one service's state, without its launch configs.
    pub async fn service_state(&self, id: &str) -> Result<ServiceState, RancherError> {
        Box::pin(self.read(id, ServiceState::decode)).await
    }

    /// Reads one service and decodes it with `decode`.
    async fn read<T>(
        &self,
        id: &str,
        decode: fn(&[u8]) -> Result<T, String>,
    ) -> Result<T, RancherError> {
        let what = format!("reading service {id}");
        let body = self
            .send(
                Method::GET,
                self.service_url(id),
                None,
                &what,
                &AtomicBool::new(false),
            )
            .await?;
        decode(&body).map_err(|reason| RancherError::Decode { what, reason })
    }

    /// Starts an in-service upgrade with `body`, an encoded
    /// [`UpgradeRequest`](super::UpgradeRequest). Rancher answers with the service, already
    /// `upgrading`.
    pub async fn upgrade(&self, id: &str, body: Vec<u8>) -> Result<ServiceState, RancherError> {
        Box::pin(self.action(id, "upgrade", body)).await
    }

    /// Completes an upgrade that reached `upgraded`: old containers are removed.
    pub async fn finish_upgrade(&self, id: &str) -> Result<ServiceState, RancherError> {
        Box::pin(self.action(id, "finishupgrade", b"{}".to_vec())).await
    }

    /// Rolls a failed upgrade back to the previous launch config.
    pub async fn rollback(&self, id: &str) -> Result<ServiceState, RancherError> {
        Box::pin(self.action(id, "rollback", b"{}".to_vec())).await
    }

    /// Cancels an upgrade in progress; the service ends in `canceled-upgrade`.
    pub async fn cancel_upgrade(&self, id: &str) -> Result<ServiceState, RancherError> {
        Box::pin(self.action(id, "cancelupgrade", b"{}".to_vec())).await
    }

    async fn action(
        &self,
        id: &str,
        action: &str,
        body: Vec<u8>,
    ) -> Result<ServiceState, RancherError> {
        let mut url = self.service_url(id);
        if let Ok(mut segments) = url.path_segments_mut() {
            // Rancher's own action links end the path with a slash: `…/1s6/?action=upgrade`.
            segments.push("");
        }
        url.query_pairs_mut().append_pair("action", action);
        let what = format!("posting {action} for service {id}");
        let retried = AtomicBool::new(false);
        let answer = self
            .send(Method::POST, url, Some(body), &what, &retried)
            .await;
        match answer {
            Ok(answer) => ServiceState::decode(&answer)
                .map_err(|reason| RancherError::Decode { what, reason }),
            // An earlier attempt may have been applied with only its answer lost (a proxy's
            // 504, a dropped connection): the action is then no longer available. The service
            // as it is now tells the caller where things stand.
            Err(error)
                if retried.load(Ordering::Relaxed)
                    && error.code() == Some("ActionNotAvailable") =>
            {
                tracing::info!(
                    service_id = id,
                    action,
                    "the action is no longer available after a retry; reading the service to see whether an earlier attempt was applied"
                );
                self.service_state(id).await
            }
            Err(error) => Err(error),
        }
    }

    fn service_url(&self, id: &str) -> Url {
        let mut url = self.services_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(id);
        }
        url
    }

    /// Sends one request, retrying what may succeed later, and returns the body of a 2xx.
    /// `retried` is set when more than one attempt was made.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        what: &str,
        retried: &AtomicBool,
    ) -> Result<Vec<u8>, RancherError> {
        let mut attempts = self.attempts(what);
        loop {
            let in_flight = self.request_slot().await;
            // Boxed once a slot is held: requests queued for a slot stay small.
            let answer = Box::pin(async {
                let response = self.respond(&method, &url, body.as_deref(), what).await?;
                read_at_most(response, MAX_RESOURCE_ANSWER)
                    .await
                    .map_err(|error| match error {
                        BodyError::TooLarge => RancherError::TooLarge {
                            what: what.to_owned(),
                            limit: MAX_RESOURCE_ANSWER,
                        },
                        BodyError::Transport(source) => transport(what, source),
                    })
            })
            .await;
            drop(in_flight);
            match answer {
                Err(error) if attempts.again_after(&error).await => {
                    retried.store(true, Ordering::Relaxed);
                }
                done => return done,
            }
        }
    }

    /// Waits until fewer than `RANCHER_MAX_CONCURRENT_REQUESTS` requests are in flight.
    async fn request_slot(&self) -> SemaphorePermit<'_> {
        match self.requests.acquire().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("the request semaphore is never closed"),
        }
    }

    /// The retries of one request.
    fn attempts<'a>(&self, what: &'a str) -> Attempts<'a> {
        Attempts {
            pauses: self.retry.build(),
            what,
        }
    }

    /// Makes one attempt: the answer when it is a 2xx, else the error it means.
    async fn respond(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&[u8]>,
        what: &str,
    ) -> Result<reqwest::Response, RancherError> {
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .basic_auth(&self.access_key, Some(self.secret_key.expose_secret()))
            .header(header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let started = std::time::Instant::now();
        let sent = request.send().await;
        let result = match &sent {
            Ok(response) => status_class(response.status().as_u16()),
            Err(error) if error.is_timeout() => "timeout",
            Err(_) => "error",
        };
        self.calls
            .observe(|| self.request_kind(method, url), result, started);
        let response = sent.map_err(|source| transport(what, source))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status.is_redirection() {
            return Err(redirected(what, response.headers()));
        }
        let body = match read_at_most(response, MAX_ERROR_ANSWER).await {
            Ok(body) => Some(body),
            Err(BodyError::TooLarge) => None,
            Err(BodyError::Transport(source)) => return Err(transport(what, source)),
        };
        Err(answer_error(what, status.as_u16(), body))
    }
}

/// The result label of a page request's answer.
fn result_of<T>(answer: &Result<T, RancherError>) -> &'static str {
    match answer {
        Ok(_) => "2xx",
        Err(RancherError::Api { status, .. }) => status_class(*status),
        Err(_) => "error",
    }
}

/// The error of a redirect, which is never followed with the credentials.
pub(super) fn redirected(what: &str, headers: &header::HeaderMap) -> RancherError {
    RancherError::Redirect {
        what: what.to_owned(),
        location: headers
            .get(header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("an unnamed location")
            .to_owned(),
    }
}

/// The error of an answer that is neither a 2xx nor a redirect, from its error document
/// (`None` when it was too long to read).
pub(super) fn answer_error(what: &str, status: u16, body: Option<Vec<u8>>) -> RancherError {
    let body = body.unwrap_or_else(|| {
        // Cut: a Rancher error document is never this long, so only the status counts.
        tracing::debug!(
            what,
            status,
            "Rancher's error answer is longer than {} KiB; it was not read further",
            MAX_ERROR_ANSWER >> 10
        );
        Vec::new()
    });
    RancherError::from_response(what, status, &body)
}

/// The connection pool to Rancher for everything but collection pages, connecting with
/// `tls`.
fn http_client(
    settings: &RancherSettings,
    mut tls: rustls::ClientConfig,
) -> Result<reqwest::Client, RancherError> {
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.request_timeout)
        .connect_timeout(connect_timeout(settings))
        .pool_max_idle_per_host(settings.max_requests)
        // Rancher is reached directly, as the page connections reach it.
        .no_proxy()
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|source| transport("setting up the connections to Rancher", source))
}

/// Why an answer's body was not read whole.
enum BodyError {
    /// It is longer than the bound (as declared, or as it arrived).
    TooLarge,
    /// The connection failed while reading it.
    Transport(reqwest::Error),
}

/// Reads the body of `response` chunk by chunk, failing as soon as it is longer than `limit`
/// bytes (at once when its `Content-Length` says so), without reading further.
async fn read_at_most(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The pauses left between the attempts of one request.
struct Attempts<'a> {
    pauses: ExponentialBackoff,
    what: &'a str,
}

impl Attempts<'_> {
    /// After a failed attempt: waits and returns `true` when another one may succeed.
    async fn again_after(&mut self, error: &RancherError) -> bool {
        if !error.is_retryable() {
            return false;
        }
        let Some(pause) = self.pauses.next() else {
            return false;
        };
        tracing::warn!(error = %error, what = self.what, retry_in_ms = pause.as_millis() as u64, "Rancher request failed, retrying");
        tokio::time::sleep(pause).await;
        true
    }
}

fn transport(what: &str, source: reqwest::Error) -> RancherError {
    RancherError::Transport {
        what: what.to_owned(),
        source: Box::new(source.without_url()),
    }
}

fn decode(what: &str, reason: String) -> RancherError {
    RancherError::Decode {
        what: what.to_owned(),
        reason,
    }
}

impl std::fmt::Debug for RancherClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RancherClient")
            .field("services_url", &self.services_url.as_str())
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}
