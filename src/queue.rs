//! The bounded hand-over of accepted pushes from the HTTP side to the deployer.

use tokio::sync::mpsc;

use crate::domain::PushEvent;

/// The sending side, held by the webhook handler.
#[derive(Debug, Clone)]
pub struct PushQueue {
    /// Bounded: a full queue is refused, not grown.
    sender: mpsc::Sender<PushEvent>,
}

/// The receiving side, held by the deployer.
#[derive(Debug)]
pub struct PushReceiver {
    receiver: mpsc::Receiver<PushEvent>,
}

/// Why a push could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// As many pushes as the queue holds are already waiting.
    #[error("the queue of pending pushes is full")]
    Full,
    /// The deployer has stopped (shutting down).
    #[error("autoredeploy is shutting down")]
    Closed,
}

/// A queue that holds at most `capacity` pending pushes.
pub fn bounded(capacity: usize) -> (PushQueue, PushReceiver) {
    let (sender, receiver) = mpsc::channel(capacity);
    (PushQueue { sender }, PushReceiver { receiver })
}

impl PushQueue {
    /// Queues the push, or says at once why it cannot.
    pub fn try_enqueue(&self, push: PushEvent) -> Result<(), QueueError> {
        self.sender.try_send(push).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => QueueError::Full,
            mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
        })
    }
}

impl PushReceiver {
    /// The next push; `None` once every sender is gone and the queue is empty.
    pub async fn next(&mut self) -> Option<PushEvent> {
        self.receiver.recv().await
    }

    /// Refuses further pushes and returns those still waiting.
    pub fn close(&mut self) -> Vec<PushEvent> {
        self.receiver.close();
        let mut left = Vec::new();
        while let Ok(push) = self.receiver.try_recv() {
            left.push(push);
        }
        left
    }
}
