//! Status: what replica phases mean for an API (`live`, `updating`, `error`, `stopped`), the
//! replicas and errors `cortex get` shows, and the deploy status recorded in the database.

use std::collections::HashMap;
use std::sync::Mutex;

use super::live_api::LiveApi;
use super::replica_set::ReplicaSet;
use crate::api::{ApiStatus, DeploymentInfo, DeploymentMessage, DeploymentStatus, ReplicaInfo};
use crate::engine::ReplicaPhase;
use crate::store::model_status;
use crate::store::{deploy_logs, DeployStatus, ModelRow, Store, StoreError};

/// What a set's members say together: stopped once it is stopped, ready when one member is
/// (or when it is scaled to zero: it serves by starting one), failed when none is ready and
/// one failed, stopped when all are, pending when one waits for compute, initializing
/// otherwise (starting, restarting, or empty).
pub fn set_phase(set: &ReplicaSet) -> ReplicaPhase {
    if set.is_stopped() {
        return ReplicaPhase::Stopped;
    }
    let phases: Vec<ReplicaPhase> = set.members().iter().map(|m| m.snapshot().phase).collect();
    if phases.is_empty() && set.desired() == 0 {
        return ReplicaPhase::Ready;
    }
    if phases.contains(&ReplicaPhase::Ready) {
        ReplicaPhase::Ready
    } else if phases.contains(&ReplicaPhase::Failed) {
        ReplicaPhase::Failed
    } else if !phases.is_empty() && phases.iter().all(|p| *p == ReplicaPhase::Stopped) {
        ReplicaPhase::Stopped
    } else if phases.contains(&ReplicaPhase::Pending) {
        ReplicaPhase::Pending
    } else {
        ReplicaPhase::Initializing
    }
}

/// The API's status: its newest version's.
pub fn api_status(api: &LiveApi) -> ApiStatus {
    if !api.is_realtime() {
        // Deployed is ready: a BatchAPI takes jobs (whose workers have their own status), a
        // TrafficSplitter passes requests on (its APIs have their own).
        return ApiStatus::Live;
    }
    let newest = api.versions.newest();
    match set_phase(newest) {
        ReplicaPhase::Ready => ApiStatus::Live,
        ReplicaPhase::Failed | ReplicaPhase::Initializing | ReplicaPhase::Restarting
            if newest.members().iter().any(|m| m.snapshot().out_of_memory) =>
        {
            ApiStatus::ErrorOutOfMemory
        }
        ReplicaPhase::Failed => ApiStatus::Error,
        ReplicaPhase::Stopped => ApiStatus::Stopped,
        ReplicaPhase::Pending => ApiStatus::ComputeUnavailable,
        ReplicaPhase::Initializing | ReplicaPhase::Restarting => ApiStatus::Updating,
    }
}

/// The deploy status a set's phase is recorded as, when it is worth recording.
pub fn deploy_status(phase: ReplicaPhase) -> Option<DeployStatus> {
    match phase {
        ReplicaPhase::Ready => Some(DeployStatus::Complete),
        ReplicaPhase::Failed => Some(DeployStatus::Failed),
        ReplicaPhase::Pending
        | ReplicaPhase::Initializing
        | ReplicaPhase::Restarting
        | ReplicaPhase::Stopped => None,
    }
}

/// What the reconcile loop records when the status in the database and reality disagree:
/// an active model whose newest version failed, or that nothing runs, is `failed`; a
/// starting one whose newest version is ready is `complete`, unless its job has `reported`
/// its own status (its word stands). Anything else (`in_progress` and `failed` reported by a
/// deployment itself, `stopped`) is left as it is.
pub fn reconciled(
    recorded: DeployStatus,
    newest: Option<ReplicaPhase>,
    reported: bool,
) -> Option<DeployStatus> {
    let active = recorded.is_active();
    match newest {
        None if active => Some(DeployStatus::Failed),
        Some(ReplicaPhase::Failed) if active => Some(DeployStatus::Failed),
        Some(ReplicaPhase::Ready) if recorded == DeployStatus::Starting && !reported => {
            Some(DeployStatus::Complete)
        }
        _ => None,
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
                    node: s.node,
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
                let hint = error_hint(&e);
                out.push(e);
                out.extend(hint.filter(|h| !out.contains(h)));
            }
        }
    }
    out
}

/// For an error that is a `ModuleNotFoundError`, what to do about it: cortex 0.2x images came
/// with packages that a project here must list itself. A module missing while pip builds a
/// package is the build's (an old pin with no wheel for this Python), not the predictor's.
fn error_hint(error: &str) -> Option<String> {
    if error.contains("pip exited with status") {
        return Some(
            "hint: pip could not install requirements.txt (its output is in `cortex logs`); a package with no wheel for this python that fails to build (an old pin) needs unpinning, or `python=3.X` in conda-packages.txt (README, Python predictors)"
                .to_string(),
        );
    }
    let at = error.rfind("ModuleNotFoundError: No module named ")?;
    let rest = &error[at + "ModuleNotFoundError: No module named ".len()..];
    let module = rest
        .trim_start_matches(['\'', '"'])
        .split(['\'', '"', '\n'])
        .next()?
        .split('.')
        .next()?;
    Some(format!(
        "hint: the predictor imports {module:?}, which is not installed; cortex 0.2x images came with some packages installed, here add the package that provides it to requirements.txt next to cortex.yaml"
    ))
}

/// What `cortex get` shows of an API's replicas.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub status: ApiStatus,
    /// How many replicas the newest version should have.
    pub requested: u32,
    /// Ready replicas of the newest version.
    pub up_to_date: u32,
    pub replicas: Vec<ReplicaInfo>,
    pub errors: Vec<String>,
}

/// The summary of an API: from what runs, or, when nothing does, from why it could not be
/// started again after a restart (`error`) or `stopped`.
pub fn summary(live: Option<&LiveApi>, restore_error: Option<String>) -> Summary {
    let Some(live) = live else {
        return Summary {
            status: if restore_error.is_some() {
                ApiStatus::Error
            } else {
                ApiStatus::Stopped
            },
            requested: 0,
            up_to_date: 0,
            replicas: Vec::new(),
            errors: restore_error.into_iter().collect(),
        };
    };
    let replicas = replicas(live);
    let up_to_date = replicas
        .iter()
        .filter(|r| r.up_to_date && r.phase == crate::api::ReplicaPhase::Ready)
        .count() as u32;
    Summary {
        status: api_status(live),
        requested: live.versions.newest().desired(),
        up_to_date,
        replicas,
        errors: errors(live),
    }
}

/// Why APIs could not be started again when the server started, by name (until they are
/// deployed again).
#[derive(Debug, Default)]
pub struct RestoreErrors(Mutex<HashMap<String, String>>);

impl RestoreErrors {
    pub fn set(&self, name: &str, why: String) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), why);
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn clear(&self, name: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}

/// Records `status` for the API's latest version; a version that became ready is recorded as
/// the one that serves (a restart brings it back).
pub async fn record(store: &Store, api: &LiveApi, status: DeployStatus) {
    let (id, hash) = (api.model_id.clone(), api.spec_hash.clone());
    let deployment = api.versions.newest().deployment();
    let result = store
        .call(move |conn| {
            if status == DeployStatus::Complete {
                model_status::mark_serving(conn, &id, &hash, deployment)?;
            }
            model_status::observe_status(conn, &id, deployment, status)
        })
        .await;
    if let Err(e) = result {
        tracing::warn!("cannot record the status of {}: {e}", api.spec.name);
    }
}

/// A model's deployment: as the Model Bazaar status route shows it (its recorded status, the
/// current deployment's errors and warnings, with what its replicas say when it failed), and as
/// `cortex get` shows it (the status, what it reported, and the messages of every deployment,
/// each once: the replicas' errors are the API's own `errors` there).
pub async fn deployment(
    store: &Store,
    row: &ModelRow,
    live: Option<&LiveApi>,
    restore_error: Option<String>,
) -> Result<(DeploymentStatus, DeploymentInfo), StoreError> {
    let id = row.id.clone();
    let history = store.call(move |c| deploy_logs::all(c, &id)).await?;
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    for e in history.iter().filter(|e| e.deployment == row.deployment) {
        match e.level {
            deploy_logs::Level::Error => errors.push(e.message.clone()),
            deploy_logs::Level::Warning => warnings.push(e.message.clone()),
        }
    }
    // A deployment whose job reports owns its errors; for one that never did, the server says
    // why it failed, in one short line (the replica's output is in its logs).
    if row.deploy_status == DeployStatus::Failed && !row.reported() {
        if let Some(why) = summary(live, restore_error).errors.first() {
            errors.push(short_line(why));
        }
    }
    // A version that became ready a moment ago is complete, even before its watcher (or the
    // reconcile loop) has written it down: the status route and `cortex get` follow reality,
    // unless the deployment's job reported its own status.
    let ready_now = live.is_some_and(|live| {
        live.spec_hash == row.spec_hash && set_phase(live.versions.newest()) == ReplicaPhase::Ready
    });
    let status = match row.deploy_status {
        DeployStatus::Starting if ready_now && !row.reported() => DeployStatus::Complete,
        recorded => recorded,
    };
    let info = DeploymentInfo {
        number: row.deployment,
        status: status.as_str().to_string(),
        metadata: row
            .metadata_json
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok()),
        deployment_name: row.deployment_name.clone(),
        history: history
            .into_iter()
            .map(|e| DeploymentMessage {
                deployment: e.deployment,
                level: e.level.as_str().to_string(),
                message: e.message,
                time: e.created_at,
            })
            .collect(),
    };
    let status = DeploymentStatus {
        status: info.status.clone(),
        errors,
        warnings,
    };
    Ok((status, info))
}

/// The longest line the server adds to a deployment's `errors`.
const SHORT_LINE: usize = 200;

/// The first line of `text`, at most [`SHORT_LINE`] characters (`…` when cut).
fn short_line(text: &str) -> String {
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if first.chars().count() <= SHORT_LINE {
        return first.to_string();
    }
    let mut cut: String = first.chars().take(SHORT_LINE - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_module_gets_the_hint_naming_its_top_package() {
        let e = "Traceback (most recent call last):\n  File \"predictor.py\", line 1\nModuleNotFoundError: No module named 'sklearn.linear_model'";
        let hint = super::error_hint(e).unwrap();
        assert!(hint.contains("\"sklearn\""), "{hint}");
        assert!(hint.contains("requirements.txt"), "{hint}");
        assert_eq!(super::error_hint("ValueError: no"), None);
        // Cython missing while pip builds scikit-learn==0.21.3: the build's, not the predictor's.
        let pip = "failed to prepare the virtualenv: pip exited with status 1; its output is above\n  ModuleNotFoundError: No module named 'Cython'";
        let hint = super::error_hint(pip).unwrap();
        assert!(hint.contains("pip could not install"), "{hint}");
        assert!(!hint.contains("the predictor imports"), "{hint}");
    }

    use super::*;

    #[test]
    fn the_server_adds_one_short_line() {
        assert_eq!(
            short_line("\n  exit 3: bad model\nTraceback..."),
            "exit 3: bad model"
        );
        let long = "x".repeat(500);
        assert_eq!(short_line(&long).chars().count(), SHORT_LINE);
    }

    #[test]
    fn reconciling_repairs_drift_and_respects_what_deployments_report() {
        use DeployStatus::*;
        let cases = [
            (Complete, None, Some(Failed)),
            (Starting, None, Some(Failed)),
            (InProgress, Some(ReplicaPhase::Failed), Some(Failed)),
            (Starting, Some(ReplicaPhase::Ready), Some(Complete)),
            (InProgress, Some(ReplicaPhase::Ready), None),
            (Complete, Some(ReplicaPhase::Ready), None),
            (Complete, Some(ReplicaPhase::Restarting), None),
            (Failed, Some(ReplicaPhase::Ready), None),
            (Stopped, None, None),
            (NotStarted, None, None),
        ];
        for (recorded, newest, want) in cases {
            assert_eq!(
                reconciled(recorded, newest, false),
                want,
                "{recorded:?} {newest:?}"
            );
        }
        // A job that reported keeps its word over readiness, not over a crash loop.
        assert_eq!(reconciled(Starting, Some(ReplicaPhase::Ready), true), None);
        assert_eq!(
            reconciled(Complete, Some(ReplicaPhase::Failed), true),
            Some(Failed)
        );
    }
}
