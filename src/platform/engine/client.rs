//! The Engine API client: versioned requests over the connections of `DOCKER_HOST`.
//!
//! Every path carries the API version negotiated with the engine (`/v1.41/containers/…`):
//! an unversioned path gets the engine's own newest version, whose answers may be shaped
//! differently from what this client was written for.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use super::EngineError;
use super::connection::Connector;
use super::version::ApiVersion;
use crate::config::{EngineEndpoint, EngineSettings};
use crate::events::metrics::{PlatformCalls, status_class};

/// Largest answer read whole (a container list of a busy host, an inspect).
const MAX_ANSWER: usize = 32 << 20;

/// Largest part of an error answer kept for its message.
const MAX_ERROR_ANSWER: usize = 64 << 10;

/// Time allowed for an ordinary request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Time a pull may go without a word from the engine.
const PULL_SILENCE: Duration = Duration::from_secs(300);

/// One request to the engine.
pub struct Call<'a> {
    /// What the request does, for messages (`"inspecting container web"`).
    pub what: &'a str,
    /// The method.
    pub method: Method,
    /// The path and query, without the version (`/containers/json?all=1`).
    pub path: &'a str,
    /// A body, JSON unless `content_type` says otherwise.
    pub body: Option<Vec<u8>>,
    /// The body's media type.
    pub content_type: &'static str,
    /// `X-Registry-Auth`, for pulls and registry queries.
    pub registry_auth: Option<&'a SecretString>,
    /// Time allowed for the whole request.
    pub timeout: Duration,
}

impl<'a> Call<'a> {
    /// A `GET` of `path`.
    pub fn get(what: &'a str, path: &'a str) -> Self {
        Self {
            what,
            method: Method::GET,
            path,
            body: None,
            content_type: "application/json",
            registry_auth: None,
            timeout: REQUEST_TIMEOUT,
        }
    }

    /// A `POST` of `path` without a body.
    pub fn post(what: &'a str, path: &'a str) -> Self {
        Self {
            method: Method::POST,
            ..Self::get(what, path)
        }
    }

    /// A `DELETE` of `path`.
    pub fn delete(what: &'a str, path: &'a str) -> Self {
        Self {
            method: Method::DELETE,
            ..Self::get(what, path)
        }
    }

    /// The same call with `body` serialised as JSON.
    pub fn json(mut self, body: &impl serde::Serialize) -> Self {
        self.body = Some(serde_json::to_vec(body).unwrap_or_default());
        self
    }

    /// The same call with `tar` as its body (a build context, an image's root).
    pub fn tar(mut self, tar: Vec<u8>) -> Self {
        self.body = Some(tar);
        self.content_type = "application/x-tar";
        self
    }

    /// The same call with another time allowed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same call with registry credentials.
    pub fn registry_auth(mut self, auth: Option<&'a SecretString>) -> Self {
        self.registry_auth = auth;
        self
    }
}

/// A client of one engine, cheap to clone.
#[derive(Clone)]
pub struct EngineClient {
    inner: Arc<Inner>,
}

struct Inner {
    connector: Connector,
    /// Where each request is counted.
    calls: PlatformCalls,
    /// The version negotiated at the first request that reached the engine, or again
    /// once the engine refused it.
    version: Mutex<Option<ApiVersion>>,
}

impl Inner {
    fn version(&self) -> std::sync::MutexGuard<'_, Option<ApiVersion>> {
        self.version.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for EngineClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineClient")
            .field("address", &self.inner.connector.address())
            .field("version", &*self.inner.version())
            .finish()
    }
}

impl EngineClient {
    /// A client of the engine of `settings`; fails only if its TLS files cannot be used.
    pub fn new(settings: &EngineSettings) -> Result<Self, EngineError> {
        Self::counted(settings, PlatformCalls::default())
    }

    /// A client of the engine of `settings` that counts its requests in `calls`.
    pub fn counted(settings: &EngineSettings, calls: PlatformCalls) -> Result<Self, EngineError> {
        Ok(Self {
            inner: Arc::new(Inner {
                connector: Connector::new(settings)?,
                calls,
                version: Mutex::new(None),
            }),
        })
    }

    /// A client of the engine of `settings`, counting its requests in `calls`, which has
    /// been asked its API version. An engine that cannot be used (no socket there, an
    /// error answer, too old) is an error; one on TCP that does not answer is asked again
    /// at its first use.
    pub async fn at_start(
        settings: &EngineSettings,
        calls: PlatformCalls,
    ) -> Result<Self, EngineError> {
        let client = Self::counted(settings, calls)?;
        match client.version().await {
            Ok(_) => Ok(client),
            Err(error @ EngineError::Unreachable { .. })
                if matches!(settings.endpoint, EngineEndpoint::Tcp { .. }) =>
            {
                tracing::warn!(%error, "the Docker Engine does not answer yet; asking again at the first push");
                Ok(client)
            }
            Err(error) => Err(error),
        }
    }

    /// `DOCKER_HOST`, as given.
    pub fn address(&self) -> &str {
        self.inner.connector.address()
    }

    /// The API version used with the engine, asked of it at the first call.
    pub async fn version(&self) -> Result<ApiVersion, EngineError> {
        if let Some(version) = *self.inner.version() {
            return Ok(version);
        }
        let version = self.negotiate().await?;
        *self.inner.version() = Some(version);
        Ok(version)
    }

    /// Sends `call` in the version in use. An engine replaced meanwhile by one that no
    /// longer speaks it (Docker 29.0 refuses versions before 1.44) answers `400`: it is
    /// asked again which versions it speaks, and the call is sent once more.
    async fn send_versioned(&self, call: &Call<'_>) -> Result<Response<Incoming>, EngineError> {
        let version = self.version().await?;
        let answer = self.send(call, format!("/v{version}{}", call.path)).await?;
        if answer.status() != StatusCode::BAD_REQUEST {
            return Ok(answer);
        }
        match read_answer(call, answer).await {
            Err(EngineError::Answer { message, .. }) if message.contains("client version") => {
                *self.inner.version() = None;
                let version = self.version().await?;
                tracing::info!(
                    %version,
                    "the Docker Engine refused the API version in use; it is spoken to in this one now"
                );
                self.send(call, format!("/v{version}{}", call.path)).await
            }
            Err(error) => Err(error),
            Ok(_) => Err(EngineError::Unreadable {
                what: call.what.to_owned(),
                reason: "an error status with an answer read as a success".into(),
            }),
        }
    }

    /// Asks the engine which API versions it speaks, on the one path every version serves
    /// unversioned.
    async fn negotiate(&self) -> Result<ApiVersion, EngineError> {
        #[derive(serde::Deserialize)]
        struct Version {
            #[serde(rename = "ApiVersion")]
            api_version: String,
        }
        let call = Call::get("asking the engine's version", "/version");
        let answer = self.send(&call, "/version".to_owned()).await?;
        let body = read_answer(&call, answer).await?;
        let version: Version = decode(&call, &body)?;
        let engine =
            ApiVersion::parse(&version.api_version).ok_or_else(|| EngineError::Unreadable {
                what: call.what.to_owned(),
                reason: format!("`{}` is not an API version", version.api_version),
            })?;
        ApiVersion::negotiate(engine).ok_or_else(|| EngineError::TooOld {
            address: self.address().to_owned(),
            engine: engine.to_string(),
            oldest: ApiVersion::OLDEST.to_string(),
        })
    }

    /// Makes `call`, and returns its answer's body once the engine accepted it (any `2xx`,
    /// and `304` for a container already started or stopped).
    pub async fn call(&self, call: Call<'_>) -> Result<Bytes, EngineError> {
        let answer = self.send_versioned(&call).await?;
        let timeout = call.timeout;
        tokio::time::timeout(timeout, read_answer(&call, answer))
            .await
            .map_err(|_| timed_out(&call))?
    }

    /// Makes `call` and decodes its answer as JSON.
    pub async fn json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, EngineError> {
        let what = call.what.to_owned();
        let body = self.call(call).await?;
        serde_json::from_slice(&body).map_err(|error| EngineError::Unreadable {
            what,
            reason: error.to_string(),
        })
    }

    /// Makes `call`, one whose answer is a stream of progress messages (a pull, a push, a
    /// build), and reads them to their end: the call failed if any carries an `error`.
    pub async fn follow_progress(&self, call: Call<'_>) -> Result<(), EngineError> {
        let answer = self.send_versioned(&call).await?;
        if !answer.status().is_success() {
            return Err(read_answer(&call, answer).await.err().unwrap_or_else(|| {
                EngineError::Unreadable {
                    what: call.what.to_owned(),
                    reason: "an error status with an answer read as a success".into(),
                }
            }));
        }
        let mut body = answer.into_body();
        let mut line = Vec::new();
        loop {
            let frame = tokio::time::timeout(PULL_SILENCE, body.frame())
                .await
                .map_err(|_| EngineError::Timeout {
                    what: format!("{} (no progress)", call.what),
                    seconds: PULL_SILENCE.as_secs(),
                })?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|error| self.dropped(&error))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            for &byte in data.iter() {
                if byte == b'\n' {
                    pull_message(&call, &line)?;
                    line.clear();
                } else if line.len() < MAX_ERROR_ANSWER {
                    line.push(byte);
                }
            }
        }
        pull_message(&call, &line)
    }

    /// Sends `call` to `uri`, waiting at most its time for the answer's head.
    async fn send(&self, call: &Call<'_>, uri: String) -> Result<Response<Incoming>, EngineError> {
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(call.timeout, self.send_now(call, uri)).await;
        let result = match &answer {
            Ok(Ok(response)) => status_class(response.status().as_u16()),
            Ok(Err(_)) => "error",
            Err(_) => "timeout",
        };
        let kind = || request_kind(&call.method, call.path);
        self.inner.calls.observe(kind, result, started);
        answer.map_err(|_| timed_out(call))?
    }

    async fn send_now(
        &self,
        call: &Call<'_>,
        uri: String,
    ) -> Result<Response<Incoming>, EngineError> {
        let stream = self.inner.connector.connect().await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|error| self.dropped(&error))?;
        tokio::spawn(async move {
            // The connection ends with its request; its errors reach the request.
            let _ = connection.await;
        });
        let mut request = Request::builder()
            .method(call.method.clone())
            .uri(uri)
            .header(header::HOST, "docker")
            .header(header::USER_AGENT, USER_AGENT);
        if call.body.is_some() {
            request = request.header(header::CONTENT_TYPE, call.content_type);
        }
        if let Some(auth) = call.registry_auth {
            let mut value = HeaderValue::from_str(auth.expose_secret()).map_err(|_| {
                EngineError::Unreadable {
                    what: call.what.to_owned(),
                    reason: "the registry credentials cannot be sent in a header".into(),
                }
            })?;
            value.set_sensitive(true);
            request = request.header("X-Registry-Auth", value);
        }
        let body = Full::new(Bytes::from(call.body.clone().unwrap_or_default()));
        let request = request
            .body(body)
            .map_err(|error| EngineError::Unreadable {
                what: call.what.to_owned(),
                reason: error.to_string(),
            })?;
        sender
            .send_request(request)
            .await
            .map_err(|error| self.dropped(&error))
    }

    /// The error of a connection that broke. With TLS 1.3 the engine refuses a client
    /// certificate only after the client's side of the handshake: the refusal then
    /// arrives as the answer to the first request, and is no reason to wait.
    fn dropped(&self, error: &hyper::Error) -> EngineError {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(error) = cause {
            let tls = error.downcast_ref::<rustls::Error>().or_else(|| {
                error
                    .downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            });
            if let Some(tls) = tls {
                return EngineError::Handshake {
                    address: self.address().to_owned(),
                    reason: tls.to_string(),
                };
            }
            cause = error.source();
        }
        EngineError::Unreachable {
            address: self.address().to_owned(),
            reason: error.to_string(),
        }
    }
}

/// The kind of a request, for the metrics: its method and its path as a template, such as
/// `POST /containers/{id}/start`. Only names from closed sets appear in it.
fn request_kind(method: &Method, path: &str) -> String {
    const RESOURCES: [&str; 10] = [
        "containers",
        "images",
        "services",
        "tasks",
        "distribution",
        "networks",
        "info",
        "version",
        "build",
        "nodes",
    ];
    const ACTIONS: [&str; 16] = [
        "json",
        "create",
        "start",
        "stop",
        "kill",
        "restart",
        "rename",
        "wait",
        "update",
        "connect",
        "disconnect",
        "push",
        "tag",
        "load",
        "logs",
        "prune",
    ];
    let path = path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut kind = format!("{method} /");
    let Some((first, rest)) = segments.split_first() else {
        return kind;
    };
    kind.push_str(
        RESOURCES
            .iter()
            .find(|r| *r == first)
            .copied()
            .unwrap_or("other"),
    );
    if let Some((last, middle)) = rest.split_last() {
        if !middle.is_empty() || !ACTIONS.contains(last) {
            kind.push_str("/{id}");
        }
        if ACTIONS.contains(last) {
            kind.push('/');
            kind.push_str(last);
        }
    }
    kind
}

/// How autoredeploy introduces itself to the engine.
const USER_AGENT: &str = concat!("autoredeploy/", env!("CARGO_PKG_VERSION"));

fn timed_out(call: &Call<'_>) -> EngineError {
    EngineError::Timeout {
        what: call.what.to_owned(),
        seconds: call.timeout.as_secs(),
    }
}

/// Reads an answer's body; an error status becomes [`EngineError::Answer`] with the
/// engine's `message`.
async fn read_answer(call: &Call<'_>, answer: Response<Incoming>) -> Result<Bytes, EngineError> {
    let status = answer.status();
    let accepted = status.is_success() || status == StatusCode::NOT_MODIFIED;
    let limit = if accepted {
        MAX_ANSWER
    } else {
        MAX_ERROR_ANSWER
    };
    let body = match Limited::new(answer.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if accepted => {
            return Err(EngineError::Unreadable {
                what: call.what.to_owned(),
                reason: error.to_string(),
            });
        }
        Err(_) => Bytes::new(),
    };
    if accepted {
        return Ok(body);
    }
    Err(EngineError::Answer {
        what: call.what.to_owned(),
        status,
        message: message_of(&body),
    })
}

/// The `message` of an engine's error answer, or the start of the answer.
fn message_of(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorAnswer {
        message: String,
    }
    match serde_json::from_slice::<ErrorAnswer>(body) {
        Ok(answer) => answer.message,
        Err(_) => crate::domain::excerpt(&String::from_utf8_lossy(body)),
    }
}

fn decode<T: DeserializeOwned>(call: &Call<'_>, body: &[u8]) -> Result<T, EngineError> {
    serde_json::from_slice(body).map_err(|error| EngineError::Unreadable {
        what: call.what.to_owned(),
        reason: error.to_string(),
    })
}

/// One line of a pull's progress: an error ends the pull.
fn pull_message(call: &Call<'_>, line: &[u8]) -> Result<(), EngineError> {
    #[derive(serde::Deserialize)]
    struct Progress {
        error: Option<String>,
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match serde_json::from_slice::<Progress>(line) {
        Ok(Progress { error: Some(error) }) => Err(EngineError::Answer {
            what: call.what.to_owned(),
            status: StatusCode::OK,
            message: error,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_kinds_are_templates_without_names() {
        for (method, path, kind) in [
            (
                Method::GET,
                "/containers/json?all=1",
                "GET /containers/json",
            ),
            (
                Method::GET,
                "/containers/web-1/json",
                "GET /containers/{id}/json",
            ),
            (
                Method::POST,
                "/containers/create?name=web",
                "POST /containers/create",
            ),
            (
                Method::DELETE,
                "/containers/abc?force=1",
                "DELETE /containers/{id}",
            ),
            (
                Method::GET,
                "/distribution/ghcr.io/me/app:1/json",
                "GET /distribution/{id}/json",
            ),
            (
                Method::POST,
                "/services/s1/update?version=3",
                "POST /services/{id}/update",
            ),
            (Method::GET, "/secret-place/x", "GET /other/{id}"),
            (Method::GET, "/version", "GET /version"),
        ] {
            assert_eq!(request_kind(&method, path), kind, "{path}");
        }
    }
}
