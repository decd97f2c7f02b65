use serde::{Deserialize, Serialize};

/// `GET /healthz`: liveness and version, no token needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub status: String,
    pub version: String,
    /// The server's process id (so a CLI can tell it is talking to the process it means).
    pub pid: u32,
}
