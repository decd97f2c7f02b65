//! The handle an engine gives for one running worker, and what it reports.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::ReplicaLogs;

/// The state of one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaPhase {
    /// Waiting for the CPU or memory it asks for to be free on the machine.
    Pending,
    /// Started, not answering `/healthz` yet.
    Initializing,
    Ready,
    /// Exited; waiting for the back-off before the next start.
    Restarting,
    /// Crash-looping or failed to initialise (the engine keeps retrying).
    Failed,
    /// Stopped for good.
    Stopped,
}

/// What is known about a worker right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSnapshot {
    pub id: String,
    pub phase: ReplicaPhase,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    pub restarts: u32,
    /// Why the last start failed: the worker's own message and the last lines of its output.
    pub last_error: Option<String>,
    /// Whether its last run ended because it used more memory than its limit (cleared once it
    /// is ready again).
    pub out_of_memory: bool,
    /// The machine it runs on, for engines that place workers on several (`None`: the
    /// server's own).
    pub node: Option<String>,
}

impl ReplicaSnapshot {
    /// A worker that has just been asked for: no process, no port, no restart yet.
    pub fn new(id: String, phase: ReplicaPhase) -> ReplicaSnapshot {
        ReplicaSnapshot {
            id,
            phase,
            pid: None,
            port: None,
            restarts: 0,
            last_error: None,
            out_of_memory: false,
            node: None,
        }
    }
}

/// A running (or restarting) worker, as the engine that started it lets the server see it.
/// See [`super::Engine`] for the contract.
pub trait Replica: Send + Sync + std::fmt::Debug {
    /// The id its plan gave it.
    fn id(&self) -> &str;

    /// Its phase, process and port, and why it last failed.
    fn snapshot(&self) -> ReplicaSnapshot;

    /// The address to send requests to, when it is ready. On the prediction hot path: no IO,
    /// no lock held beyond the call.
    fn ready_addr(&self) -> Option<SocketAddr>;

    /// Follows its phase changes.
    fn phases(&self) -> watch::Receiver<ReplicaPhase>;

    /// Stops it: a graceful stop, forced after `grace`. Resolves once it is gone (at once when
    /// it already is). Stopping twice is harmless.
    fn stop(&self, grace: Duration) -> BoxFuture<'static, ()>;

    /// Its output.
    fn logs(&self) -> std::sync::Arc<dyn ReplicaLogs>;

    /// The server saw it finish work it was given (a batch answered, whatever the outcome):
    /// when its current run ends, that end does not count towards a crash loop, however soon
    /// after the start it comes.
    fn did_work(&self);
}
