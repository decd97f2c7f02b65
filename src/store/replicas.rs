//! Replicas: which replica (and log file) serves each model's current spec. Kept so logs stay
//! reachable when a model's replicas are not running (e.g. after a failed restore).

use rusqlite::{params, Connection, OptionalExtension};

use super::{now, StoreError};

/// Records the replica that now serves `model_id`, replacing the rows of older specs.
pub fn record(
    conn: &mut Connection,
    id: &str,
    model_id: &str,
    spec_hash: &str,
    log_path: &str,
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    tx.execute(
        "DELETE FROM replicas WHERE model_id = ?1 AND id <> ?2",
        params![model_id, id],
    )?;
    tx.execute(
        "INSERT INTO replicas (id, model_id, spec_hash, log_path, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(id) DO UPDATE SET spec_hash = excluded.spec_hash, log_path = excluded.log_path",
        params![id, model_id, spec_hash, log_path, now()],
    )?;
    tx.commit()?;
    Ok(())
}

/// The log file of the model's latest replica.
pub fn latest_log(conn: &Connection, model_id: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT log_path FROM replicas WHERE model_id = ?1 ORDER BY created_at DESC LIMIT 1",
            [model_id],
            |r| r.get(0),
        )
        .optional()?)
}
