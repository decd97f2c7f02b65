//! The local engine's [`Replica`] handle, shared between the supervisor task (which writes
//! the state) and the server (which reads it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::file_logs::FileLogs;
use crate::engine::{Replica, ReplicaLogs, ReplicaPhase, ReplicaSnapshot};

/// Written by the supervisor, read by the server.
#[derive(Debug)]
pub(super) struct ReplicaShared {
    state: Mutex<ReplicaSnapshot>,
    /// The port while the replica is ready, 0 otherwise: read on every prediction without a
    /// lock.
    ready_port: AtomicU32,
    phase_tx: watch::Sender<ReplicaPhase>,
    /// The server saw the current run finish work ([`Replica::did_work`]).
    worked: AtomicBool,
}

/// The health watch takes a ready replica out of rotation, and puts it back, here.
impl crate::engine::health_watch::Rotation for ReplicaShared {
    fn leave(&self, why: String) {
        self.update(|s| {
            s.phase = ReplicaPhase::Initializing;
            s.last_error = Some(why);
        });
    }

    fn rejoin(&self) {
        self.update(|s| {
            s.phase = ReplicaPhase::Ready;
            s.last_error = None;
        });
    }
}

impl ReplicaShared {
    /// Whether the run that just ended finished work; the next run starts without.
    pub(super) fn take_worked(&self) -> bool {
        self.worked.swap(false, Ordering::AcqRel)
    }

    /// Changes the state; phase watchers hear of a new phase.
    pub(super) fn update(&self, f: impl FnOnce(&mut ReplicaSnapshot)) {
        let phase = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut s);
            let ready_port = match (s.phase, s.port) {
                (ReplicaPhase::Ready, Some(port)) => u32::from(port),
                _ => 0,
            };
            self.ready_port.store(ready_port, Ordering::Release);
            s.phase
        };
        self.phase_tx.send_if_modified(|p| {
            let changed = *p != phase;
            *p = phase;
            changed
        });
    }
}

/// A replica run by the local engine. Cloning shares the same replica.
#[derive(Debug, Clone)]
pub(super) struct LocalReplica {
    id: String,
    shared: Arc<ReplicaShared>,
    /// `Some(grace)` once a stop is requested.
    stop_tx: Arc<watch::Sender<Option<Duration>>>,
    done_rx: watch::Receiver<bool>,
    logs: Arc<FileLogs>,
}

/// The supervisor's ends of a new replica's channels.
pub(super) struct SupervisorEnds {
    pub(super) shared: Arc<ReplicaShared>,
    pub(super) stop_rx: watch::Receiver<Option<Duration>>,
    pub(super) done_tx: watch::Sender<bool>,
}

impl LocalReplica {
    pub(super) fn new(id: String, logs: Arc<FileLogs>) -> (LocalReplica, SupervisorEnds) {
        let (phase_tx, _) = watch::channel(ReplicaPhase::Initializing);
        let (stop_tx, stop_rx) = watch::channel(None);
        let (done_tx, done_rx) = watch::channel(false);
        let shared = Arc::new(ReplicaShared {
            state: Mutex::new(ReplicaSnapshot::new(id.clone(), ReplicaPhase::Initializing)),
            ready_port: AtomicU32::new(0),
            phase_tx,
            worked: AtomicBool::new(false),
        });
        let replica = LocalReplica {
            id,
            shared: shared.clone(),
            stop_tx: Arc::new(stop_tx),
            done_rx,
            logs,
        };
        let ends = SupervisorEnds {
            shared,
            stop_rx,
            done_tx,
        };
        (replica, ends)
    }
}

impl Replica for LocalReplica {
    fn id(&self) -> &str {
        &self.id
    }

    fn snapshot(&self) -> ReplicaSnapshot {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn ready_addr(&self) -> Option<SocketAddr> {
        match self.shared.ready_port.load(Ordering::Acquire) {
            0 => None,
            port => Some(SocketAddr::from(([127, 0, 0, 1], port as u16))),
        }
    }

    fn phases(&self) -> watch::Receiver<ReplicaPhase> {
        self.shared.phase_tx.subscribe()
    }

    fn stop(&self, grace: Duration) -> BoxFuture<'static, ()> {
        // The first stop's grace counts: a later one cannot lengthen or shorten it.
        self.stop_tx.send_if_modified(|stop| {
            let first = stop.is_none();
            if first {
                *stop = Some(grace);
            }
            first
        });
        let mut done = self.done_rx.clone();
        Box::pin(async move {
            let _ = done.wait_for(|d| *d).await;
        })
    }

    fn logs(&self) -> Arc<dyn ReplicaLogs> {
        self.logs.clone()
    }

    fn did_work(&self) {
        self.shared.worked.store(true, Ordering::Release);
    }
}
