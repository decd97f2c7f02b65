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
