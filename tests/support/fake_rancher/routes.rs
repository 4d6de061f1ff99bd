//! The HTTP front of the fake server: every request under `/v1` waits out the latency, may
//! be parked, is recorded, checked for the API key, possibly failed on purpose, and then
//! routed to the collection, a service, or an action.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;
use serde_json::Value;
use tokio::sync::oneshot;
use warp::Filter;
use warp::http::{HeaderMap, Method, StatusCode};

use super::collection::render;
use super::errors::{error, not_found};
use super::records::Recorded;
use super::store::World;
use super::{ACCESS_KEY, PROJECT_ID, SECRET_KEY};

/// Serves `world` on a free port of `127.0.0.1` until the returned sender is dropped.
pub(super) async fn serve(shared: Arc<Mutex<World>>) -> (SocketAddr, oneshot::Sender<()>) {
    let routes = warp::path("v1")
        .and(warp::path::tail())
        .and(warp::method())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .then(
            move |tail: warp::path::Tail,
                  method: Method,
                  query: String,
                  headers: HeaderMap,
                  body: warp::hyper::body::Bytes| {
                let shared = Arc::clone(&shared);
                async move {
                    let latency = {
                        let mut world = shared.lock().unwrap();
                        world.in_flight += 1;
                        world.most_in_flight = world.most_in_flight.max(world.in_flight);
                        world.behaviour.latency
                    };
                    if !latency.is_zero() {
                        tokio::time::sleep(latency).await;
                    }
                    shared.lock().unwrap().in_flight -= 1;
                    let parked = shared.lock().unwrap().faults.park(&method, &query);
                    if let Some(parked) = parked
                        && !parked.await.unwrap_or(false)
                    {
                        let (status, body) = as_bytes(error(
                            StatusCode::BAD_GATEWAY,
                            "BadGateway",
                            Some("dropped"),
                            None,
                        ));
                        return json_reply(status, body);
                    }
                    let mut world = shared.lock().unwrap();
                    let (status, body) =
                        world.handle(&method, tail.as_str(), &query, &headers, &body);
                    json_reply(status, body)
                }
            },
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(
        warp::serve(routes)
            .incoming(listener)
            .graceful(async {
                let _ = stopped.await;
            })
            .run(),
    );
    (address, stop)
}

impl World {
    /// Answers one request once its latency has passed: the status and the JSON body.
    fn handle(
        &mut self,
        method: &Method,
        tail: &str,
        query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> (StatusCode, Vec<u8>) {
        self.requests.push(Recorded {
            method: method.to_string(),
            path: format!("/v1/{tail}"),
            query: query.to_owned(),
            at: Instant::now(),
        });
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{ACCESS_KEY}:{SECRET_KEY}"))
        );
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
            return as_bytes(error(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                Some("Unauthorized"),
                None,
            ));
        }
        if let Some(failure) = self.faults.injected_failure(method) {
            return as_bytes(failure);
        }
        self.advance();
        let host = headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost")
            .to_owned();
        let base = format!("http://{host}");
        let project_prefix = format!("projects/{PROJECT_ID}/");
        let rest = tail.strip_prefix(&project_prefix).unwrap_or(tail);
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let answer = match (method.as_str(), segments.as_slice()) {
            ("GET", ["services"]) => {
                let page = self.list(&base, tail, query);
                self.after_list();
                return (StatusCode::OK, page);
            }
            ("GET", ["services", id]) => match self.index_of(id) {
                Some(index) => (StatusCode::OK, render(&self.services[index], &base)),
                None => not_found(),
            },
            ("POST", ["services", id]) => {
                let action = url::form_urlencoded::parse(query.as_bytes())
                    .find(|(k, _)| k == "action")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                let answer = match self.index_of(id) {
                    Some(index) => self.action(index, &action, body, &base),
                    None => not_found(),
                };
                if answer.1["code"] == "ActionNotAvailable" {
                    self.refusals += 1;
                }
                if answer.0 == StatusCode::ACCEPTED && self.faults.loses_answer() {
                    return as_bytes(error(
                        StatusCode::GATEWAY_TIMEOUT,
                        "GatewayTimeout",
                        Some("the answer was lost"),
                        None,
                    ));
                }
                answer
            }
            _ => not_found(),
        };
        as_bytes(answer)
    }
}

fn json_reply(status: StatusCode, body: Vec<u8>) -> warp::reply::Response {
    let mut response = warp::reply::Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    response
}

fn as_bytes((status, body): (StatusCode, Value)) -> (StatusCode, Vec<u8>) {
    (status, serde_json::to_vec(&body).unwrap())
}
