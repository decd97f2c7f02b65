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

/// The longest message kept (longer ones are cut, and say so).
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// How many messages a model keeps (the oldest go first).
pub const MAX_MESSAGES: i64 = 1000;

/// Records a message of a deployment; the same message twice in one deployment (a replica
/// that fails the same way on every restart) is kept once.
pub fn add(
    conn: &Connection,
    model_id: &str,
    deployment: i64,
    level: Level,
    message: &str,
) -> Result<(), StoreError> {
    let message = cut(message);
    conn.execute(
        "INSERT INTO deploy_logs (model_id, deployment, level, message, created_at)
         SELECT ?1, ?2, ?3, ?4, ?5
         WHERE NOT EXISTS (SELECT 1 FROM deploy_logs
                           WHERE model_id = ?1 AND deployment = ?2 AND level = ?3 AND message = ?4)",
        params![model_id, deployment, level.as_str(), message, now()],
    )?;
    conn.execute(
        "DELETE FROM deploy_logs WHERE model_id = ?1 AND id NOT IN
           (SELECT id FROM deploy_logs WHERE model_id = ?1 ORDER BY id DESC LIMIT ?2)",
        params![model_id, MAX_MESSAGES],
    )?;
    Ok(())
}

/// `message`, cut to [`MAX_MESSAGE_BYTES`] on a character boundary.
fn cut(message: &str) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.to_string();
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} [cut at {MAX_MESSAGE_BYTES} bytes]", &message[..end])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_kept_once_per_deployment_cut_and_bounded() {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::migrations::migrate(&mut c).unwrap();
        c.execute_batch(
            "PRAGMA foreign_keys = OFF;
             INSERT INTO models (id, name, kind, owner_id, spec_json, spec_hash, bundle_sha256,
                                 config_file, created_at, updated_at)
             VALUES ('m', 'm', 'RealtimeAPI', 'u', '{}', 'h', 'b', 'c', 0, 0);",
        )
        .unwrap();
        add(&c, "m", 1, Level::Error, "boom").unwrap();
        add(&c, "m", 1, Level::Error, "boom").unwrap();
        add(&c, "m", 2, Level::Error, "boom").unwrap();
        assert_eq!(all(&c, "m").unwrap().len(), 2, "once per deployment");
        add(&c, "m", 2, Level::Warning, &"é".repeat(5000)).unwrap();
        let long = all(&c, "m").unwrap().pop().unwrap().message;
        assert!(long.len() < MAX_MESSAGE_BYTES + 40 && long.ends_with("[cut at 4096 bytes]"));
        for i in 0..MAX_MESSAGES + 5 {
            add(&c, "m", 3, Level::Warning, &i.to_string()).unwrap();
        }
        let kept = all(&c, "m").unwrap();
        assert_eq!(kept.len() as i64, MAX_MESSAGES);
        assert_eq!(kept.last().unwrap().message, (MAX_MESSAGES + 4).to_string());
    }
}
