//! Engines run replicas (worker processes) and report their state.
//!
//! An engine knows how to start a program with an environment and keep it running; it knows
//! nothing about HTTP routes, specs or the database. `local` runs child processes of the
//! server.

pub mod local;
pub mod logfile;
mod port_owner;
mod replica;

pub use local::LocalEngine;
pub use replica::{Replica, ReplicaSnapshot};

use std::path::PathBuf;

/// Everything an engine needs to start one replica.
#[derive(Debug, Clone)]
pub struct ReplicaPlan {
    /// The API the replica serves (for log lines).
    pub api: String,
    /// Unique id of this replica; names its log file.
    pub replica_id: String,
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// The working directory (the unpacked project).
    pub cwd: PathBuf,
    /// Environment variables on top of the server's own. The engine adds `CORTEX_PORT`.
    pub env: Vec<(String, String)>,
    /// True when the program takes its socket from the engine: a TCP socket bound to
    /// `127.0.0.1:$CORTEX_PORT` (not yet listening) on file descriptor 3, announced as
    /// `CORTEX_LISTEN_FD=3`. No other program can take the port between its choice and the
    /// replica's start. False: the program binds `$CORTEX_PORT` itself.
    pub takes_socket: bool,
    /// Where the replica's stdout and stderr are appended.
    pub log_path: PathBuf,
}

/// The worker contract every engine implements.
pub trait Engine: Send + Sync + 'static {
    /// Starts a replica and keeps it running (restarting it when it exits) until
    /// [`Replica::stop`] is called.
    fn launch(&self, plan: ReplicaPlan) -> Replica;
}

/// Exit status a worker uses to say "my initialisation failed" (the python shim does). The
/// engine then reports the replica as failed at once instead of waiting for a crash loop.
pub const EXIT_INIT_FAILED: i32 = 3;
