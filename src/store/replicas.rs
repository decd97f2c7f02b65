//! Replicas: which replicas run each model's current spec. Kept so their logs stay reachable
//! (through the engine, by API and replica id) when a model's replicas are not running, e.g.
//! after a failed restore.

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;
use crate::clock::now;

/// Records the replicas that now run `model_id`'s spec `spec_hash`, replacing the rows of
/// other specs.
pub fn record(
    conn: &mut Connection,
    model_id: &str,
    spec_hash: &str,
    replica_ids: &[String],
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    tx.execute(
        "DELETE FROM replicas WHERE model_id = ?1 AND spec_hash <> ?2",
        params![model_id, spec_hash],
    )?;
    let created = now();
    for id in replica_ids {
        tx.execute(
            "INSERT INTO replicas (id, model_id, spec_hash, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET spec_hash = excluded.spec_hash",
            params![id, model_id, spec_hash, created],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// The id of the model's latest replica.
pub fn latest(conn: &Connection, model_id: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT id FROM replicas WHERE model_id = ?1 ORDER BY created_at DESC, id LIMIT 1",
            [model_id],
            |r| r.get(0),
        )
        .optional()?)
}
