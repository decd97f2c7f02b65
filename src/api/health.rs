use serde::{Deserialize, Serialize};

/// `GET /healthz`: liveness and version, no token needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub status: String,
    pub version: String,
}
