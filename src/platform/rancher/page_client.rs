//! The connections that read collection pages, with bounded read buffers.
//!
//! hyper grows a connection's read buffer while reads keep filling it, up to about 400 KiB,
//! and a page that arrives faster than it is decoded fills every read; with the body's last
//! chunk still held, a second buffer is taken. Eight pages read at once then held more than
//! 6 MiB of buffers. These connections keep theirs to [`READ_BUFFER`], which reqwest offers
//! no way to set: they are made by hyper's own client, with the TLS setup of every other
//! connection to Rancher.

use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use secrecy::ExposeSecret;
use url::Url;

use super::RancherError;
use super::client::{MAX_ERROR_ANSWER, USER_AGENT, answer_error, redirected};
use super::error::BoxError;
use crate::config::RancherSettings;

/// Largest read buffer of a page connection. Reads this large cost no measurable time
/// against decoding what they bring.
const READ_BUFFER: usize = 64 << 10;

/// Time a connection idles before TCP checks that its peer is still there, and between two
/// checks.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Connections to Rancher for collection pages.
#[derive(Clone)]
pub(super) struct PageClient {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    /// `Basic <access:secret>`, marked sensitive.
    authorization: HeaderValue,
}

impl PageClient {
    /// A pool keeping at most `max_idle` idle connections, connecting with `tls`.
    pub fn new(
        settings: &RancherSettings,
        mut tls: rustls::ClientConfig,
        max_idle: usize,
    ) -> Result<Self, RancherError> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(connect_timeout(settings)));
        // As reqwest does: a pooled connection that a firewall dropped is found out.
        tcp.set_keepalive(Some(KEEPALIVE));
        tcp.set_keepalive_interval(Some(KEEPALIVE));
        // hyper-rustls offers the protocols itself (http/1.1 here).
        tls.alpn_protocols.clear();
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(max_idle)
            .http1_max_buf_size(READ_BUFFER)
            .build(connector);
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            settings.access_key,
            settings.secret_key.expose_secret()
        ));
        let mut authorization =
            HeaderValue::try_from(format!("Basic {credentials}")).map_err(|error| {
                RancherError::Transport {
                    what: "setting up the Rancher credentials".into(),
                    source: Box::new(error),
                }
            })?;
        authorization.set_sensitive(true);
        Ok(Self {
            client,
            authorization,
        })
    }

    /// GETs `url`: its body when the answer is a 2xx, else the error it means.
    pub async fn get(&self, url: &Url, what: &str) -> Result<Incoming, RancherError> {
        let transport = |error: BoxError| RancherError::Transport {
            what: what.to_owned(),
            source: error,
        };
        let uri: Uri = url
            .as_str()
            .parse()
            .map_err(|error| transport(Box::new(error)))?;
        let request = Request::get(uri)
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, USER_AGENT)
            .body(Empty::new())
            .map_err(|error| transport(Box::new(error)))?;
        let response: Response<Incoming> = self
            .client
            .request(request)
            .await
            .map_err(|error| transport(Box::new(error)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response.into_body());
        }
        if status.is_redirection() {
            return Err(redirected(what, response.headers()));
        }
        let body = read_at_most(response.into_body(), MAX_ERROR_ANSWER)
            .await
            .map_err(|error| transport(Box::new(error)))?;
        Err(answer_error(what, status.as_u16(), body))
    }
}

/// Reads the body of an error answer, keeping at most `limit` bytes (`None` past that:
/// only the status counts then).
async fn read_at_most(mut body: Incoming, limit: usize) -> Result<Option<Vec<u8>>, hyper::Error> {
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(chunk) = frame?.into_data() {
            if kept.len() + chunk.len() > limit {
                return Ok(None);
            }
            kept.extend_from_slice(&chunk);
        }
    }
    Ok(Some(kept))
}

/// Bound on opening a connection: the request timeout, at most 10 s.
pub(super) fn connect_timeout(settings: &RancherSettings) -> Duration {
    settings.request_timeout.min(Duration::from_secs(10))
}
