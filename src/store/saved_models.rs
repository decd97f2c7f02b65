//! Saved models (Model Bazaar's save): a new model made from a deployed one, its own files
//! laid over the base's bundle while the save is pending, deployable once complete.

use rusqlite::{params, Connection};

use super::models::{get, ModelRow};
use super::StoreError;
use crate::clock::now;

/// Creates a saved model from `base`: `spec_json` (the base's, renamed), the base's bundle and
/// saved files, owned by `owner_id`, private, not started, and pending until its files are
/// complete. Without `inherits_env` its replicas do not load the project's `.env`. A name
/// already taken is a conflict.
pub fn create_saved(
    conn: &Connection,
    base: &ModelRow,
    name: &str,
    given_name: Option<&str>,
    owner_id: &str,
    spec_json: &str,
    inherits_env: bool,
) -> Result<ModelRow, StoreError> {
    let id = uuid::Uuid::new_v4().to_string();
    let t = now();
    let inserted = conn.execute(
        "INSERT INTO models (id, name, kind, owner_id, deploy_status, spec_json, spec_hash,
                             bundle_sha256, config_file, created_at, updated_at,
                             base_model_id, save_pending, overlay_sha256, inherits_env,
                             given_name)
         VALUES (?1, ?2, ?3, ?4, 'not_started', ?5, '', ?6, ?7, ?8, ?8, ?9, 1, ?10, ?11, ?12)
         ON CONFLICT DO NOTHING",
        params![
            id,
            name,
            base.kind,
            owner_id,
            spec_json,
            base.bundle_sha256,
            base.config_file,
            t,
            base.id,
            base.overlay_sha256,
            inherits_env && base.inherits_env,
            given_name,
        ],
    )?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!(
            "a model named {:?} already exists; choose another model_name",
            given_name.unwrap_or(name)
        )));
    }
    get(conn, &id)?.ok_or_else(|| StoreError::Corrupt(format!("model {id} vanished")))
}

/// Puts `overlay_sha256` (a saved model's files) over the model's bundle and over the files
/// it already has (a model saved from a saved model keeps both), while the save is pending.
pub fn set_overlay(conn: &Connection, id: &str, overlay_sha256: &str) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE models SET overlay_sha256 = CASE WHEN overlay_sha256 IS NULL THEN ?2
                                             ELSE overlay_sha256 || ',' || ?2 END
         WHERE id = ?1 AND save_pending = 1",
        params![id, overlay_sha256],
    )?;
    if n == 0 {
        return Err(StoreError::Conflict(format!(
            "model {id} is not being saved any more; its files cannot change"
        )));
    }
    Ok(())
}

/// A saved model's files are complete: it can be deployed. Its update token stays valid until
/// it expires (Model Bazaar's save job may say `complete` more than once); it uploads no more
/// files once the save is complete.
pub fn finish_save(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE models SET save_pending = 0 WHERE id = ?1", [id])?;
    Ok(())
}
