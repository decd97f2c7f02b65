//! The bodies of the driver's sync (`POST /api/v2/engine/ray/groups/{group}/sync`), as the
//! cluster-side driver (`python/cortex_ray/driver.py`) sends and reads them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a driver reports: every replica it knows, with the output written since its last sync
/// that was answered 200.
#[derive(Debug, Clone, Deserialize)]
pub struct SyncReport {
    /// `<pid>@<node id>` of the driver process.
    pub driver: String,
    #[serde(default)]
    pub replicas: Vec<ReplicaReport>,
    /// The replicas no longer desired whose program the driver is still stopping.
    #[serde(default)]
    pub stopping: Vec<String>,
}

/// One replica in a report.
#[derive(Debug, Clone, Deserialize)]
pub struct ReplicaReport {
    pub id: String,
    /// The generation its actor runs (0: not known yet).
    pub generation: u64,
    pub state: ReportedState,
    /// `host:port` while the program runs.
    #[serde(default)]
    pub address: Option<String>,
    /// The program's process id on its node, while it runs.
    #[serde(default)]
    pub pid: Option<u32>,
    /// The run was killed for using this many bytes, over its `memory_limit`.
    #[serde(default)]
    pub oom_bytes: Option<u64>,
    /// The Ray node id of its actor.
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why its actor was lost (the actor, its node or the driver's view of it).
    #[serde(default)]
    pub death_cause: Option<String>,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
}

/// A replica's state as its driver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportedState {
    /// Its actor waits for Ray to place it.
    Pending,
    /// Its program is being started.
    Starting,
    /// Its program runs (at `address`).
    Running,
    /// Its program exited (`exit_code`) or its actor was lost (`death_cause`).
    Exited,
}

/// The answer: the replicas the driver must keep, each at a generation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncAnswer {
    pub replicas: Vec<DesiredReplica>,
}

/// One replica the server wants: a generation above the one its actor runs restarts it.
#[derive(Debug, Clone, Serialize)]
pub struct DesiredReplica {
    pub id: String,
    pub generation: u64,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The URL Ray unpacks as the actor's working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    pub num_cpus: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    pub num_gpus: u32,
    pub resources: BTreeMap<String, f64>,
    pub takes_socket: bool,
    pub grace_seconds: f64,
    /// Bytes its processes may have resident together (`compute.mem`); over it the actor
    /// kills them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drivers_report_reads_with_its_defaults() {
        let body = r#"{"driver":"7@n1","replicas":[
            {"id":"a-0","generation":2,"state":"running","address":"127.0.0.1:4000",
             "node":"n1","exit_code":null,"death_cause":null,"stdout":"hi\n","stderr":""},
            {"id":"a-1","generation":0,"state":"pending"}]}"#;
        let r: SyncReport = serde_json::from_str(body).unwrap();
        assert_eq!(r.replicas.len(), 2);
        assert_eq!(r.replicas[0].state, ReportedState::Running);
        assert_eq!(r.replicas[0].address.as_deref(), Some("127.0.0.1:4000"));
        assert_eq!(r.replicas[1].stdout, "");
        assert!(serde_json::from_str::<SyncReport>(
            r#"{"driver":"x","replicas":[{"id":"a","generation":1,"state":"lost"}]}"#
        )
        .is_err());
    }
}
