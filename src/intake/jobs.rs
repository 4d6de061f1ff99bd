//! `GET /jobs` and `GET /jobs/{id}`: what happened to each push, from the journal.

use serde_json::json;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::{Reply, Response};

use std::net::SocketAddr;

use super::{Intake, error_reply, limiter, method_not_allowed};
use crate::journal::{JobId, UnitPage};

/// Jobs per page unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 20;
/// Most jobs per page.
const MAX_PAGE: usize = 200;
/// Units of a job shown at once unless `limit` says otherwise.
const DEFAULT_UNIT_PAGE: usize = 500;
/// Most units of a job shown at once.
const MAX_UNIT_PAGE: usize = 5000;

impl Intake {
    /// Recent jobs, newest first; `?limit=` and `?before=<job>` page through them.
    pub(super) async fn list_jobs(
        &self,
        method: Method,
        query: &str,
        headers: &HeaderMap,
        remote: Option<SocketAddr>,
    ) -> Response {
        if let Some(refusal) = self.refuse_read(&method, query, headers, remote) {
            return refusal;
        }
        let (limit, before) = match page_of(query) {
            Ok(page) => page,
            Err(message) => return error_reply(StatusCode::BAD_REQUEST, "bad_request", &message),
        };
        match self.journal.list_jobs(limit, before).await {
            Ok(jobs) => {
                let next = (jobs.len() == limit)
                    .then(|| {
                        jobs.last()
                            .map(|job| format!("/jobs?limit={limit}&before={}", job.id))
                    })
                    .flatten();
                warp::reply::json(&json!({ "jobs": jobs, "next": next })).into_response()
            }
            Err(error) => journal_error(&error),
        }
    }

    /// One job with a page of its units (`?limit=`, `?after=<seq>`), each with its steps.
    pub(super) async fn job(
        &self,
        id: &str,
        method: Method,
        query: &str,
        headers: &HeaderMap,
        remote: Option<SocketAddr>,
    ) -> Response {
        if let Some(refusal) = self.refuse_read(&method, query, headers, remote) {
            return refusal;
        }
        let Ok(number) = id.parse::<i64>() else {
            return error_reply(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no job {id:?}: job ids are numbers"),
            );
        };
        let page = match unit_page_of(query) {
            Ok(page) => page,
            Err(message) => return error_reply(StatusCode::BAD_REQUEST, "bad_request", &message),
        };
        match self.journal.job(JobId(number), page).await {
            Ok(Some(job)) => {
                // A full page may be followed by more units.
                let next = (job.units.len() == page.limit)
                    .then(|| job.units.last())
                    .flatten()
                    .map(|unit| format!("/jobs/{number}?limit={}&after={}", page.limit, unit.seq));
                let mut body = serde_json::to_value(&job).unwrap_or_default();
                body["next"] = json!(next);
                warp::reply::json(&body).into_response()
            }
            Ok(None) => error_reply(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!(
                    "no job {number} (it may have been pruned after AUTOREDEPLOY_HISTORY_DAYS)"
                ),
            ),
            Err(error) => journal_error(&error),
        }
    }
}

impl Intake {
    /// The answer for a history request that is not a read with the key, if it is not.
    fn refuse_read(
        &self,
        method: &Method,
        query: &str,
        headers: &HeaderMap,
        remote: Option<SocketAddr>,
    ) -> Option<Response> {
        if method != Method::GET && method != Method::HEAD {
            return Some(method_not_allowed("GET, HEAD"));
        }
        let client = limiter::client_address(remote, headers, &self.trusted_proxies);
        self.refuse_caller(client, query, headers)
    }
}

fn page_of(query: &str) -> Result<(usize, Option<JobId>), String> {
    let mut limit = DEFAULT_PAGE;
    let mut before = None;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| format!("limit must be a number from 1 to {MAX_PAGE}"))?;
            }
            "before" => {
                before = Some(JobId(
                    value
                        .parse()
                        .map_err(|_| "before must be a job id".to_owned())?,
                ));
            }
            _ => {}
        }
    }
    Ok((limit, before))
}

fn journal_error(error: &crate::journal::JournalError) -> Response {
    tracing::error!(%error, "cannot read the journal");
    error_reply(
        StatusCode::INTERNAL_SERVER_ERROR,
        "journal_unavailable",
        "the journal could not be read",
    )
}

/// `?limit=` and `?after=<unit number>` of a job's detail.
fn unit_page_of(query: &str) -> Result<UnitPage, String> {
    let mut page = UnitPage {
        limit: DEFAULT_UNIT_PAGE,
        after: None,
    };
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "limit" => {
                page.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_UNIT_PAGE).contains(n))
                    .ok_or_else(|| format!("limit must be a number from 1 to {MAX_UNIT_PAGE}"))?;
            }
            "after" => {
                page.after = Some(
                    value
                        .parse()
                        .map_err(|_| "after must be the seq of a unit".to_owned())?,
                );
            }
            _ => {}
        }
    }
    Ok(page)
}
