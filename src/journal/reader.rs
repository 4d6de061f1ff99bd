//! The connection the history is read on: off the writer's thread, so a long read never
//! delays a push being journaled (WAL lets it read while the writer commits).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::JournalError;

/// A read-only connection, used by one blocking task at a time.
#[derive(Clone)]
pub(super) struct Reader {
    connection: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reader")
    }
}

impl Reader {
    /// Opens the database at `path` for reading.
    pub(super) fn open(path: &Path) -> rusqlite::Result<Self> {
        let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        connection.busy_timeout(Duration::from_secs(5))?;
        // The history reads a page of a job at a time: a small page cache serves it, and
        // the memory stays with the writer, which needs it.
        connection.execute_batch("PRAGMA cache_size = -256;")?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `query` on a blocking thread.
    pub(super) async fn read<T, F>(&self, query: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let db = connection
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            query(&db)
        })
        .await
        .map_err(|_| JournalError::Closed)?
        .map_err(JournalError::from)
    }
}
