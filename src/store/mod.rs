//! SQLite persistence: one connection, used from blocking threads only.
//!
//! Every durable state change is committed here before the server acknowledges it. The async
//! server calls [`Store::call`], which runs the closure on tokio's blocking pool.

pub mod batches;
pub mod bundle_refusals;
pub mod bundle_sweep;
pub mod bundle_tree;
pub mod bundle_uploaders;
pub mod bundles;
pub mod deploy_logs;
pub mod job_stats;
pub mod jobs;
mod migrations;
pub mod model_status;
pub mod models;
pub mod replicas;
pub mod saved_models;
pub mod teams;
pub mod unpack_limits;
pub mod users;

pub use bundles::BundleStore;
pub use model_status::DeployStatus;
pub use models::ModelRow;
pub use users::{TokenKind, TokenRow, UserRow};

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the database thread stopped: {0}")]
    Join(String),
}

/// Databases up to this size are read whole at start (`PRAGMA quick_check`, tens of
/// milliseconds here), so damage is found before the server serves on it.
const QUICK_CHECK_UP_TO: u64 = 256 << 20;

/// Refuses a database SQLite finds damaged (pages that are not what their tables need).
fn quick_check(conn: &Connection) -> Result<(), StoreError> {
    let checked: rusqlite::Result<Vec<String>> = conn
        .prepare("PRAGMA quick_check(5)")
        .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect());
    let found = match checked {
        Ok(found) if found.len() == 1 && found[0] == "ok" => return Ok(()),
        Ok(found) => found.join("; "),
        // A page it cannot even read.
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
            e.to_string()
        }
        Err(e) => return Err(e.into()),
    };
    Err(StoreError::Corrupt(format!(
        "the database is damaged (SQLite's quick_check: {found})"
    )))
}

/// The server's database handle; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) the database file, brings its schema up to date and checks
    /// that every table and column of it is there.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::migrate(&mut conn)?;
        migrations::verify(&conn)?;
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        if size <= QUICK_CHECK_UP_TO {
            quick_check(&conn)?;
        }
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Moves every change waiting in the write-ahead log into the database file and empties
    /// the log, so that the file alone holds all (on a clean stop: a copy of `cortex.db` is then
    /// a whole backup). A failure is said, not fatal: the log keeps the changes.
    pub async fn checkpoint(&self) {
        let done = self
            .call(|c| {
                c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                    row.get::<_, i64>(0)
                })
                .map_err(StoreError::from)
            })
            .await;
        match done {
            Ok(0) => {}
            Ok(_) => tracing::warn!("the database's write-ahead log could not be emptied at stop (a reader held it); it is read again at the next start"),
            Err(e) => tracing::warn!("cannot empty the database's write-ahead log at stop ({e}); it is read again at the next start"),
        }
    }

    /// An in-memory database, for unit tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let mut conn = Connection::open_in_memory()?;
        migrations::migrate(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on this thread: only for a thread of its own (a job's
    /// writer, `server/jobs/settler.rs`), never on the async runtime.
    pub fn call_here<F, R>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError>,
    {
        let mut guard = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }

    /// Runs `f` with the connection on a blocking thread, so the async runtime never waits on
    /// SQLite.
    pub async fn call<F, R>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Join(e.to_string()))?
    }
}
