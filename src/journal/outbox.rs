//! The outbox: notices owed to people and to senders, written in the transaction that ends
//! their job, and kept until they are delivered or their time to retry runs out.

use rusqlite::{Connection, OptionalExtension, params};

use super::records::{self, JobId, JobSummary, Time, UnitRecord};
use crate::config::NotifyOn;

/// Where a notice goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// A Slack incoming webhook.
    Slack,
    /// A Microsoft Teams incoming webhook.
    Teams,
    /// A Discord webhook.
    Discord,
    /// The generic JSON webhook.
    Webhook,
    /// A beanstalkd tube: one message per upgraded unit.
    Beanstalk,
    /// The `callback_url` of a Docker Hub push.
    Callback,
}

impl Channel {
    /// Every channel, for metrics that show each one from the start.
    pub const ALL: [Channel; 6] = [
        Self::Slack,
        Self::Teams,
        Self::Discord,
        Self::Webhook,
        Self::Beanstalk,
        Self::Callback,
    ];

    /// The name stored in the journal, logged and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Teams => "teams",
            Self::Discord => "discord",
            Self::Webhook => "webhook",
            Self::Beanstalk => "beanstalk",
            Self::Callback => "callback",
        }
    }

    /// The channel of that name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|channel| channel.as_str() == name)
    }
}

/// The notices a job writes to the outbox when it ends.
#[derive(Debug, Clone)]
pub struct NoticePlan {
    /// The configured channels, the callback excepted (it is owed to every push that
    /// asked for one).
    pub channels: Vec<Channel>,
    /// Which jobs notify on those channels.
    pub on: NotifyOn,
}

impl NoticePlan {
    /// No channel: only callbacks are written.
    #[cfg(test)]
    pub fn callbacks_only() -> Self {
        Self {
            channels: Vec::new(),
            on: NotifyOn::Changes,
        }
    }
}

/// A notice waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Its number in the outbox.
    pub id: i64,
    /// The job it tells about.
    pub job: JobId,
    /// Where it goes.
    pub channel: Channel,
    /// For beanstalkd, the unit it tells about.
    pub unit_seq: Option<i64>,
    /// For a callback, where it goes.
    pub callback_url: Option<String>,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the job ended and the notice was written.
    pub created_at: Time,
}

/// What a notice says: the job as it ended, and each of its units.
#[derive(Debug, Clone)]
pub struct JobNotice {
    /// The job's history line.
    pub summary: JobSummary,
    /// The digest the last push named, when it named one.
    pub digest: Option<String>,
    /// Its units, in the order they were planned (without their steps).
    pub units: Vec<UnitRecord>,
}

/// Writes the notices owed for `job`, which is ending now: on each channel when the job
/// is one `plan.on` wants told (a message per upgraded unit for beanstalkd), and a callback
/// per push that asked for one.
pub(super) fn enqueue(
    db: &Connection,
    job: JobId,
    failed_as_a_whole: bool,
    plan: &NoticePlan,
    now: i64,
) -> rusqlite::Result<usize> {
    let count = |ends: &str| -> rusqlite::Result<i64> {
        db.query_row(
            &format!("SELECT COUNT(*) FROM job_units WHERE job_id = ?1 AND end_state IN ({ends})"),
            params![job.0],
            |row| row.get(0),
        )
    };
    let failures = failed_as_a_whole || count("'failed', 'rolled-back', 'cancelled', 'left'")? > 0;
    let notify = match plan.on {
        NotifyOn::All => true,
        NotifyOn::Failures => failures,
        NotifyOn::Changes => failures || count("'upgraded'")? > 0,
    };
    let mut insert = db.prepare_cached(
        "INSERT INTO outbox (job_id, channel, unit_seq, callback_url, created_at, next_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )?;
    let mut written = 0;
    for channel in plan.channels.iter().filter(|_| notify) {
        if *channel == Channel::Beanstalk {
            written += db.execute(
                "INSERT INTO outbox (job_id, channel, unit_seq, created_at, next_at)
                 SELECT ?1, ?2, seq, ?3, ?3 FROM job_units
                 WHERE job_id = ?1 AND end_state = 'upgraded' ORDER BY seq",
                params![job.0, channel.as_str(), now],
            )?;
        } else {
            let none: Option<String> = None;
            written += insert.execute(params![job.0, channel.as_str(), none, none, now])?;
        }
    }
    written += db.execute(
        "INSERT INTO outbox (job_id, channel, callback_url, created_at, next_at)
         SELECT ?1, 'callback', url, ?2, ?2 FROM job_callbacks WHERE job_id = ?1 ORDER BY rowid",
        params![job.0, now],
    )?;
    Ok(written)
}

/// The channels this release sends to, as an SQL list: a notice of another (left by a
/// newer release) waits for it, instead of stopping the others.
fn known_channels() -> String {
    let names: Vec<String> = Channel::ALL
        .iter()
        .map(|channel| format!("'{}'", channel.as_str()))
        .collect();
    format!("({})", names.join(", "))
}

/// The notices due at `now`, oldest first, at most `limit`.
pub(super) fn due(db: &Connection, now: i64, limit: usize) -> rusqlite::Result<Vec<Notice>> {
    let mut statement = db.prepare_cached(&format!(
        "SELECT id, job_id, channel, unit_seq, callback_url, attempts, created_at FROM outbox
         WHERE next_at <= ?1 AND channel IN {} ORDER BY next_at, id LIMIT ?2",
        known_channels()
    ))?;
    let rows = statement.query_map(params![now, limit as i64], |row| {
        let channel: String = row.get(2)?;
        Ok(Notice {
            id: row.get(0)?,
            job: JobId(row.get(1)?),
            channel: Channel::parse(&channel).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    2,
                    rusqlite::types::Type::Text,
                    format!("unknown channel {channel}").into(),
                )
            })?,
            unit_seq: row.get(3)?,
            callback_url: row.get(4)?,
            attempts: row.get(5)?,
            created_at: Time(row.get(6)?),
        })
    })?;
    rows.collect()
}

/// When the next notice is due, if one waits.
pub(super) fn next_due(db: &Connection) -> rusqlite::Result<Option<i64>> {
    db.query_row(
        &format!(
            "SELECT MIN(next_at) FROM outbox WHERE channel IN {}",
            known_channels()
        ),
        [],
        |row| row.get(0),
    )
}

/// A job as its notices tell it, if it is still in the journal.
pub(super) fn job_notice(db: &Connection, job: JobId) -> rusqlite::Result<Option<JobNotice>> {
    let found = db
        .query_row(
            &format!(
                "SELECT {}, j.digest FROM jobs j WHERE j.id = ?1",
                records::SUMMARY_COLUMNS
            ),
            params![job.0],
            |row| Ok((records::summary_of(row)?, row.get(records::SUMMARY_WIDTH)?)),
        )
        .optional()?;
    let Some((summary, digest)) = found else {
        return Ok(None);
    };
    Ok(Some(JobNotice {
        summary,
        digest,
        units: records::units_of(db, job)?,
    }))
}
