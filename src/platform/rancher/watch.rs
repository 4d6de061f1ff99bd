//! Watching the services whose upgrades wait for Rancher, all of them with one filtered
//! collection request per poll instead of one read per service.
//!
//! Every poll asks for the services that are not `active` (`state_ne=active`): in a healthy
//! environment only those being upgraded, finished, rolled back or stopped. A waiting
//! service found there is seen as it is now; one that is not there is `active` — but only
//! when that answer was the whole list in one page, read in one go. Whenever the list
//! cannot vouch for a service (it has more pages, an entry could not be read, the request
//! failed in a way that says the filter is not understood, the server ignores the filter),
//! that service is read on its own instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{Notify, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use super::{RancherClient, RancherError, ServiceState};

/// What a poll saw of a service.
#[derive(Debug, Clone)]
pub enum Sighting {
    /// This is how it is now (boxed: a waiting upgrade holds a sighting while it reads more).
    Listed(Box<ServiceState>),
    /// It is `active`: the list of the services that are not did not show it.
    Active,
}

/// What a poll tells a waiter: what it saw, or why it saw nothing (shared by every waiter
/// of that poll).
pub type Seen = Result<Sighting, Arc<RancherError>>;

/// The filter of every poll: the services that are not `active`.
const NOT_ACTIVE: [(&str, &str); 1] = [("state_ne", "active")];

/// Polls Rancher for every service some upgrade waits on.
#[derive(Debug, Clone)]
pub struct StateWatch {
    inner: Arc<Inner>,
}

/// A waiter's answer.
type Answer = oneshot::Sender<Seen>;

/// The waiters of one poll, by service id.
type Waiters = HashMap<String, Vec<Answer>>;

#[derive(Debug)]
struct Inner {
    client: RancherClient,
    /// Time between two polls.
    interval: Duration,
    /// The services waited on, each with its waiters for the next poll.
    waiting: Mutex<Waiters>,
    /// Rung when a waiter arrives.
    arrived: Notify,
    /// The poll loop; started again if it ever ended.
    task: Mutex<Option<JoinHandle<()>>>,
    /// Whether the server applies the filter (until it shows it does not).
    filters_work: AtomicBool,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl StateWatch {
    /// A watch polling through `client` every `interval`.
    pub fn new(client: RancherClient, interval: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                interval,
                waiting: Mutex::new(HashMap::new()),
                arrived: Notify::new(),
                task: Mutex::new(None),
                filters_work: AtomicBool::new(true),
            }),
        }
    }

    /// What the next poll sees of service `id`.
    pub async fn next(&self, id: &str) -> Seen {
        {
            let mut task = locked(&self.inner.task);
            if task.as_ref().is_none_or(JoinHandle::is_finished) {
                *task = Some(tokio::spawn(Arc::clone(&self.inner).poll_forever()));
            }
        }
        let (answer, seen) = oneshot::channel();
        locked(&self.inner.waiting)
            .entry(id.to_owned())
            .or_default()
            .push(answer);
        self.inner.arrived.notify_one();
        match seen.await {
            Ok(result) => result,
            Err(_) => Err(Arc::new(RancherError::Decode {
                what: format!("watching service {id}"),
                reason: "the poll ended without an answer".into(),
            })),
        }
    }
}

/// The id of an entry, read leniently.
#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

/// What a poll reads of an entry it is not watching.
#[derive(Deserialize)]
struct IdAndState {
    id: String,
    #[serde(default)]
    state: Option<String>,
}

impl Inner {
    /// Polls every `interval` while someone waits, each poll answering every waiter.
    async fn poll_forever(self: Arc<Self>) {
        loop {
            while locked(&self.waiting).is_empty() {
                self.arrived.notified().await;
            }
            tokio::time::sleep(self.interval).await;
            let mut waiters = std::mem::take(&mut *locked(&self.waiting));
            if self.filters_work.load(Ordering::SeqCst) {
                match self.poll_listed(&mut waiters).await {
                    Ok(()) => {}
                    // Rancher unreachable, or the credentials refused: every waiter is told.
                    Err(error)
                        if error.is_retryable() || matches!(error.status(), Some(401 | 403)) =>
                    {
                        let error = Arc::new(error);
                        for answer in waiters.into_values().flatten() {
                            let _ = answer.send(Err(Arc::clone(&error)));
                        }
                        continue;
                    }
                    // The filtered list cannot be had: read each service on its own.
                    Err(error) => {
                        tracing::warn!(%error, "the services waiting for Rancher are read one by one from now on");
                        self.filters_work.store(false, Ordering::SeqCst);
                    }
                }
            }
            self.read_one_by_one(waiters).await;
        }
    }

    /// Reads each waiting service on its own, all at once (the request cap bounds them).
    async fn read_one_by_one(&self, waiters: Waiters) {
        let mut reads = JoinSet::new();
        for (id, answers) in waiters {
            let client = self.client.clone();
            reads.spawn(async move {
                let seen: Seen = match client.service_state(&id).await {
                    Ok(state) => Ok(Sighting::Listed(Box::new(state))),
                    Err(error) => Err(Arc::new(error)),
                };
                for answer in answers {
                    let _ = answer.send(seen.clone());
                }
            });
        }
        while reads.join_next().await.is_some() {}
    }

    /// Asks for the services that are not `active` and answers the waiters it shows. When
    /// the answer was the whole list, read in one go, the waiters it does not show are
    /// answered `active`; the waiters left in `waiters` are to be read on their own.
    async fn poll_listed(&self, waiters: &mut Waiters) -> Result<(), RancherError> {
        let mut ignored = false;
        let mut unreadable = Vec::new();
        let mut attempts = 0;
        let end = self
            .client
            .list_entries(&NOT_ACTIVE, None, |position, raw| {
                // A page read again after a failure: its entries may have moved, so what
                // this poll says of the services it did not show is not to be trusted.
                if position == 0 {
                    attempts += 1;
                }
                let (id, state) = match serde_json::from_slice::<IdAndState>(raw) {
                    Ok(entry) => (entry.id, entry.state),
                    Err(_) => match serde_json::from_slice::<IdOnly>(raw) {
                        Ok(entry) => (entry.id, None),
                        Err(_) => return,
                    },
                };
                // An active service in a list of those that are not: the filter was
                // ignored, and this is the whole collection.
                if state.as_deref() == Some("active") {
                    ignored = true;
                    return;
                }
                if !waiters.contains_key(&id) {
                    return;
                }
                let Ok(service) = ServiceState::decode(raw) else {
                    unreadable.push(id);
                    return;
                };
                for answer in waiters.remove(&id).into_iter().flatten() {
                    let _ = answer.send(Ok(Sighting::Listed(Box::new(service.clone()))));
                }
            })
            .await?;
        if ignored {
            tracing::warn!(
                "Rancher ignores the state_ne filter of the service collection: the services \
                 waiting for it are read one by one from now on"
            );
            self.filters_work.store(false, Ordering::SeqCst);
            return Ok(());
        }
        let whole = end.next_marker.is_none() && attempts <= 1 && unreadable.is_empty();
        if whole {
            // The rest were not listed: they are active.
            for answer in std::mem::take(waiters).into_values().flatten() {
                let _ = answer.send(Ok(Sighting::Active));
            }
        }
        Ok(())
    }
}
