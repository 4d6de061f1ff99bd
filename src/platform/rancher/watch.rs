//! Watching the services whose upgrades wait for Rancher, all of them with one filtered
//! collection request per poll instead of one read per service.
//!
//! Every poll lists the services that are not `active` (`state_ne=active`): in a healthy
//! environment only those being upgraded, finished, rolled back or stopped. A waiting
//! service found there is seen as it is now; one that is not there is `active`. A server
//! that ignores the filter (it lists `active` services too) is noticed, and from then on
//! each waiting service is read on its own, as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{Notify, oneshot};

use super::{RancherClient, RancherError, ServiceState};

/// What a poll saw of a service.
#[derive(Debug, Clone)]
pub enum Sighting {
    /// It is not `active`: this is how it is now.
    Listed(ServiceState),
    /// It is `active` (the poll of the services that are not did not show it).
    Active,
}

/// The filter of every poll: the services that are not `active`.
const NOT_ACTIVE: [(&str, &str); 1] = [("state_ne", "active")];

/// Polls Rancher for every service some upgrade waits on.
#[derive(Debug, Clone)]
pub struct StateWatch {
    inner: Arc<Inner>,
}

/// What a poll tells a waiter: what it saw, or why it saw nothing (shared by every waiter
/// of that poll).
pub type Seen = Result<Sighting, Arc<RancherError>>;

/// A waiter's answer.
type Answer = oneshot::Sender<Seen>;

#[derive(Debug)]
struct Inner {
    client: RancherClient,
    /// Time between two polls.
    interval: Duration,
    /// The services waited on, each with its waiters for the next poll.
    waiting: Mutex<HashMap<String, Vec<Answer>>>,
    /// Rung when the first waiter of a poll arrives.
    arrived: Notify,
    /// Whether the poll loop runs.
    started: AtomicBool,
    /// Whether the server applies the filter (until it shows it does not).
    filters_work: AtomicBool,
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
                started: AtomicBool::new(false),
                filters_work: AtomicBool::new(true),
            }),
        }
    }

    /// What the next poll sees of service `id`.
    pub async fn next(&self, id: &str) -> Seen {
        if !self.inner.started.swap(true, Ordering::SeqCst) {
            tokio::spawn(Arc::clone(&self.inner).poll_forever());
        }
        let (answer, seen) = oneshot::channel();
        self.inner
            .waiting()
            .entry(id.to_owned())
            .or_default()
            .push(answer);
        self.inner.arrived.notify_one();
        match seen.await {
            Ok(result) => result,
            Err(_) => Err(Arc::new(RancherError::Decode {
                what: format!("watching service {id}"),
                reason: "the poll loop has stopped".into(),
            })),
        }
    }
}

/// Only what a poll needs to know of an entry it is not watching.
#[derive(Deserialize)]
struct IdAndState {
    id: String,
    #[serde(default)]
    state: String,
}

impl Inner {
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Answer>>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Polls every `interval` while someone waits, each poll answering every waiter.
    async fn poll_forever(self: Arc<Self>) {
        loop {
            while self.waiting().is_empty() {
                self.arrived.notified().await;
            }
            tokio::time::sleep(self.interval).await;
            let mut waiters = std::mem::take(&mut *self.waiting());
            if self.filters_work.load(Ordering::SeqCst)
                && let Err(error) = self.poll_listed(&mut waiters).await
            {
                let error = Arc::new(error);
                for answer in waiters.into_values().flatten() {
                    let _ = answer.send(Err(Arc::clone(&error)));
                }
                continue;
            }
            // Services the list could not speak for are read one by one.
            for (id, answers) in waiters {
                let seen: Seen = match self.client.service_state(&id).await {
                    Ok(state) if state.state == "active" => Ok(Sighting::Active),
                    Ok(state) => Ok(Sighting::Listed(state)),
                    Err(error) => Err(Arc::new(error)),
                };
                for answer in answers {
                    let _ = answer.send(seen.clone());
                }
            }
        }
    }

    /// Lists the services that are not `active`, page after page, answering the waiters of
    /// those it shows, and those it does not show as `active`. Waiters left in `waiters`
    /// are to be read one by one (the server turned out to ignore the filter).
    async fn poll_listed(
        &self,
        waiters: &mut HashMap<String, Vec<Answer>>,
    ) -> Result<(), RancherError> {
        let mut marker: Option<String> = None;
        let mut ignored = false;
        let mut unreadable = Vec::new();
        loop {
            let mut offset_seen = 0;
            let end = self
                .client
                .list_entries(&NOT_ACTIVE, marker.as_deref(), |position, raw| {
                    // A page read again after a failure hands out its first entries again.
                    if position < offset_seen {
                        return;
                    }
                    offset_seen = position + 1;
                    let Ok(IdAndState { id, state }) = serde_json::from_slice(raw) else {
                        return;
                    };
                    // An active service in a list of those that are not: the filter was
                    // ignored, and this list is the whole collection.
                    if state == "active" {
                        ignored = true;
                        return;
                    }
                    if !waiters.contains_key(&id) {
                        return;
                    }
                    // An entry that cannot be read here is read again on its own.
                    let Ok(state) = ServiceState::decode(raw) else {
                        unreadable.push(id);
                        return;
                    };
                    for answer in waiters.remove(&id).into_iter().flatten() {
                        let _ = answer.send(Ok(Sighting::Listed(state.clone())));
                    }
                })
                .await?;
            if ignored {
                tracing::warn!(
                    "Rancher ignores the state_ne filter of the service collection: waiting \
                     services are read one by one from now on"
                );
                self.filters_work.store(false, Ordering::SeqCst);
                return Ok(());
            }
            match end.next_marker {
                Some(next) if marker.as_deref() != Some(next.as_str()) => marker = Some(next),
                _ => break,
            }
        }
        let read_alone: HashMap<String, Vec<Answer>> = unreadable
            .iter()
            .filter_map(|id| waiters.remove_entry(id))
            .collect();
        // The rest were not listed: they are active.
        for answer in std::mem::replace(waiters, read_alone)
            .into_values()
            .flatten()
        {
            let _ = answer.send(Ok(Sighting::Active));
        }
        Ok(())
    }
}
