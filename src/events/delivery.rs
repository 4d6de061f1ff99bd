//! Sends what the journal's outbox holds: each notice is tried, retried with a growing
//! pause while its time to retry lasts (`AUTOREDEPLOY_NOTIFY_RETRY_FOR`), then dropped with
//! an error line. Deliveries run beside the jobs and never hold one up.
//!
//! A notification URL is a secret: no log line or error here shows one. Transport errors
//! are stripped of their URL before they are kept.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue};
use secrecy::ExposeSecret;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use url::Url;

use super::metrics::Metrics;
use super::{beanstalk, messages};
use crate::config::{Channels, EventSettings};
use crate::journal::{Channel, JobNotice, Journal, Notice, NoticePlan};
use crate::shutdown::ShutdownSignal;

/// Notices tried at the same time.
const AT_ONCE: usize = 16;

/// How long a notice taken for an attempt is not due again: longer than the attempt may
/// take, so that it is attempted again only if its end was never recorded (a crash).
const LEASE: Duration = Duration::from_secs(60);

/// Time allowed for one HTTP delivery.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The pause after the first failed attempt; it doubles after each one, up to
/// [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const MAX_PAUSE: Duration = Duration::from_secs(300);

/// Longest wait before the outbox is looked at again when nothing rings.
const IDLE: Duration = Duration::from_secs(60);

/// The header that tells a generic-webhook receiver a delivery it has had before.
const DELIVERY_HEADER: &str = "X-Autoredeploy-Delivery";

/// Why a notice was not delivered.
enum Failure {
    /// It may arrive on a later attempt.
    Again(String),
    /// It never will: dropped at once.
    Never(String),
}

/// Delivers the outbox's notices.
#[derive(Debug)]
pub struct Delivery {
    journal: Journal,
    channels: Channels,
    retry_for: Duration,
    public_url: Option<Url>,
    callback_origins: Vec<url::Origin>,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    /// Rung when a job has written notices.
    written: Arc<Notify>,
}

impl Delivery {
    /// Sets up delivery of `settings`' notices from `journal`'s outbox; fails only when
    /// the system's CA certificates cannot be read.
    pub fn new(
        settings: &EventSettings,
        journal: Journal,
        metrics: Arc<Metrics>,
        written: Arc<Notify>,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("autoredeploy/", env!("CARGO_PKG_VERSION")))
            .timeout(SEND_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(crate::system_tls()?)
            .build()
            .map_err(|error| error.without_url().to_string())?;
        Ok(Self {
            journal,
            channels: settings.channels.clone(),
            retry_for: settings.retry_for,
            public_url: settings.public_url.clone(),
            callback_origins: settings.callback_origins.clone(),
            http,
            metrics,
            written,
        })
    }

    /// The notices an ended job owes with `settings`.
    pub fn plan(settings: &EventSettings) -> NoticePlan {
        let channels = &settings.channels;
        let configured = [
            (Channel::Slack, channels.slack.is_some()),
            (Channel::Teams, channels.teams.is_some()),
            (Channel::Discord, channels.discord.is_some()),
            (Channel::Webhook, channels.webhook.is_some()),
            (Channel::Beanstalk, channels.beanstalk.is_some()),
        ];
        NoticePlan {
            channels: configured
                .into_iter()
                .filter_map(|(channel, on)| on.then_some(channel))
                .collect(),
            on: settings.notify_on,
        }
    }

    /// Delivers notices as they become due, until the shutdown. What is left waits in the
    /// journal for the next start.
    ///
    /// Each notice is attempted in a task of its own, at most [`AT_ONCE`] at a time, so one
    /// receiver that hangs holds up nothing but its own notices.
    pub async fn run(self, shutdown: ShutdownSignal) {
        let delivery = Arc::new(self);
        let mut attempts = JoinSet::new();
        // The notice of each attempt in flight, by task.
        let mut in_flight = HashMap::new();
        // Set when the journal could not be read or written; the pause grows while that
        // lasts, so that it is not asked in a tight loop, nor a notice it could not mark
        // sent sent again at once.
        let mut troubled = false;
        let mut journal_pause = FIRST_PAUSE;
        while !shutdown.is_triggered() {
            let wait = if troubled {
                troubled = false;
                let pause = journal_pause;
                journal_pause = (journal_pause * 2).min(IDLE);
                pause
            } else {
                let room = AT_ONCE.saturating_sub(attempts.len());
                let claimed = match room {
                    // The end of an attempt wakes the loop.
                    0 => Ok(Vec::new()),
                    _ => delivery.journal.claim_notices(room, LEASE).await,
                };
                let next = match claimed {
                    Ok(_) if room == 0 => Ok(None),
                    Ok(notices) => {
                        for notice in notices {
                            let id = notice.id;
                            let task = attempts.spawn(Arc::clone(&delivery).attempt(notice));
                            in_flight.insert(task.id(), id);
                        }
                        delivery.journal.next_notice_in().await
                    }
                    Err(error) => Err(error),
                };
                match next {
                    Ok(next) => {
                        journal_pause = FIRST_PAUSE;
                        next.map_or(IDLE, |next| next.clamp(Duration::from_millis(10), IDLE))
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot read the outbox; trying again");
                        troubled = true;
                        continue;
                    }
                }
            };
            tokio::select! {
                Some(ended) = attempts.join_next_with_id(), if !attempts.is_empty() => {
                    // An attempt that panicked left its notice as it was: it waits for its
                    // lease to end.
                    let (task, recorded) = match ended {
                        Ok((task, recorded)) => (task, recorded),
                        Err(error) => (error.id(), false),
                    };
                    in_flight.remove(&task);
                    troubled = !recorded;
                }
                () = tokio::time::sleep(wait) => {}
                () = delivery.written.notified() => {}
                () = shutdown.triggered() => break,
            }
        }
        // The attempts cut short are due again at the next start, not after their lease.
        attempts.shutdown().await;
        let cut_short: Vec<i64> = in_flight.into_values().collect();
        if let Err(error) = delivery.journal.release_notices(cut_short).await {
            tracing::warn!(%error, "cannot release the notifications being sent at the shutdown; they are sent again a minute after the next start");
        }
    }

    /// One attempt at `notice`, and what the outbox keeps of it. Returns whether the
    /// journal recorded that.
    async fn attempt(self: Arc<Self>, notice: Notice) -> bool {
        let channel = notice.channel.as_str();
        let (job, attempts) = (notice.job, notice.attempts + 1);
        let failure = match self.send(&notice).await {
            Ok(()) => {
                self.metrics.notice(notice.channel, "sent");
                tracing::info!(%job, channel, attempts, "notification delivered");
                return self.forget(&notice).await;
            }
            Err(failure) => failure,
        };
        let waited = Duration::from_millis((now_ms() - notice.created_at.0).max(0) as u64);
        let (error, gives_up) = match failure {
            Failure::Never(error) => (error, true),
            Failure::Again(error) => (error, waited >= self.retry_for),
        };
        if gives_up {
            self.metrics.notice(notice.channel, "dropped");
            tracing::error!(%job, channel, attempts, %error, "notification dropped: it could not be delivered");
            return self.forget(&notice).await;
        }
        self.metrics.notice(notice.channel, "failed");
        let pause = FIRST_PAUSE
            .saturating_mul(2u32.saturating_pow(notice.attempts.min(16)))
            .min(MAX_PAUSE);
        tracing::warn!(%job, channel, attempts, %error, retry_in_s = pause.as_secs_f64(), "notification not delivered; trying again");
        match self.journal.retry_notice(notice.id, pause, error).await {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(%job, channel, %error, "cannot record the failed notification attempt");
                false
            }
        }
    }

    /// Takes a notice out of the outbox; returns whether the journal recorded that.
    async fn forget(&self, notice: &Notice) -> bool {
        let removed = self.journal.remove_notice(notice.id).await;
        if let Err(error) = &removed {
            tracing::error!(job = %notice.job, channel = notice.channel.as_str(), %error, "cannot take the notification out of the outbox; it may be sent again");
        }
        removed.is_ok()
    }

    /// Sends `notice` once.
    async fn send(&self, notice: &Notice) -> Result<(), Failure> {
        let job = match self.journal.job_notice(notice.job).await {
            Ok(Some(job)) => job,
            Ok(None) => return Err(Failure::Never("its job is no longer in the journal".into())),
            Err(error) => return Err(Failure::Again(error.to_string())),
        };
        let channels = &self.channels;
        let (url, document, variable) = match notice.channel {
            Channel::Beanstalk => return self.put(notice, &job).await,
            Channel::Callback => return self.call_back(notice, &job).await,
            Channel::Slack => {
                let (url, username) = channels
                    .slack
                    .as_ref()
                    .map(|(url, name)| (url, name))
                    .unzip();
                let username = username.and_then(Option::as_deref);
                (url, messages::slack(&job, username), "SLACK_WEBHOOK_URL")
            }
            Channel::Teams => (
                channels.teams.as_ref(),
                messages::teams(&job),
                "TEAMS_WEBHOOK_URL",
            ),
            Channel::Discord => (
                channels.discord.as_ref(),
                messages::discord(&job),
                "DISCORD_WEBHOOK_URL",
            ),
            Channel::Webhook => (
                channels.webhook.as_ref(),
                messages::webhook(&job),
                "AUTOREDEPLOY_NOTIFY_URL",
            ),
        };
        let url = url.ok_or_else(|| not_set(variable))?;
        let delivery = (notice.channel == Channel::Webhook).then_some(notice.id);
        self.post(url.expose_secret(), &document, delivery).await
    }

    /// Puts symfoni/deployer's message about the notice's unit into the beanstalkd tube.
    async fn put(&self, notice: &Notice, job: &JobNotice) -> Result<(), Failure> {
        let flags = self
            .channels
            .beanstalk
            .as_ref()
            .ok_or_else(|| not_set("NOTIFY_FLAGS"))?;
        let unit = notice
            .unit_seq
            .and_then(|seq| job.units.iter().find(|unit| unit.seq == seq))
            .ok_or_else(|| Failure::Never("its unit is no longer in the journal".into()))?;
        let message = messages::beanstalk(job, unit, &flags.template);
        beanstalk::put(&flags.address, &flags.tube, &message)
            .await
            .map_err(Failure::Again)
    }

    /// Posts Docker Hub's callback document, if its URL is one of the allowed origins.
    async fn call_back(&self, notice: &Notice, job: &JobNotice) -> Result<(), Failure> {
        let url = notice
            .callback_url
            .as_deref()
            .and_then(|url| Url::parse(url).ok())
            .ok_or_else(|| Failure::Never("the callback URL cannot be read".into()))?;
        if !self.callback_origins.contains(&url.origin()) {
            return Err(Failure::Never(
                "the callback URL's origin is not in AUTOREDEPLOY_CALLBACK_ORIGINS".into(),
            ));
        }
        let target_url = self.public_url.as_ref().and_then(|public| {
            public
                .join(&format!("jobs/{}", job.summary.id))
                .ok()
                .map(String::from)
        });
        self.post(url.as_str(), &messages::callback(job, target_url), None)
            .await
    }

    /// Posts `document` as JSON to `url`; `delivery` is the generic webhook's delivery id.
    async fn post(
        &self,
        url: &str,
        document: &serde_json::Value,
        delivery: Option<i64>,
    ) -> Result<(), Failure> {
        let mut request = self
            .http
            .post(url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(document.to_string());
        if let Some(delivery) = delivery {
            request = request.header(DELIVERY_HEADER, delivery);
        }
        let response = request
            .send()
            .await
            .map_err(|error| Failure::Again(without_url(error)))?;
        let status = response.status();
        match status.as_u16() {
            200..=299 => Ok(()),
            300..=399 => Err(Failure::Never(format!(
                "answered {status}; redirects are not followed"
            ))),
            408 | 429 | 500.. => Err(Failure::Again(format!("answered {status}"))),
            _ => Err(Failure::Never(format!("answered {status}"))),
        }
    }
}

/// A notice for a channel whose setting was removed since: it can never be sent.
fn not_set(variable: &str) -> Failure {
    Failure::Never(format!("{variable} is not set any more"))
}

/// A transport error and its causes, without the URL, which may hold a secret.
fn without_url(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(inner) = cause {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        cause = inner.source();
    }
    message
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}
