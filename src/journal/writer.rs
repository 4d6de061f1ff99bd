//! The thread that owns the database connection and commits calls in batches.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::JournalError;

/// Most calls committed in one transaction.
const MAX_BATCH: usize = 256;

/// Hands the outcome of a call back, once its batch is committed (or not).
type Deliver = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A call: runs its statements (unless its batch is already lost: `None`) and returns how
/// to deliver its result.
type Work = Box<dyn FnOnce(Option<&Connection>) -> Deliver + Send>;

/// Sends calls to the journal thread.
#[derive(Clone)]
pub(super) struct Writer {
    sender: mpsc::Sender<Work>,
    /// False once the thread has ended (it never should).
    alive: Arc<AtomicBool>,
}

/// Marks the writer dead when the thread ends, even by a panic.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    /// Starts the thread; it ends when every `Writer` is dropped.
    pub(super) fn start(connection: Connection) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel::<Work>();
        let alive = Arc::new(AtomicBool::new(true));
        let guard = AliveGuard(Arc::clone(&alive));
        std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || {
                let _guard = guard;
                run(&connection, &receiver);
            })?;
        Ok(Self { sender, alive })
    }

    /// Whether the journal thread is still running.
    pub(super) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Runs `statements` on the journal thread, isolated from the other calls of its batch,
    /// and returns their result once the batch is committed.
    pub(super) async fn call<T, F>(&self, statements: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let work: Work = Box::new(move |db| {
            let result = match db {
                Some(db) => isolated(db, statements),
                None => Err(rusqlite::Error::InvalidQuery),
            };
            Box::new(move |committed| {
                let outcome = match committed {
                    Ok(()) => result.map_err(JournalError::from),
                    Err(reason) => Err(JournalError::Commit(reason)),
                };
                let _ = reply.send(outcome);
            })
        });
        self.sender.send(work).map_err(|_| JournalError::Closed)?;
        answer.await.map_err(|_| JournalError::Closed)?
    }
}

fn run(db: &Connection, receiver: &mpsc::Receiver<Work>) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(work) => batch.push(work),
                Err(_) => break,
            }
        }
        // A batch is committed whole or not at all, and every caller is told which.
        let mut lost = db
            .execute_batch("BEGIN IMMEDIATE")
            .err()
            .map(|err| format!("cannot begin a transaction: {err}"));
        let mut deliveries: Vec<Deliver> = Vec::with_capacity(batch.len());
        for work in batch {
            if lost.is_some() {
                deliveries.push(work(None));
                continue;
            }
            deliveries.push(work(Some(db)));
            if db.is_autocommit() {
                // An error (disk full, I/O) made SQLite roll the whole transaction back.
                lost = Some("the transaction was rolled back by an error".into());
            }
        }
        let committed = match lost {
            Some(reason) => {
                if !db.is_autocommit() {
                    let _ = db.execute_batch("ROLLBACK");
                }
                Err(reason)
            }
            None => db.execute_batch("COMMIT").map_err(|err| {
                let _ = db.execute_batch("ROLLBACK");
                err.to_string()
            }),
        };
        for deliver in deliveries {
            deliver(committed.clone());
        }
    }
}

/// Runs one call inside a savepoint, so its failure undoes only its own statements.
fn isolated<T>(
    db: &Connection,
    statements: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    db.execute_batch("SAVEPOINT call")?;
    match statements(db) {
        Ok(value) => {
            db.execute_batch("RELEASE call")?;
            Ok(value)
        }
        Err(err) => {
            let _ = db.execute_batch("ROLLBACK TO call; RELEASE call");
            Err(err)
        }
    }
}
