//! A local HTTP receiver standing in for Slack, Teams, Discord, a generic webhook or Docker
//! Hub's callback: it records every request and answers each with the next status of a
//! script (the last one repeating), on 127.0.0.1. A redirect points at `/followed`; the
//! status [`NEVER`] never answers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use warp::Filter;
use warp::http::{HeaderMap, StatusCode};

/// The status of a script that holds the request without ever answering.
pub const NEVER: u16 = 0;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// The path, with the query.
    pub path: String,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
    /// The status it was answered.
    pub answered: u16,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// A receiver on a port of its own answering `script`, one status per request.
    pub async fn start(script: &[u16]) -> Self {
        let (socket, _) = Self::reserve();
        Self::start_on(socket, script)
    }

    /// A port on 127.0.0.1 held without listening: connections to it are refused until a
    /// receiver is started on it.
    pub fn reserve() -> (tokio::net::TcpSocket, u16) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
        let port = socket.local_addr().unwrap().port();
        (socket, port)
    }

    /// A receiver listening on the `reserved` port.
    pub fn start_on(reserved: tokio::net::TcpSocket, script: &[u16]) -> Self {
        let port = reserved.local_addr().unwrap().port();
        let listener = reserved.listen(64).unwrap();
        let received = Arc::new(Mutex::new(Vec::<Received>::new()));
        let script = script.to_vec();
        let log = Arc::clone(&received);
        let route = warp::any()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(
                move |path: warp::path::FullPath, query: String, headers, body| {
                    let answered = {
                        let mut log = log.lock().unwrap();
                        let answered = script[log.len().min(script.len() - 1)];
                        let path = match query.is_empty() {
                            true => path.as_str().to_owned(),
                            false => format!("{}?{query}", path.as_str()),
                        };
                        log.push(Received {
                            path,
                            headers,
                            body: serde_json::from_slice(body_bytes(&body)).unwrap_or_default(),
                            answered,
                        });
                        answered
                    };
                    async move {
                        if answered == NEVER {
                            std::future::pending::<()>().await;
                        }
                        let status = StatusCode::from_u16(answered).unwrap();
                        warp::reply::with_header(
                            warp::reply::with_status("", status),
                            "location",
                            "/followed",
                        )
                    }
                },
            );
        let task = tokio::spawn(warp::serve(route).incoming(listener).run());
        Self {
            port,
            received,
            task,
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The requests to paths starting with `prefix`.
    pub fn received_at(&self, prefix: &str) -> Vec<Received> {
        let mut received = self.received();
        received.retain(|request| request.path.starts_with(prefix));
        received
    }

    /// Waits up to 30 s until `count` requests came to paths starting with `prefix`.
    pub async fn wait_for(&self, prefix: &str, count: usize) -> Vec<Received> {
        for _ in 0..300 {
            let received = self.received_at(prefix);
            if received.len() >= count {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{count} requests to {prefix} expected; got {:#?}",
            self.received_at(prefix)
        );
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn body_bytes(body: &impl AsRef<[u8]>) -> &[u8] {
    body.as_ref()
}
