//! Errors and warnings a deployment reported (through `/api/v2/deploy/log`), per deployment:
//! a new deployment of a model starts with clean lists; earlier ones stay readable.

use rusqlite::{params, Connection};

use super::StoreError;
use crate::clock::now;

/// The two levels a deployment may log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Warning,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        [Level::Warning, Level::Error]
            .into_iter()
            .find(|l| l.as_str() == s)
    }
}

/// One logged message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub deployment: i64,
    pub level: Level,
    pub message: String,
    pub created_at: i64,
}

pub fn add(
    conn: &Connection,
    model_id: &str,
    deployment: i64,
    level: Level,
    message: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO deploy_logs (model_id, deployment, level, message, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![model_id, deployment, level.as_str(), message, now()],
    )?;
    Ok(())
}

/// Every message of the model, oldest first.
pub fn all(conn: &Connection, model_id: &str) -> Result<Vec<Entry>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT deployment, level, message, created_at FROM deploy_logs
         WHERE model_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([model_id], |r| {
        let level: String = r.get(1)?;
        Ok(Entry {
            deployment: r.get(0)?,
            level: Level::parse(&level).unwrap_or(Level::Error),
            message: r.get(2)?,
            created_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The errors and the warnings of one deployment, oldest first.
pub fn of_deployment(
    conn: &Connection,
    model_id: &str,
    deployment: i64,
) -> Result<(Vec<String>, Vec<String>), StoreError> {
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    for e in all(conn, model_id)? {
        if e.deployment != deployment {
            continue;
        }
        match e.level {
            Level::Error => errors.push(e.message),
            Level::Warning => warnings.push(e.message),
        }
    }
    Ok((errors, warnings))
}
