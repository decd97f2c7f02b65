//! The engine's view of its groups (the workers one driver keeps: a RealtimeAPI's replicas,
//! or one batch job's workers) and what a driver's sync changes in it.
//!
//! A sync reports what the driver's actors do; the engine takes from it each replica's phase
//! (exits restart after cortex's back-off by raising the generation, or fail the replica),
//! keeps its output in the same files the local engine writes, and answers the replicas it
//! wants. A replica being stopped is left out of the answer; once a sync no longer reports
//! it, it is gone. A group with no replica left is removed, and its driver told so (410).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use super::effects::Effect;
use super::handle::RayReplica;
use super::protocol::{SyncAnswer, SyncReport};

/// One group: its replicas and its driver.
#[derive(Debug)]
pub(super) struct Group {
    /// The bearer token its driver syncs with.
    pub(super) token: String,
    pub(super) replicas: BTreeMap<String, Arc<RayReplica>>,
    /// The Ray job of its current driver, once submitted.
    pub(super) job: Option<String>,
    pub(super) submitted_at: Option<Instant>,
    /// When a submission may be tried again after one failed.
    pub(super) retry_submit_at: Option<Instant>,
    pub(super) submitting: bool,
    /// When the job's status was last asked.
    pub(super) checked_at: Option<Instant>,
    pub(super) last_sync: Option<Instant>,
    /// Who synced last (`<pid>@<node>`).
    pub(super) driver: Option<String>,
    /// Since when it has no replica left while no driver has heard so: it is kept (answered
    /// 410, which removes its actors) until one does, with a driver submitted for that if
    /// its last one is gone.
    pub(super) retired_at: Option<Instant>,
}

impl Group {
    pub(super) fn new(token: String) -> Group {
        Group {
            token,
            replicas: BTreeMap::new(),
            job: None,
            submitted_at: None,
            retry_submit_at: None,
            submitting: false,
            checked_at: None,
            last_sync: None,
            driver: None,
            retired_at: None,
        }
    }
}

/// Every group, by name, and the group of each API or job.
#[derive(Debug, Default)]
pub(super) struct Groups {
    pub(super) by_name: HashMap<String, Group>,
    /// `realtime/<api>` or `job/<job id>` → group name.
    pub(super) by_key: HashMap<String, String>,
}

impl Groups {
    /// Removes a group that has no replica left (its driver, which syncs now, is told so).
    pub(super) fn remove_if_empty(&mut self, name: &str) -> bool {
        if self
            .by_name
            .get(name)
            .is_some_and(|g| g.replicas.is_empty())
        {
            self.by_name.remove(name);
            self.by_key.retain(|_, g| g != name);
            return true;
        }
        false
    }

    /// A group left with no replica while no driver was there to hear it: retired, so that
    /// a driver still removes its actors (one that ran may have made some); removed at once
    /// when no driver was ever submitted. A new worker of its API starts a new group.
    pub(super) fn retire_if_empty(&mut self, name: &str, now: Instant) {
        let Some(group) = self.by_name.get_mut(name) else {
            return;
        };
        if !group.replicas.is_empty() || group.retired_at.is_some() {
            return;
        }
        if group.submitted_at.is_none() && !group.submitting {
            self.by_name.remove(name);
        } else {
            group.retired_at = Some(now);
        }
        self.by_key.retain(|_, g| g != name);
    }
}

/// Why a sync is refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// No such group (any more): the driver removes its actors and ends.
    Gone,
    Unauthorized,
}

/// Takes a driver's report for group `name` and answers the replicas it must keep.
pub(super) fn sync(
    groups: &mut Groups,
    name: &str,
    token: &str,
    report: SyncReport,
    effects: &mut Vec<Effect>,
) -> Result<SyncAnswer, Refusal> {
    let group = groups.by_name.get_mut(name).ok_or(Refusal::Gone)?;
    if !same_secret(&group.token, token) {
        return Err(Refusal::Unauthorized);
    }
    if group.retired_at.is_some() {
        // Its driver hears it now: it removes the group's actors and ends.
        groups.by_name.remove(name);
        return Err(Refusal::Gone);
    }
    let now = Instant::now();
    group.last_sync = Some(now);
    group.driver = Some(report.driver);
    let mut reported = std::collections::HashSet::new();
    for r in report.replicas {
        reported.insert(r.id.clone());
        if let Some(replica) = group.replicas.get(&r.id) {
            super::report::take(replica, r, now, effects);
        }
    }
    // A replica being stopped that the driver neither reports nor is still stopping is gone.
    reported.extend(report.stopping);
    let gone: Vec<String> = group
        .replicas
        .iter()
        .filter(|(id, r)| !reported.contains(*id) && r.read(|t| t.stop.is_some()))
        .map(|(id, _)| id.clone())
        .collect();
    for id in gone {
        if let Some(r) = group.replicas.remove(&id) {
            r.finish();
        }
    }
    let answer = SyncAnswer {
        replicas: group
            .replicas
            .values()
            .filter_map(|r| wanted(r, now, effects))
            .collect(),
    };
    if groups.remove_if_empty(name) {
        return Err(Refusal::Gone);
    }
    Ok(answer)
}

/// What the driver must run of `replica` (None: it is being stopped); a restart that is due
/// raises its generation.
fn wanted(
    replica: &Arc<RayReplica>,
    now: Instant,
    effects: &mut Vec<Effect>,
) -> Option<super::protocol::DesiredReplica> {
    replica.update(|t| {
        if t.stop.is_some() || t.desired.working_dir.is_none() {
            return None; // being stopped, or its bundle is not made yet
        }
        if t.restart_at.is_some_and(|at| at <= now) {
            t.restart_at = None;
            t.desired.generation += 1;
            t.asked_at = now;
            effects.push(Effect::Line {
                replica: replica.clone(),
                line: starting_line(replica, t.snapshot.restarts + 1),
            });
        }
        Some(t.desired.clone())
    })
}

/// The engine's line when a generation of `replica` is asked for.
pub(super) fn starting_line(replica: &RayReplica, start: u32) -> String {
    format!(
        "cortex: starting {} {} of {} on the Ray cluster (start #{start})",
        replica.noun, replica.id, replica.api
    )
}

/// Compares two secrets by their hashes (no early exit on the first differing byte).
pub(super) fn same_secret(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}
