//! Engines run workers (realtime replicas, later batch workers) and report their state.
//!
//! An engine knows how to start a program with an environment and keep it running; it knows
//! nothing about HTTP routes, specs or the database. `local` runs child processes of the
//! server; a Ray engine (actors) or a Kubernetes one (pods) implements the same [`Engine`]
//! trait.

#[cfg(test)]
pub(crate) mod fake;
pub(crate) mod health_watch;
pub mod local;
mod log_files;
mod logs;
pub mod ray;
mod replica;
pub mod restarts;

pub use local::LocalEngine;
pub use logs::{follow, LogEvent, ReplicaLogs};
pub use ray::RayEngine;
pub use replica::{Replica, ReplicaPhase, ReplicaSnapshot};

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::BoxFuture;

/// What a worker is for. The engine runs every worker the same way, but for the health watch
/// that keeps asking a RealtimeAPI's ready replica (`health_watch.rs`); it also names what it
/// starts in the worker's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// A replica of a RealtimeAPI: serves predictions on `$CORTEX_PORT`.
    Realtime,
    /// A worker of one batch job of a BatchAPI.
    BatchWorker { job_id: String },
}

impl Purpose {
    /// What the worker is called in log lines: `replica` or `worker`.
    pub fn noun(&self) -> &'static str {
        match self {
            Purpose::Realtime => "replica",
            Purpose::BatchWorker { .. } => "worker",
        }
    }
}

/// Everything an engine needs to start one worker.
#[derive(Debug, Clone)]
pub struct ReplicaPlan {
    /// The API the worker belongs to (for log lines and where its logs are kept).
    pub api: String,
    /// Unique id of this worker among the API's workers; names its logs.
    pub replica_id: String,
    /// A realtime replica or a batch worker of a job.
    pub purpose: Purpose,
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// The working directory (the unpacked project).
    pub cwd: PathBuf,
    /// The worker's environment. The engine adds `CORTEX_PORT`, and passes on only the
    /// harmless part of the server's own (`PATH`, locale, TLS and pip settings).
    pub env: Vec<(String, String)>,
    /// True when the program takes its socket from the engine: a TCP socket bound to
    /// `127.0.0.1:$CORTEX_PORT` (not yet listening) on file descriptor 3, announced as
    /// `CORTEX_LISTEN_FD=3`. No other program can take the port between its choice and the
    /// worker's start. False: the program binds `$CORTEX_PORT` itself.
    pub takes_socket: bool,
    /// At most this many bytes resident across the worker's processes (`compute.mem`); over
    /// it the engine kills the worker and reports it as killed for memory.
    pub mem_limit: Option<u64>,
    /// CPU it asks for (`compute.cpu`, millicores): reserved on the machine while it runs,
    /// with its memory limit; a worker that does not fit waits, `pending`.
    pub cpu_millis: Option<u64>,
    /// A program to run to completion before the worker starts (in its sandbox, as its user,
    /// outside its memory limit), e.g. the shim installing `requirements.txt`; a failure
    /// fails the worker with its output's last lines.
    pub prepare: Option<Vec<String>>,
    /// Whole GPUs it asks for (`compute.gpu`), reserved like its CPU and handed over as
    /// `CUDA_VISIBLE_DEVICES`.
    pub gpus: u32,
    /// The files the worker needs from the server beside what every worker may reach (its
    /// project, the shim, its virtualenv). An engine that isolates workers grants exactly these.
    pub access: ReplicaAccess,
}

/// What one worker may reach of the server's own files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaAccess {
    /// Read (and execute) beneath these: its project, the shim, `--data-root` for a job.
    pub read: Vec<PathBuf>,
    /// Read and write beneath these (made by the engine, owned by the worker's user): its
    /// virtualenvs.
    pub write: Vec<PathBuf>,
}

/// The worker contract every engine implements.
///
/// - [`Engine::start`] starts the worker a [`ReplicaPlan`] describes and returns at once with
///   an opaque [`Replica`] handle. From then on the engine keeps the worker running: it
///   restarts it when it exits (with a back-off), and reports its [`ReplicaPhase`]
///   (`initializing` → `ready` once `GET /healthz` on its address answers 200; `restarting`
///   after an exit; `failed` when it crash-loops or exits with [`EXIT_INIT_FAILED`]; `stopped`
///   once stopped, for good).
/// - The handle gives the phase and its changes, the address to send requests to while it is
///   ready (cheap: no IO, no lock held; the gateway asks on every request), and
///   [`Replica::stop`]: a graceful stop (SIGTERM or the engine's equivalent) that forces the
///   worker down after the given grace period, and resolves once it is gone.
/// - Logs: everything the worker writes (stdout and stderr) is kept by the engine and readable
///   through [`ReplicaLogs`] (the last N lines, where they start, the bytes from an offset; and
///   [`follow`] on top), from the handle or, once the worker is gone, from
///   [`Engine::logs`] by the worker's API and id, until [`Engine::remove_logs`] forgets them.
///
/// An engine never learns about routes, specs, tokens or the database: what a worker needs is
/// in its plan's argv and environment.
pub trait Engine: Send + Sync + 'static {
    /// Starts a worker and keeps it running until [`Replica::stop`].
    fn start(&self, plan: ReplicaPlan) -> Arc<dyn Replica>;

    /// The logs of a worker this engine ran, running or not (empty when it has none).
    fn logs(&self, api: &str, replica_id: &str) -> Arc<dyn ReplicaLogs>;

    /// Forgets the logs of every worker of `api` (after the API is deleted).
    fn remove_logs(&self, api: &str) -> BoxFuture<'static, ()>;

    /// Forgets the logs of every worker of `api` but those of the replica sets `sets` (the
    /// versions it still runs; a replica's id is its set's id, a dash and a number): an API's
    /// earlier versions do not pile their logs up.
    fn prune_logs(&self, api: &str, sets: Vec<String>) -> BoxFuture<'static, ()>;

    /// What it is and where it runs workers, for `cortex get` and `cortex server status`.
    fn describe(&self) -> crate::api::EngineInfo {
        crate::api::EngineInfo::local()
    }

    /// Spare python interpreters, ready and starting (`None`: the engine keeps none).
    fn spare_interpreters(&self) -> Option<(usize, usize)> {
        None
    }

    /// Stops what the engine runs of its own beside workers (the local engine's spare
    /// interpreters), when the server stops, after its workers.
    fn shutdown(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// The HTTP client engines check workers' `GET /healthz` with. Readiness checks are a handful
/// per start: no connection is kept for them (an idle one per worker would stay open for
/// reqwest's 90 s).
pub(crate) fn readiness_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .pool_max_idle_per_host(0)
        .no_proxy()
        .build()
        .unwrap_or_default()
}

/// Exit status a worker uses to say "my initialisation failed" (the python shim does). The
/// engine then reports the replica as failed at once instead of waiting for a crash loop.
pub const EXIT_INIT_FAILED: i32 = 3;
