//! Serves the routes over HTTP/1.1 within bounds a hostile client cannot push back: a cap
//! on connections, on the size and number of request headers, and on the time a client
//! may take to send a request head (or sit idle between requests).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_service::Service;
use warp::Filter;
use warp::reply::Response;

/// Largest request head (request line and headers); a larger one is answered `431`.
pub const HEADER_LIMIT: usize = 16 * 1024;

/// Most header fields in one request; more are answered `431`.
pub const MAX_HEADERS: usize = 64;

/// Pause after the listener fails to accept (usually: out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The address of the other end of the connection a request came on, put into each
/// request's extensions for the handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// Bounds on what clients may hold of the server.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Time a client has to send a request head, and longest idle time between requests.
    pub read_timeout: Duration,
}

/// Serves `routes` on `listener` until `stop` completes, then lets the requests in progress
/// end and closes the connections, waiting at most `close_within` for them.
pub async fn serve<F>(
    listener: TcpListener,
    routes: F,
    limits: ServerLimits,
    stop: impl Future<Output = ()>,
    close_within: Duration,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout)
        .max_header_size(HEADER_LIMIT)
        .max_headers(MAX_HEADERS);
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            accepted = accept_within(&listener, &slots) => accepted,
        };
        let (stream, peer, slot) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let service = warp::service(routes.clone());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(Peer(peer));
            service.clone().call(request)
        });
        let connection = connections.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(close_within, connections.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after the grace period are dropped at exit");
    }
}

/// Waits for a free connection slot, then for a connection.
async fn accept_within(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> std::io::Result<(
    tokio::net::TcpStream,
    SocketAddr,
    tokio::sync::OwnedSemaphorePermit,
)> {
    let slot = Arc::clone(slots)
        .acquire_owned()
        .await
        .expect("the connection semaphore is never closed");
    let (stream, peer) = listener.accept().await?;
    Ok((stream, peer, slot))
}
