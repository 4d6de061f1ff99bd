//! The shutdown signal, shared by everything that must stop between two steps.

use tokio::sync::watch;

/// Triggers the shutdown; dropping it triggers nothing.
#[derive(Debug)]
pub struct Shutdown {
    sender: watch::Sender<bool>,
}

/// Tells whether the shutdown has been triggered, or waits for it.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    receiver: watch::Receiver<bool>,
}

impl Shutdown {
    /// A shutdown not triggered yet, and its signal.
    pub fn new() -> (Self, ShutdownSignal) {
        let (sender, receiver) = watch::channel(false);
        (Self { sender }, ShutdownSignal { receiver })
    }

    /// Triggers it: every signal reports it from now on.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }
}

impl ShutdownSignal {
    /// Whether the shutdown has been triggered.
    pub fn is_triggered(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Completes once the shutdown is triggered (at once if it was).
    pub async fn triggered(&self) {
        let mut receiver = self.receiver.clone();
        // An error means the `Shutdown` is gone without triggering: then it never will.
        if receiver.wait_for(|triggered| *triggered).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
