//! `GET /metrics` for Prometheus, behind its own key, and the count of every answer of the
//! push routes.

use std::net::SocketAddr;

use warp::http::{HeaderMap, Method, StatusCode, header};
use warp::reply::{Reply, Response};

use super::{Intake, error_reply, limiter, method_not_allowed};
use crate::domain::SourceKind;
use crate::events::metrics::CONTENT_TYPE;

/// Marks an answer `202` that ignored the delivery, for the count of answers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ignored;

impl Intake {
    /// Counts `answer` of a push route of `source`, and passes it on.
    pub(super) fn count_push(&self, source: SourceKind, answer: Response) -> Response {
        let label = match answer.status() {
            StatusCode::ACCEPTED if answer.extensions().get::<Ignored>().is_some() => "ignored",
            StatusCode::ACCEPTED => "accepted",
            status => answer_label(status),
        };
        self.metrics.push_answered(source, label);
        answer
    }

    /// The metrics, to a caller with `Authorization: Bearer <AUTOREDEPLOY_METRICS_KEY>`;
    /// `404` while that key is unset.
    pub(super) async fn metrics(
        &self,
        method: Method,
        headers: &HeaderMap,
        remote: Option<SocketAddr>,
    ) -> Response {
        let Some(key) = &self.metrics_key else {
            return error_reply(
                StatusCode::NOT_FOUND,
                "not_found",
                "metrics are off; set AUTOREDEPLOY_METRICS_KEY to turn them on",
            );
        };
        if method != Method::GET && method != Method::HEAD {
            return method_not_allowed("GET, HEAD");
        }
        let client = limiter::client_address(remote, headers, &self.trusted_proxies);
        let authorized = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|candidate| key.verify(candidate));
        if let Some(refusal) = self.judge_caller_with(&self.metrics_limiter, client, authorized) {
            return refusal;
        }
        let depth = match self.journal.queue_depth().await {
            Ok(depth) => depth,
            Err(error) => {
                tracing::error!(%error, "cannot read the queue's depth for /metrics");
                return error_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "journal_unreadable",
                    "the journal cannot be read",
                );
            }
        };
        warp::reply::with_header(
            self.metrics.encode(depth),
            header::CONTENT_TYPE,
            CONTENT_TYPE,
        )
        .into_response()
    }
}

/// The label of a refusal's status: its code, from a closed set.
fn answer_label(status: StatusCode) -> &'static str {
    const CODES: [&str; 14] = [
        "200", "400", "401", "403", "404", "405", "408", "409", "413", "415", "422", "429", "500",
        "503",
    ];
    let code = status.as_str();
    match CODES.iter().find(|known| **known == code) {
        Some(known) => known,
        None if status.is_client_error() => "4xx",
        None => "5xx",
    }
}
