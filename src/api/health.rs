use serde::{Deserialize, Serialize};

/// `GET /healthz`: liveness and version, no token needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub status: String,
    pub version: String,
    /// The server's process id (so a CLI can tell it is talking to the process it means).
    pub pid: u32,
    /// How the server's replicas are isolated (absent from servers that predate it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
    /// What runs the replicas (absent from servers that predate it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineInfo>,
}

/// The engine a server runs its replicas and batch workers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineInfo {
    /// `local` (child processes of the server) or `ray`.
    pub kind: String,
    /// The cluster's address (`ray`: its dashboard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The cluster's nodes (empty for `local`).
    #[serde(default)]
    pub nodes: Vec<EngineNode>,
}

/// One node of an engine's cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineNode {
    pub id: String,
    pub ip: String,
    pub alive: bool,
}

impl EngineInfo {
    /// The engine of a server that runs replicas as its own child processes.
    pub fn local() -> EngineInfo {
        EngineInfo {
            kind: "local".to_string(),
            cluster: None,
            nodes: Vec::new(),
        }
    }

    /// One line for people: `local` or `ray at http://...: 2 of 2 nodes alive`.
    pub fn summary(&self) -> String {
        match &self.cluster {
            None => self.kind.clone(),
            Some(cluster) => {
                let alive = self.nodes.iter().filter(|n| n.alive).count();
                format!(
                    "{} at {cluster}: {alive} of {} nodes alive",
                    self.kind,
                    self.nodes.len()
                )
            }
        }
    }
}

/// What holds a tenant's replicas in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolation {
    /// `standard`, `strict` or `off` (`cortex server --sandbox`).
    pub sandbox: String,
    /// The Landlock ABI replicas are restricted with; `null`: no Landlock ruleset holds them.
    pub landlock_abi: Option<i32>,
    /// The OS user replicas run as.
    pub replica_user: String,
    /// One line for people: what a replica can and cannot reach.
    pub summary: String,
}
