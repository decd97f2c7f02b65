//! Warnings and errors reported by a deployment (Model Bazaar `job_logs`).

use rusqlite::{params, Connection};

use super::{now, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobLogLevel {
    Warning,
    Error,
}

impl JobLogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            JobLogLevel::Warning => "warning",
            JobLogLevel::Error => "error",
        }
    }
}

pub fn insert(
    conn: &Connection,
    model_id: &str,
    level: JobLogLevel,
    message: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO job_logs (model_id, level, message, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![model_id, level.as_str(), message, now()],
    )?;
    Ok(())
}

/// The messages of one level for a model, oldest first.
pub fn list(
    conn: &Connection,
    model_id: &str,
    level: JobLogLevel,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT message FROM job_logs WHERE model_id = ?1 AND level = ?2 ORDER BY id")?;
    let rows = stmt.query_map(params![model_id, level.as_str()], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
