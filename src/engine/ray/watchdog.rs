//! The engine's periodic work: a driver for every group that needs one (submitted as a Ray
//! job, resubmitted when it ended: the new driver adopts the actors by name), stops that no
//! driver confirmed within their time, and the list of the cluster's nodes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cluster_api::JobSubmission;
use super::effects::Effect;
use super::handle::RayReplica;
use super::{effects, Shared};
use crate::engine::ReplicaPhase;

const TICK: Duration = Duration::from_millis(500);
/// A driver that has not synced this long is asked about (its job may have ended).
const DRIVER_SILENT: Duration = Duration::from_secs(5);
/// How often a silent driver's job is asked about.
const CHECK_EVERY: Duration = Duration::from_secs(3);
/// After a failed submission.
const RETRY_SUBMIT: Duration = Duration::from_secs(5);
const NODES_EVERY: Duration = Duration::from_secs(5);
/// How long a retired group waits for a driver to remove its actors before it is forgotten.
const RETIRED_FOR: Duration = Duration::from_secs(300);
/// Seconds between a driver's syncs.
const SYNC_INTERVAL: &str = "0.5";

pub(super) async fn run(shared: Arc<Shared>) {
    let mut nodes_at: Option<Instant> = None;
    loop {
        tokio::select! {
            () = shared.closing.cancelled() => return,
            () = tokio::time::sleep(TICK) => {}
        }
        end_overdue_stops(&shared);
        for (name, job) in due_submissions(&shared) {
            tokio::spawn(submit(shared.clone(), name, job));
        }
        for (name, job) in silent_drivers(&shared) {
            tokio::spawn(check_driver(shared.clone(), name, job));
        }
        if nodes_at.is_none_or(|at| at.elapsed() >= NODES_EVERY) {
            nodes_at = Some(Instant::now());
            if let Ok(nodes) = shared.cluster.nodes().await {
                *shared.nodes.lock().unwrap_or_else(|p| p.into_inner()) = nodes;
            }
        }
    }
}

/// Stops whose driver has not confirmed them in time are taken as done; a group they leave
/// empty is retired (a driver must still remove its actors), and forgotten after a while.
fn end_overdue_stops(shared: &Shared) {
    let now = Instant::now();
    let mut groups = shared.lock();
    let names: Vec<String> = groups.by_name.keys().cloned().collect();
    for name in names {
        if let Some(group) = groups.by_name.get_mut(&name) {
            let overdue: Vec<String> = group
                .replicas
                .iter()
                .filter(|(_, r)| r.read(|t| t.stop.is_some_and(|d| d <= now)))
                .map(|(id, _)| id.clone())
                .collect();
            for id in overdue {
                if let Some(r) = group.replicas.remove(&id) {
                    r.finish();
                }
            }
        }
        groups.retire_if_empty(&name, now);
    }
    groups
        .by_name
        .retain(|_, g| g.retired_at.is_none_or(|at| now - at < RETIRED_FOR));
}

/// The groups that need a driver now: (name, the submission to make).
fn due_submissions(shared: &Shared) -> Vec<(String, JobSubmission)> {
    let now = Instant::now();
    let mut due = Vec::new();
    let mut groups = shared.lock();
    for (name, group) in groups.by_name.iter_mut() {
        // A retired group needs a driver too: to remove the actors its last one left.
        let wanted = group.retired_at.is_some()
            || group
                .replicas
                .values()
                .any(|r| r.read(|t| t.stop.is_none() && t.desired.working_dir.is_some()));
        if group.job.is_some()
            || group.submitting
            || !wanted
            || group.retry_submit_at.is_some_and(|at| at > now)
        {
            continue;
        }
        group.submitting = true;
        let suffix: u32 = rand::random();
        let env = serde_json::json!({
            "CORTEX_RAY_SERVER": shared.url,
            "CORTEX_RAY_GROUP": name,
            "CORTEX_RAY_TOKEN": group.token,
            "CORTEX_RAY_INTERVAL": SYNC_INTERVAL,
        });
        due.push((
            name.clone(),
            JobSubmission {
                submission_id: format!("cortex-{name}-{suffix:08x}"),
                entrypoint: format!("{} -m cortex_ray", shell_words::quote(&shared.python)),
                runtime_env: serde_json::json!({
                    "working_dir": shared.bundle_url(&shared.driver_bundle),
                    "env_vars": env,
                }),
                metadata: [("cortex_group".to_string(), name.clone())].into(),
                entrypoint_num_cpus: 0.0,
            },
        ));
    }
    due
}

async fn submit(shared: Arc<Shared>, name: String, job: JobSubmission) {
    let result = shared.cluster.submit(&job).await;
    let replicas = {
        let mut groups = shared.lock();
        let Some(group) = groups.by_name.get_mut(&name) else {
            return;
        };
        group.submitting = false;
        match &result {
            Ok(id) => {
                group.job = Some(id.clone());
                group.submitted_at = Some(Instant::now());
                group.last_sync = None;
                group.checked_at = None;
            }
            Err(_) => group.retry_submit_at = Some(Instant::now() + RETRY_SUBMIT),
        }
        group.replicas.values().cloned().collect::<Vec<_>>()
    };
    match result {
        Ok(id) => tracing::info!("engine: Ray job {id} drives group {name}"),
        Err(e) => {
            let why = format!("cannot start the Ray driver of its group: {e}");
            tracing::warn!("engine: group {name}: {why}");
            for r in &replicas {
                r.update(|t| {
                    if matches!(
                        t.snapshot.phase,
                        ReplicaPhase::Pending | ReplicaPhase::Initializing
                    ) {
                        t.snapshot.last_error = Some(why.clone());
                    }
                });
            }
        }
    }
}

/// Groups whose driver has gone silent and whose job is due for a check: (name, job id).
fn silent_drivers(shared: &Shared) -> Vec<(String, String)> {
    let now = Instant::now();
    let mut out = Vec::new();
    let mut groups = shared.lock();
    for (name, group) in groups.by_name.iter_mut() {
        let (Some(job), Some(submitted)) = (&group.job, group.submitted_at) else {
            continue;
        };
        let heard = group.last_sync.unwrap_or(submitted);
        if now - heard < DRIVER_SILENT || group.checked_at.is_some_and(|c| now - c < CHECK_EVERY) {
            continue;
        }
        group.checked_at = Some(now);
        out.push((name.clone(), job.clone()));
    }
    out
}

/// Asks Ray about a silent driver's job: an ended one is replaced (its actors keep serving
/// and are adopted); a job still pending or running is waited for.
async fn check_driver(shared: Arc<Shared>, name: String, job: String) {
    let info = match shared.cluster.job(&job).await {
        Ok(info) => info,
        Err(e) => {
            tracing::warn!("engine: cannot ask Ray about job {job} of group {name}: {e}");
            return;
        }
    };
    let replicas: Vec<Arc<RayReplica>> = {
        let mut groups = shared.lock();
        let Some(group) = groups.by_name.get_mut(&name) else {
            return;
        };
        if group.job.as_deref() != Some(job.as_str()) {
            return;
        }
        if info.ended() {
            group.job = None;
        }
        group.replicas.values().cloned().collect()
    };
    let message = info.message.clone().unwrap_or_default();
    if info.ended() {
        tracing::warn!(
            "engine: the driver of group {name} ended ({}: {message}); starting another",
            info.status
        );
        let line = format!(
            "cortex: the Ray driver of this replica's group ended ({}: {}); another adopts its actors",
            info.status,
            message.lines().last().unwrap_or("")
        );
        let lines = replicas
            .into_iter()
            .map(|replica| Effect::Line {
                replica,
                line: line.clone(),
            })
            .collect();
        effects::apply(&shared, lines);
    } else {
        let why = format!(
            "waiting for the Ray driver of its group (job {job} is {}{})",
            info.status,
            if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            }
        );
        for r in &replicas {
            r.update(|t| {
                if matches!(
                    t.snapshot.phase,
                    ReplicaPhase::Pending | ReplicaPhase::Initializing
                ) {
                    t.snapshot.last_error = Some(why.clone());
                }
            });
        }
    }
}
