//! A model's deploy status and deployment numbers, and who may change them when: the server
//! observing its replicas, a deployment's job reporting, an undeploy, a new version. Each
//! write names the deployment it is about, so a newer deploy or an undeploy wins over news of
//! an older one.

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;
use crate::clock::now;

/// Model Bazaar deploy statuses, exact strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployStatus {
    NotStarted,
    Starting,
    InProgress,
    Complete,
    Stopped,
    Failed,
}

impl DeployStatus {
    pub const ALL: [DeployStatus; 6] = [
        DeployStatus::NotStarted,
        DeployStatus::Starting,
        DeployStatus::InProgress,
        DeployStatus::Complete,
        DeployStatus::Stopped,
        DeployStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeployStatus::NotStarted => "not_started",
            DeployStatus::Starting => "starting",
            DeployStatus::InProgress => "in_progress",
            DeployStatus::Complete => "complete",
            DeployStatus::Stopped => "stopped",
            DeployStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DeployStatus> {
        DeployStatus::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Whether replicas should be running for a model in this status.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            DeployStatus::Starting | DeployStatus::InProgress | DeployStatus::Complete
        )
    }
}

pub fn set_status(conn: &Connection, id: &str, status: DeployStatus) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE models SET deploy_status = ?2 WHERE id = ?1",
        params![id, status.as_str()],
    )?;
    Ok(())
}

/// Makes `spec_hash` the model's version (its parameters changed) and marks it starting.
pub fn set_version(conn: &Connection, id: &str, spec_hash: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE models SET spec_hash = ?2, deploy_status = 'starting', updated_at = ?3
         WHERE id = ?1",
        params![id, spec_hash, now()],
    )?;
    Ok(())
}

/// Counts a new deployment of the model and returns its number.
pub fn next_deployment(conn: &Connection, id: &str) -> Result<i64, StoreError> {
    conn.query_row(
        "UPDATE models SET deployment = deployment + 1 WHERE id = ?1 RETURNING deployment",
        [id],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("model {id} does not exist")))
}

/// Makes `deployment` the model's current one again (a deploy went back to a version that
/// still serves).
pub fn set_deployment(conn: &Connection, id: &str, deployment: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE models SET deployment = ?2 WHERE id = ?1",
        params![id, deployment],
    )?;
    Ok(())
}

/// Records what the server observed of deployment `deployment`, while it is still the model's
/// current one and the model is not stopped (a newer deploy, or an undeploy, wins). A
/// deployment whose job reported its own status keeps it, but for `failed` (a crash loop).
/// True when it was written.
pub fn observe_status(
    conn: &Connection,
    id: &str,
    deployment: i64,
    status: DeployStatus,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE models SET deploy_status = ?3
         WHERE id = ?1 AND deployment = ?2 AND deploy_status <> 'stopped'
           AND (?3 = 'failed' OR reported_deployment IS NOT ?2)",
        params![id, deployment, status.as_str()],
    )?;
    Ok(n > 0)
}

/// Records the status deployment `deployment`'s job reported, while it is the model's current
/// one and was not undeployed (a job may report `stopped` itself and go on). True when it was
/// written.
pub fn report_status(
    conn: &Connection,
    id: &str,
    deployment: i64,
    status: DeployStatus,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE models SET deploy_status = ?3, reported_deployment = ?2
         WHERE id = ?1 AND deployment = ?2
           AND (deploy_status <> 'stopped' OR reported_deployment IS ?2)",
        params![id, deployment, status.as_str()],
    )?;
    Ok(n > 0)
}

/// Undeploys the model: `stopped`, and no job of its may report again.
pub fn undeploy(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE models SET deploy_status = 'stopped', reported_deployment = NULL WHERE id = ?1",
        [id],
    )?;
    Ok(())
}

/// Changes the status from `from` to `to`, only if it still is `from` for that deployment.
pub fn compare_and_set_status(
    conn: &Connection,
    id: &str,
    deployment: i64,
    from: DeployStatus,
    to: DeployStatus,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE models SET deploy_status = ?4
         WHERE id = ?1 AND deployment = ?2 AND deploy_status = ?3",
        params![id, deployment, from.as_str(), to.as_str()],
    )?;
    Ok(n > 0)
}

/// Records that the spec `spec_hash`, deployment `deployment`, serves (its replicas became
/// ready), while it is still the model's spec.
pub fn mark_serving(
    conn: &Connection,
    id: &str,
    spec_hash: &str,
    deployment: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE models SET serving_spec_json = spec_json, serving_spec_hash = spec_hash,
                serving_bundle_sha256 = bundle_sha256, serving_deployment = ?3
         WHERE id = ?1 AND spec_hash = ?2",
        params![id, spec_hash, deployment],
    )?;
    Ok(())
}
