//! Status: what replica phases mean for an API (`live`, `updating`, `error`, `stopped`), the
//! replicas and errors `cortex get` shows, and the deploy status recorded in the database.

use super::live_api::LiveApi;
use super::replica_set::ReplicaSet;
use crate::api::{ApiStatus, ReplicaInfo};
use crate::engine::ReplicaPhase;
use crate::store::{models, DeployStatus, Store};

/// What a set's members say together: ready when one is, failed when none is ready and one
/// failed, stopped when all are, initializing otherwise (starting, restarting, or empty).
pub fn set_phase(set: &ReplicaSet) -> ReplicaPhase {
    let phases: Vec<ReplicaPhase> = set.members().iter().map(|m| m.snapshot().phase).collect();
    if phases.contains(&ReplicaPhase::Ready) {
        ReplicaPhase::Ready
    } else if phases.contains(&ReplicaPhase::Failed) {
        ReplicaPhase::Failed
    } else if !phases.is_empty() && phases.iter().all(|p| *p == ReplicaPhase::Stopped) {
        ReplicaPhase::Stopped
    } else {
        ReplicaPhase::Initializing
    }
}

/// The API's status: its newest version's.
pub fn api_status(api: &LiveApi) -> ApiStatus {
    match set_phase(api.versions.newest()) {
        ReplicaPhase::Ready => ApiStatus::Live,
        ReplicaPhase::Failed => ApiStatus::Error,
        ReplicaPhase::Stopped => ApiStatus::Stopped,
        ReplicaPhase::Initializing | ReplicaPhase::Restarting => ApiStatus::Updating,
    }
}

/// The deploy status a set's phase is recorded as, when it is worth recording.
pub fn deploy_status(phase: ReplicaPhase) -> Option<DeployStatus> {
    match phase {
        ReplicaPhase::Ready => Some(DeployStatus::Complete),
        ReplicaPhase::Failed => Some(DeployStatus::Failed),
        ReplicaPhase::Initializing | ReplicaPhase::Restarting | ReplicaPhase::Stopped => None,
    }
}

/// Every replica of every version that serves, newest version first.
pub fn replicas(api: &LiveApi) -> Vec<ReplicaInfo> {
    let info = |set: &ReplicaSet, up_to_date: bool| -> Vec<ReplicaInfo> {
        set.members()
            .iter()
            .map(|m| {
                let s = m.snapshot();
                ReplicaInfo {
                    id: s.id,
                    phase: s.phase.into(),
                    up_to_date,
                    pid: s.pid,
                    port: s.port,
                    restarts: s.restarts,
                }
            })
            .collect()
    };
    let mut out = info(api.versions.newest(), true);
    for older in api.versions.older() {
        out.extend(info(&older, false));
    }
    out
}

/// Why the newest version is not live, if its replicas say (each distinct reason once).
pub fn errors(api: &LiveApi) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for member in api.versions.newest().members() {
        let s = member.snapshot();
        if let (false, Some(e)) = (s.phase == ReplicaPhase::Ready, s.last_error) {
            if !out.contains(&e) {
                out.push(e);
            }
        }
    }
    out
}

/// Records `status` for the API's latest version; a version that became ready is recorded as
/// the one that serves (a restart brings it back).
pub async fn record(store: &Store, api: &LiveApi, status: DeployStatus) {
    let (id, hash) = (api.model_id.clone(), api.spec_hash.clone());
    let result = store
        .call(move |conn| {
            if status == DeployStatus::Complete {
                models::mark_serving(conn, &id, &hash)?;
            }
            models::set_status_for_spec(conn, &id, &hash, status)
        })
        .await;
    if let Err(e) = result {
        tracing::warn!("cannot record the status of {}: {e}", api.spec.name);
    }
}
