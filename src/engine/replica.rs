//! The handle the server keeps for one replica, shared with the engine's supervisor task.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::api::ReplicaPhase;

/// What is known about a replica right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSnapshot {
    pub id: String,
    pub phase: ReplicaPhase,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    pub restarts: u32,
    /// Why the last start failed: the worker's own message and the last lines of its output.
    pub last_error: Option<String>,
}

/// Shared between the supervisor (writer) and the server (readers).
#[derive(Debug)]
pub(crate) struct ReplicaShared {
    pub(crate) state: Mutex<ReplicaSnapshot>,
    pub(crate) phase_tx: watch::Sender<ReplicaPhase>,
}

impl ReplicaShared {
    pub(crate) fn update(&self, f: impl FnOnce(&mut ReplicaSnapshot)) {
        let phase = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut s);
            s.phase
        };
        self.phase_tx.send_if_modified(|p| {
            let changed = *p != phase;
            *p = phase;
            changed
        });
    }
}

/// A running (or restarting) replica. Cloning shares the same replica.
#[derive(Debug, Clone)]
pub struct Replica {
    pub(crate) shared: Arc<ReplicaShared>,
    pub(crate) stop_tx: Arc<watch::Sender<bool>>,
    pub(crate) done_rx: watch::Receiver<bool>,
}

impl Replica {
    pub(crate) fn new(id: String) -> (Replica, watch::Receiver<bool>, watch::Sender<bool>) {
        let (phase_tx, _) = watch::channel(ReplicaPhase::Initializing);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        let shared = Arc::new(ReplicaShared {
            state: Mutex::new(ReplicaSnapshot {
                id,
                phase: ReplicaPhase::Initializing,
                pid: None,
                port: None,
                restarts: 0,
                last_error: None,
            }),
            phase_tx,
        });
        (
            Replica {
                shared,
                stop_tx: Arc::new(stop_tx),
                done_rx,
            },
            stop_rx,
            done_tx,
        )
    }

    pub fn snapshot(&self) -> ReplicaSnapshot {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The address to send requests to, when the replica is ready. Cheap: no IO, a short lock.
    pub fn ready_addr(&self) -> Option<SocketAddr> {
        let s = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        match (s.phase, s.port) {
            (ReplicaPhase::Ready, Some(port)) => Some(SocketAddr::from(([127, 0, 0, 1], port))),
            _ => None,
        }
    }

    /// Follows phase changes.
    pub fn phases(&self) -> watch::Receiver<ReplicaPhase> {
        self.shared.phase_tx.subscribe()
    }

    /// Stops the replica (its whole process group) and waits until it is gone.
    pub async fn stop(&self) {
        self.stop_tx.send_replace(true);
        let mut done = self.done_rx.clone();
        let _ = done.wait_for(|d| *d).await;
    }
}
