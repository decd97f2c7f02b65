//! The Ray engine's [`Replica`] handle and the state behind it: written by the syncs of its
//! group's driver (`groups.rs`), read by the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::protocol::DesiredReplica;
use crate::engine::local::file_logs::FileLogs;
use crate::engine::{Purpose, Replica, ReplicaLogs, ReplicaPhase, ReplicaSnapshot};

/// What the engine keeps of one replica.
#[derive(Debug)]
pub(super) struct RayReplica {
    pub(super) id: String,
    pub(super) api: String,
    /// `replica` or `worker`, for log lines.
    pub(super) noun: &'static str,
    /// Its `/healthz` keeps being asked once it is ready (a RealtimeAPI's replica: see
    /// `engine/health_watch.rs`).
    pub(super) watched: bool,
    /// Its log (`<log root>/<api>/<id>.log`, with `.stdout.log` and `.stderr.log` beside).
    pub(super) log_path: PathBuf,
    pub(super) state: Mutex<Tracked>,
    /// The address while it is ready.
    ready: RwLock<Option<SocketAddr>>,
    phase_tx: watch::Sender<ReplicaPhase>,
    done_tx: watch::Sender<bool>,
    logs: Arc<FileLogs>,
}

/// The part of a replica's state that syncs change.
#[derive(Debug)]
pub(super) struct Tracked {
    pub(super) snapshot: ReplicaSnapshot,
    /// What its actor runs, at `desired.generation`.
    pub(super) desired: DesiredReplica,
    /// The stop asked for, if any: it is no longer desired.
    pub(super) stop: Option<Instant>,
    /// When the next generation is to be asked for (after an exit and its back-off).
    pub(super) restart_at: Option<Instant>,
    /// The generation whose exit was taken already.
    pub(super) exit_taken: Option<u64>,
    /// The generation whose `/healthz` is being polled.
    pub(super) checking: Option<u64>,
    /// Since when the current generation has been ready.
    pub(super) ready_since: Option<Instant>,
    /// Exits before readiness (or soon after it) in a row.
    pub(super) failures_in_a_row: u32,
    /// Where its program listens (reported by its actor).
    pub(super) ready_addr: Option<SocketAddr>,
    /// When the current generation was asked for.
    pub(super) asked_at: Instant,
    /// The generation the server last saw finish work ([`Replica::did_work`]).
    pub(super) worked: Option<u64>,
}

impl Tracked {
    /// Whether `generation` is the one that runs: not stopped, not replaced, not ended.
    pub(super) fn runs(&self, generation: u64) -> bool {
        self.stop.is_none()
            && self.desired.generation == generation
            && self.exit_taken != Some(generation)
    }
}

impl RayReplica {
    pub(super) fn new(
        id: String,
        api: String,
        purpose: &Purpose,
        log_path: PathBuf,
        desired: DesiredReplica,
    ) -> RayReplica {
        let snapshot = ReplicaSnapshot::new(id.clone(), ReplicaPhase::Initializing);
        RayReplica {
            id,
            api,
            noun: purpose.noun(),
            watched: *purpose == Purpose::Realtime,
            logs: Arc::new(FileLogs {
                path: log_path.clone(),
            }),
            log_path,
            state: Mutex::new(Tracked {
                snapshot,
                desired,
                stop: None,
                restart_at: None,
                exit_taken: None,
                checking: None,
                ready_since: None,
                failures_in_a_row: 0,
                ready_addr: None,
                asked_at: Instant::now(),
                worked: None,
            }),
            ready: RwLock::new(None),
            phase_tx: watch::channel(ReplicaPhase::Initializing).0,
            done_tx: watch::channel(false).0,
        }
    }

    /// Reads the state under its lock.
    pub(super) fn read<T>(&self, f: impl FnOnce(&Tracked) -> T) -> T {
        f(&self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Changes the state under its lock; phase watchers hear of a new phase, and the ready
    /// address follows the phase (written only when it changes: the gateway reads it on
    /// every request).
    pub(super) fn update<T>(&self, f: impl FnOnce(&mut Tracked) -> T) -> T {
        let (out, phase, ready) = {
            let mut t = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let out = f(&mut t);
            let ready = match t.snapshot.phase {
                ReplicaPhase::Ready => t.ready_addr,
                _ => None,
            };
            (out, t.snapshot.phase, ready)
        };
        if *self.ready.read().unwrap_or_else(|p| p.into_inner()) != ready {
            *self.ready.write().unwrap_or_else(|p| p.into_inner()) = ready;
        }
        self.phase_tx.send_if_modified(|p| {
            let changed = *p != phase;
            *p = phase;
            changed
        });
        out
    }

    /// It is gone for good: stopped, and its stop resolved.
    pub(super) fn finish(&self) {
        self.update(|t| {
            t.snapshot.phase = ReplicaPhase::Stopped;
            t.snapshot.port = None;
            t.ready_addr = None;
        });
        self.done_tx.send_replace(true);
    }
}

impl Replica for RayReplica {
    fn id(&self) -> &str {
        &self.id
    }

    fn snapshot(&self) -> ReplicaSnapshot {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .snapshot
            .clone()
    }

    fn ready_addr(&self) -> Option<SocketAddr> {
        *self.ready.read().unwrap_or_else(|p| p.into_inner())
    }

    fn phases(&self) -> watch::Receiver<ReplicaPhase> {
        self.phase_tx.subscribe()
    }

    fn stop(&self, grace: Duration) -> BoxFuture<'static, ()> {
        // No longer desired: the next sync's answer leaves it out, the driver stops its
        // program (SIGTERM, SIGKILL after the grace it was given) and kills its actor, and the
        // sync after that no longer reports it. A driver that does not sync any more does not
        // hold the stop up beyond the grace and a few intervals.
        let deadline = Instant::now() + grace + STOP_SLACK;
        self.update(|t| {
            if t.stop.is_none() {
                t.stop = Some(deadline);
                t.restart_at = None;
            }
        });
        let mut done = self.done_tx.subscribe();
        Box::pin(async move {
            let _ = done.wait_for(|d| *d).await;
        })
    }

    fn logs(&self) -> Arc<dyn ReplicaLogs> {
        self.logs.clone()
    }

    fn did_work(&self) {
        self.update(|t| t.worked = Some(t.desired.generation));
    }
}

/// How long a stop may wait beyond its grace for the driver to say the replica is gone.
pub(super) const STOP_SLACK: Duration = Duration::from_secs(3);
