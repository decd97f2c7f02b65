//! What one replica's report in a driver's sync changes: its phase, address and node, a
//! health check to begin, or an exit (a restart after cortex's back-off, or a failure) and
//! the engine's line about it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::effects::Effect;
use super::handle::{RayReplica, Tracked};
use super::protocol::{ReplicaReport, ReportedState};
use crate::engine::local::memory::mib;
use crate::engine::restarts::{after_exit, backoff, CRASH_LOOP_AFTER};
use crate::engine::{ReplicaPhase, EXIT_INIT_FAILED};

/// How long an actor may stay unplaced before its replica is `pending`.
const PLACEMENT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Takes one replica's report.
pub(super) fn take(
    replica: &Arc<RayReplica>,
    mut r: ReplicaReport,
    now: Instant,
    effects: &mut Vec<Effect>,
) {
    if !r.stdout.is_empty() || !r.stderr.is_empty() {
        effects.push(Effect::Output {
            replica: replica.clone(),
            stdout: std::mem::take(&mut r.stdout),
            stderr: std::mem::take(&mut r.stderr),
        });
    }
    replica.update(|t| {
        if t.stop.is_some() || r.generation != t.desired.generation {
            return; // a stop under way, or what an older generation did
        }
        if r.node.is_some() {
            t.snapshot.node = r.node.clone();
        }
        match r.state {
            // An actor takes a second or two to be placed and start: only one that waits
            // longer is taken to wait for resources.
            ReportedState::Pending if now - t.asked_at >= PLACEMENT_WAIT => {
                t.snapshot.phase = ReplicaPhase::Pending;
                t.snapshot.last_error = Some(format!(
                    "waiting for the Ray cluster to place its actor for {}s (the resources it asks for are not free on any node, or the node is still setting its bundle up)",
                    (now - t.asked_at).as_secs()
                ));
            }
            ReportedState::Pending => {}
            ReportedState::Starting => {
                if t.snapshot.phase == ReplicaPhase::Pending {
                    t.snapshot.phase = ReplicaPhase::Initializing;
                    t.snapshot.last_error = None;
                }
            }
            ReportedState::Running => running(replica, t, &r, effects),
            ReportedState::Exited => exited(replica, t, &r, now, effects),
        }
    });
}

/// Its program runs: where it listens, and its health checked once per generation.
fn running(
    replica: &Arc<RayReplica>,
    t: &mut Tracked,
    r: &ReplicaReport,
    effects: &mut Vec<Effect>,
) {
    if t.exit_taken == Some(t.desired.generation) {
        return; // ended here (silent too long): the actor stops it when its successor is asked for
    }
    let Some(addr) = r
        .address
        .as_deref()
        .and_then(|a| a.parse::<SocketAddr>().ok())
    else {
        return;
    };
    if matches!(t.snapshot.phase, ReplicaPhase::Pending) {
        t.snapshot.phase = ReplicaPhase::Initializing;
        t.snapshot.last_error = None;
    }
    t.ready_addr = Some(addr);
    t.snapshot.port = Some(addr.port());
    t.snapshot.pid = r.pid;
    let generation = t.desired.generation;
    if t.checking != Some(generation) {
        t.checking = Some(generation);
        effects.push(Effect::CheckHealth {
            replica: replica.clone(),
            generation,
            addr,
        });
    }
}

/// Its run ended (taken once per generation): restarting after the back-off, or failed.
fn exited(
    replica: &Arc<RayReplica>,
    t: &mut Tracked,
    r: &ReplicaReport,
    now: Instant,
    effects: &mut Vec<Effect>,
) {
    let generation = t.desired.generation;
    if t.exit_taken == Some(generation) {
        return;
    }
    t.exit_taken = Some(generation);
    let ready_for = t.ready_since.take().map(|s| now - s);
    let worked = t.worked == Some(generation);
    t.failures_in_a_row = after_exit(t.failures_in_a_row, ready_for, worked);
    let init_failed = r.exit_code == Some(EXIT_INIT_FAILED);
    let failed = init_failed || t.failures_in_a_row >= CRASH_LOOP_AFTER;
    t.snapshot.restarts += 1;
    t.snapshot.port = None;
    t.snapshot.pid = None;
    t.ready_addr = None;
    t.snapshot.phase = if failed {
        ReplicaPhase::Failed
    } else {
        ReplicaPhase::Restarting
    };
    t.restart_at = Some(now + backoff(t.failures_in_a_row));
    t.snapshot.out_of_memory = r.oom_bytes.is_some();
    let (line, headline, code_text) = how_it_ended(replica, r, t.desired.memory_limit);
    effects.push(Effect::Line {
        replica: replica.clone(),
        line,
    });
    effects.push(Effect::Exited {
        replica: replica.clone(),
        generation,
        headline,
        code_text,
    });
}

/// How a run ended: the engine's log line, the error to show (if the log does not say it
/// better), and the few words the status gives.
fn how_it_ended(
    replica: &RayReplica,
    r: &ReplicaReport,
    memory_limit: Option<u64>,
) -> (String, Option<String>, String) {
    if let Some(used) = r.oom_bytes {
        let error = format!(
            "out of memory: the {noun}'s processes used {} while compute.mem allows {}, so it was killed; raise compute.mem in cortex.yaml or make the predictor use less memory",
            mib(used),
            mib(memory_limit.unwrap_or_default()),
            noun = replica.noun,
        );
        return (
            format!("cortex: error: {error}"),
            Some(error),
            "memory".to_string(),
        );
    }
    match (&r.death_cause, r.exit_code) {
        (Some(cause), _) => (
            format!(
                "cortex: {} {}: its Ray actor was lost: {cause}",
                replica.noun, replica.id
            ),
            Some(format!("its Ray actor was lost: {cause}")),
            "its actor lost".to_string(),
        ),
        (None, code) => {
            let code_text = code.map_or("a signal".to_string(), |c| format!("status {c}"));
            (
                format!(
                    "cortex: {} {} exited with {code_text}",
                    replica.noun, replica.id
                ),
                None,
                code_text,
            )
        }
    }
}
