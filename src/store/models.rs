//! Models: one row per deployed API (Model Bazaar calls them models), with the validated spec.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::model_status::DeployStatus;
use super::StoreError;
use crate::clock::now;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub owner_id: String,
    pub deploy_status: DeployStatus,
    pub spec_json: String,
    pub spec_hash: String,
    pub bundle_sha256: String,
    pub config_file: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The spec that last became ready, when it is not `spec_hash` (a newer spec that has not
    /// served yet): what a restart starts next to it so predictions keep being answered.
    pub serving: Option<ServingSpec>,
    /// Whether its current spec served (its replicas became ready) at least once.
    pub current_served: bool,
    /// `private`, `protected` or `public`.
    pub access: String,
    /// `read` or `write`: what team members (protected) or everyone (public) may do.
    pub default_permission: String,
    /// The team of a protected model.
    pub team_id: Option<String>,
    /// The extra route `/<deployment_name>` a Model Bazaar deploy asked for.
    pub deployment_name: Option<String>,
    /// The parameters of the last Model Bazaar deploy (JSON), applied over the spec.
    pub deploy_params_json: Option<String>,
    /// What the deployment reported with `update-status` (JSON).
    pub metadata_json: Option<String>,
    /// The number of the current deployment (each deploy of a new version counts one up).
    pub deployment: i64,
    /// A saved model's base.
    pub base_model_id: Option<String>,
    /// A saved model whose files are not complete yet: it cannot be deployed.
    pub save_pending: bool,
    /// Files unpacked over the bundle (a saved model's), oldest first, comma-separated.
    pub overlay_sha256: Option<String>,
    /// False for a model saved by someone who could not see the base's secrets: its replicas
    /// do not load the project's `.env`.
    pub inherits_env: bool,
    /// The name its caller gave, when it is not a route segment (`name` is derived from it).
    pub given_name: Option<String>,
    /// The deployment whose job reported its own status (`update-status`): while it is the
    /// current one, its word stands over what the server observes, but for a crash loop.
    pub reported_deployment: Option<i64>,
}

impl ModelRow {
    /// The name to show: what its caller gave.
    pub fn display_name(&self) -> &str {
        self.given_name.as_deref().unwrap_or(&self.name)
    }

    /// Whether the current deployment's job has reported its status.
    pub fn reported(&self) -> bool {
        self.reported_deployment == Some(self.deployment)
    }
}

/// A spec that served: its JSON, hash and bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingSpec {
    pub spec_json: String,
    pub spec_hash: String,
    pub bundle_sha256: String,
    /// Its deployment's number (unknown for a spec that served before the server kept it).
    pub deployment: Option<i64>,
}

const COLUMNS: &str = "id, name, kind, owner_id, deploy_status, spec_json, spec_hash, \
                       bundle_sha256, config_file, created_at, updated_at, \
                       serving_spec_json, serving_spec_hash, serving_bundle_sha256, \
                       access, default_permission, team_id, deployment_name, \
                       deploy_params_json, metadata_json, deployment, base_model_id, \
                       save_pending, overlay_sha256, inherits_env, given_name, \
                       reported_deployment, serving_deployment";

fn from_row(r: &Row<'_>) -> rusqlite::Result<ModelRow> {
    let status: String = r.get(4)?;
    let spec_hash: String = r.get(6)?;
    let serving_hash = r.get::<_, Option<String>>(12)?;
    let current_served = serving_hash.as_ref() == Some(&spec_hash);
    let serving = match (
        r.get::<_, Option<String>>(11)?,
        serving_hash,
        r.get::<_, Option<String>>(13)?,
    ) {
        (Some(spec_json), Some(serving_hash), Some(bundle_sha256)) if serving_hash != spec_hash => {
            Some(ServingSpec {
                spec_json,
                spec_hash: serving_hash,
                bundle_sha256,
                deployment: r.get(27)?,
            })
        }
        _ => None,
    };
    Ok(ModelRow {
        id: r.get(0)?,
        name: r.get(1)?,
        kind: r.get(2)?,
        owner_id: r.get(3)?,
        deploy_status: DeployStatus::parse(&status).unwrap_or(DeployStatus::Failed),
        spec_json: r.get(5)?,
        spec_hash,
        bundle_sha256: r.get(7)?,
        config_file: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        serving,
        current_served,
        access: r.get(14)?,
        default_permission: r.get(15)?,
        team_id: r.get(16)?,
        deployment_name: r.get(17)?,
        deploy_params_json: r.get(18)?,
        metadata_json: r.get(19)?,
        deployment: r.get(20)?,
        base_model_id: r.get(21)?,
        save_pending: r.get(22)?,
        overlay_sha256: r.get(23)?,
        inherits_env: r.get(24)?,
        given_name: r.get(25)?,
        reported_deployment: r.get(26)?,
    })
}

pub fn get_by_name(conn: &Connection, name: &str) -> Result<Option<ModelRow>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM models WHERE name = ?1 OR given_name = ?1"),
            [name],
            from_row,
        )
        .optional()?)
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<ModelRow>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM models WHERE id = ?1"),
            [id],
            from_row,
        )
        .optional()?)
}

pub fn list(conn: &Connection) -> Result<Vec<ModelRow>, StoreError> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM models ORDER BY name"))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What [`save_spec`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Created,
    Updated,
    Unchanged,
}

/// A spec to store for the model of its name (see [`save_specs`]).
#[derive(Debug, Clone)]
pub struct NewSpec {
    pub name: String,
    pub kind: String,
    pub owner_id: String,
    pub spec_json: String,
    pub spec_hash: String,
    pub bundle_sha256: String,
    pub config_file: String,
    /// The Model Bazaar deploy parameters that stay over a new spec (`None`: none).
    pub deploy_params_json: Option<String>,
}

/// Creates the model or stores a new spec for it, in one transaction. An unchanged spec hash on
/// an active model changes nothing.
#[allow(clippy::too_many_arguments)]
pub fn save_spec(
    conn: &mut Connection,
    name: &str,
    kind: &str,
    owner_id: &str,
    spec_json: &str,
    spec_hash: &str,
    bundle_sha256: &str,
    config_file: &str,
) -> Result<(ModelRow, Saved), StoreError> {
    let new = NewSpec {
        name: name.to_string(),
        kind: kind.to_string(),
        owner_id: owner_id.to_string(),
        spec_json: spec_json.to_string(),
        spec_hash: spec_hash.to_string(),
        bundle_sha256: bundle_sha256.to_string(),
        config_file: config_file.to_string(),
        deploy_params_json: None,
    };
    Ok(save_specs(conn, std::slice::from_ref(&new))?.remove(0))
}

/// Stores every spec of a file in one transaction: all of them, or none (a conflict or a
/// failed write leaves every model as it was).
pub fn save_specs(
    conn: &mut Connection,
    specs: &[NewSpec],
) -> Result<Vec<(ModelRow, Saved)>, StoreError> {
    let tx = conn.transaction()?;
    let mut out = Vec::with_capacity(specs.len());
    for new in specs {
        out.push(save_one(&tx, new)?);
    }
    tx.commit()?;
    Ok(out)
}

fn save_one(tx: &Connection, new: &NewSpec) -> Result<(ModelRow, Saved), StoreError> {
    let NewSpec {
        name,
        kind,
        owner_id,
        spec_json,
        spec_hash,
        bundle_sha256,
        config_file,
        deploy_params_json,
    } = new;
    let existing = get_by_name(tx, name)?;
    let saved = match &existing {
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            let t = now();
            tx.execute(
                "INSERT INTO models (id, name, kind, owner_id, deploy_status, spec_json, spec_hash,
                                     bundle_sha256, config_file, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 'starting', ?5, ?6, ?7, ?8, ?9, ?9)",
                params![
                    id,
                    name,
                    kind,
                    owner_id,
                    spec_json,
                    spec_hash,
                    bundle_sha256,
                    config_file,
                    t
                ],
            )?;
            Saved::Created
        }
        Some(row) if row.kind != *kind => {
            return Err(StoreError::Conflict(format!(
                "{name} is already deployed as a {}; its kind cannot change (delete it first with `cortex delete {name}`)",
                row.kind
            )));
        }
        // Decided by the hash alone: a failing API with the same spec keeps retrying on its
        // own (with back-off), so redeploying it unchanged changes nothing.
        Some(row) if row.spec_hash == *spec_hash => {
            // What runs is the same, but the file and the parameters kept over it are the
            // newest word: what a later deploy compares against.
            tx.execute(
                "UPDATE models SET spec_json = ?2, deploy_params_json = ?3
                 WHERE id = ?1 AND (spec_json IS NOT ?2 OR deploy_params_json IS NOT ?3)",
                params![row.id, spec_json, deploy_params_json],
            )?;
            Saved::Unchanged
        }
        Some(row) => {
            tx.execute(
                "UPDATE models SET spec_json = ?2, spec_hash = ?3, bundle_sha256 = ?4,
                        config_file = ?5, deploy_status = 'starting', updated_at = ?6,
                        overlay_sha256 = NULL, deploy_params_json = ?7
                 WHERE id = ?1",
                params![
                    row.id,
                    spec_json,
                    spec_hash,
                    bundle_sha256,
                    config_file,
                    now(),
                    deploy_params_json
                ],
            )?;
            Saved::Updated
        }
    };
    let row = get_by_name(tx, name)?
        .ok_or_else(|| StoreError::Corrupt(format!("model {name} vanished while saving")))?;
    Ok((row, saved))
}

/// Sets who may see the model beyond its owner.
pub fn set_access(
    conn: &Connection,
    id: &str,
    access: &str,
    team_id: Option<&str>,
    default_permission: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE models SET access = ?2, team_id = ?3, default_permission = ?4 WHERE id = ?1",
        params![id, access, team_id, default_permission],
    )?;
    Ok(())
}

/// Stores the parameters of a Model Bazaar deploy; `deployment_name` is unique among models.
pub fn set_deploy_params(
    conn: &Connection,
    id: &str,
    deployment_name: Option<&str>,
    params_json: &str,
) -> Result<(), StoreError> {
    let taken: Option<String> = match deployment_name {
        Some(name) => conn
            .query_row(
                "SELECT name FROM models WHERE deployment_name = ?1 AND id <> ?2",
                params![name, id],
                |r| r.get(0),
            )
            .optional()?,
        None => None,
    };
    if let (Some(other), Some(name)) = (taken, deployment_name) {
        return Err(StoreError::Conflict(format!(
            "deployment_name {name:?} is already used by model {other}; choose another name"
        )));
    }
    conn.execute(
        "UPDATE models SET deployment_name = ?2, deploy_params_json = ?3 WHERE id = ?1",
        params![id, deployment_name, params_json],
    )?;
    Ok(())
}

/// Stores what the deployment reported about itself.
pub fn set_metadata(conn: &Connection, id: &str, metadata_json: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE models SET metadata_json = ?2 WHERE id = ?1",
        params![id, metadata_json],
    )?;
    Ok(())
}

/// Forgets a model and everything hanging off it.
pub fn delete(conn: &mut Connection, id: &str) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    tx.execute(
        "DELETE FROM tokens WHERE kind = 'job' AND model_id = ?1",
        [id],
    )?;
    tx.execute("DELETE FROM models WHERE id = ?1", [id])?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model_status::mark_serving;
    use crate::store::{migrations::migrate, users};

    #[test]
    fn save_spec_creates_updates_and_detects_no_change() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        let u = users::create_user(&c, "admin", true).unwrap();
        c.execute(
            "INSERT INTO bundles (sha256, size, created_at) VALUES ('b', 1, 0)",
            [],
        )
        .unwrap();
        let save = |c: &mut Connection, hash: &str, kind: &str| {
            save_spec(c, "api", kind, &u.id, "{}", hash, "b", "cortex.yaml")
        };
        assert_eq!(save(&mut c, "h1", "RealtimeAPI").unwrap().1, Saved::Created);
        assert_eq!(
            save(&mut c, "h1", "RealtimeAPI").unwrap().1,
            Saved::Unchanged
        );
        assert_eq!(save(&mut c, "h2", "RealtimeAPI").unwrap().1, Saved::Updated);
        assert!(matches!(
            save(&mut c, "h2", "BatchAPI"),
            Err(StoreError::Conflict(_))
        ));
        let row = get_by_name(&c, "api").unwrap().unwrap();
        assert_eq!(row.spec_hash, "h2");
        delete(&mut c, &row.id).unwrap();
        assert!(get_by_name(&c, "api").unwrap().is_none());
    }

    #[test]
    fn the_spec_that_served_is_kept_while_a_newer_one_has_not() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        let u = users::create_user(&c, "admin", true).unwrap();
        c.execute(
            "INSERT INTO bundles (sha256, size, created_at) VALUES ('b1', 1, 0), ('b2', 1, 0)",
            [],
        )
        .unwrap();
        let save = |c: &mut Connection, json: &str, hash: &str, bundle: &str| {
            save_spec(
                c,
                "api",
                "RealtimeAPI",
                &u.id,
                json,
                hash,
                bundle,
                "cortex.yaml",
            )
            .unwrap()
            .0
        };
        let a = save(&mut c, "{\"v\":1}", "h1", "b1");
        assert_eq!(a.serving, None, "nothing served yet");
        mark_serving(&c, &a.id, "h1", 1).unwrap();
        assert_eq!(
            get(&c, &a.id).unwrap().unwrap().serving,
            None,
            "it is the spec"
        );
        let b = save(&mut c, "{\"v\":2}", "h2", "b2");
        assert_eq!(
            b.serving,
            Some(ServingSpec {
                spec_json: "{\"v\":1}".into(),
                spec_hash: "h1".into(),
                bundle_sha256: "b1".into(),
                deployment: Some(1),
            })
        );
        // A generation that is no longer the spec cannot claim to serve it.
        mark_serving(&c, &a.id, "h1", 1).unwrap();
        assert_eq!(get(&c, &a.id).unwrap().unwrap().serving, b.serving);
        mark_serving(&c, &a.id, "h2", 2).unwrap();
        assert_eq!(get(&c, &a.id).unwrap().unwrap().serving, None);
    }
}
