//! The counters behind `GET /metrics`, in the Prometheus text format (version 0.0.4),
//! which every Prometheus and `promtool check metrics` read.
//!
//! Label values come from closed sets (sources, answers, targets, ends, request kinds,
//! channels): no image name, unit name, URL or secret ever becomes a label, so the number
//! of series stays bounded whatever is pushed.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::{JobOutcome, UnitOutcome};
use crate::domain::SourceKind;
use crate::journal::Channel;

/// The media type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PushLabels {
    source: &'static str,
    answer: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UnitLabels {
    target: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    platform: &'static str,
    kind: String,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    platform: &'static str,
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NoticeLabels {
    channel: &'static str,
    result: &'static str,
}

/// Every metric of one running autoredeploy.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pushes: Family<PushLabels, Counter>,
    jobs: Family<OutcomeLabels, Counter>,
    units: Family<UnitLabels, Counter>,
    push_to_deployed: Family<TargetLabels, Histogram>,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<KindLabels, Histogram>,
    queue_depth: Gauge,
    notices: Family<NoticeLabels, Counter>,
}

/// Buckets of the time from a push to its last unit deployed: 1 s to about 1 h.
fn deploy_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
}

/// Buckets of a platform request's latency: 5 ms to about 80 s.
fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("autoredeploy");
        let pushes = Family::<PushLabels, Counter>::default();
        registry.register(
            "pushes",
            "Requests of the push routes, by sender and answer (accepted, ignored, or the \
             refusal's status code)",
            pushes.clone(),
        );
        let jobs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "jobs",
            "Jobs ended: changed (something upgraded, nothing failed), unchanged, or failed",
            jobs.clone(),
        );
        let units = Family::<UnitLabels, Counter>::default();
        registry.register("units", "Units ended, by target and end", units.clone());
        let push_to_deployed =
            Family::<TargetLabels, Histogram>::new_with_constructor(deploy_buckets as fn() -> _);
        registry.register(
            "push_to_deployed_seconds",
            "Time from a push to the end of the last of its units deployed on a target",
            push_to_deployed.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "platform_requests",
            "Requests to each platform, by kind and result",
            requests.clone(),
        );
        let request_seconds =
            Family::<KindLabels, Histogram>::new_with_constructor(request_buckets as fn() -> _);
        registry.register(
            "platform_request_duration_seconds",
            "Latency of the requests to each platform, by kind",
            request_seconds.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Jobs waiting to be started",
            queue_depth.clone(),
        );
        let notices = Family::<NoticeLabels, Counter>::default();
        registry.register(
            "notifications",
            "Notification and callback attempts, by channel and result (sent, failed, dropped)",
            notices.clone(),
        );
        Self {
            registry,
            pushes,
            jobs,
            units,
            push_to_deployed,
            requests,
            request_seconds,
            queue_depth,
            notices,
        }
    }
}

impl Metrics {
    /// Counts a request of a push route, answered `answer`.
    pub fn push_answered(&self, source: SourceKind, answer: &'static str) {
        self.pushes
            .get_or_create(&PushLabels {
                source: source.as_str(),
                answer,
            })
            .inc();
    }

    /// Counts a unit's end.
    pub fn unit_ended(&self, outcome: &UnitOutcome) {
        self.units
            .get_or_create(&UnitLabels {
                target: outcome.unit.target.as_str(),
                outcome: outcome.outcome.end.as_str(),
            })
            .inc();
    }

    /// Counts a job's end, and observes how long after the push each target was done.
    pub fn job_ended(&self, outcome: &JobOutcome) {
        let label = if outcome.scan.is_err() || outcome.failed > 0 {
            "failed"
        } else if outcome.upgraded > 0 {
            "changed"
        } else {
            "unchanged"
        };
        self.jobs
            .get_or_create(&OutcomeLabels { outcome: label })
            .inc();
        for (target, after) in &outcome.deployed_after {
            self.push_to_deployed
                .get_or_create(&TargetLabels {
                    target: target.as_str(),
                })
                .observe(after.as_secs_f64());
        }
    }

    /// Counts an attempt at a notice on `channel`: `sent`, `failed` (to be retried) or
    /// `dropped` (its time to retry ran out).
    pub fn notice(&self, channel: Channel, result: &'static str) {
        self.notices
            .get_or_create(&NoticeLabels {
                channel: channel.as_str(),
                result,
            })
            .inc();
    }

    /// The metrics in the Prometheus text format, with the queue's depth as of now.
    pub fn encode(&self, queue_depth: usize) -> String {
        self.queue_depth
            .set(i64::try_from(queue_depth).unwrap_or(i64::MAX));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut text, &self.registry);
        prometheus_text(&text)
    }
}

/// The Prometheus text format of an OpenMetrics text without its `# EOF`: the two differ,
/// for what is encoded here, only in that a counter's `# HELP` and `# TYPE` name it with
/// its `_total` suffix, as its samples do.
fn prometheus_text(open_metrics: &str) -> String {
    let counters: Vec<&str> = open_metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(open_metrics.len() + counters.len() * 16);
    for line in open_metrics.lines() {
        let named = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, after) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {after}"))
        });
        match named {
            Some(renamed) => text.push_str(&renamed),
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

/// Where one platform's client reports its requests; reports nothing when made without
/// metrics (in tests of the clients alone).
#[derive(Debug, Clone, Default)]
pub struct PlatformCalls {
    metrics: Option<Arc<Metrics>>,
    platform: &'static str,
}

impl PlatformCalls {
    /// Reports the requests to `platform` (`rancher`, `engine`) into `metrics`.
    pub fn new(metrics: Arc<Metrics>, platform: &'static str) -> Self {
        Self {
            metrics: Some(metrics),
            platform,
        }
    }

    /// Counts one request of `kind` (a route template built from closed sets, such as
    /// `POST /containers/{id}/start`) that ended with `result` (a status class such as
    /// `2xx`, or `timeout` or `error`), and observes its latency since `started`.
    pub fn observe(&self, kind: impl FnOnce() -> String, result: &'static str, started: Instant) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let platform = self.platform;
        let kind = kind();
        metrics
            .requests
            .get_or_create(&RequestLabels {
                platform,
                kind: kind.clone(),
                result,
            })
            .inc();
        metrics
            .request_seconds
            .get_or_create(&KindLabels { platform, kind })
            .observe(started.elapsed().as_secs_f64());
    }
}

/// The result label of an HTTP status.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_with_their_total_in_the_prometheus_format() {
        let metrics = Metrics::default();
        metrics.push_answered(SourceKind::DockerHub, "accepted");
        let text = metrics.encode(3);
        assert!(
            text.contains("# HELP autoredeploy_pushes_total Requests")
                && text.contains("# TYPE autoredeploy_pushes_total counter")
                && text.contains(
                    "autoredeploy_pushes_total{source=\"dockerhub\",answer=\"accepted\"} 1"
                ),
            "{text}"
        );
        assert!(text.contains("# TYPE autoredeploy_queue_depth gauge\nautoredeploy_queue_depth 3"));
        assert!(!text.contains("# EOF"));
    }
}
