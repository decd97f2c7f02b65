use serde::{Deserialize, Serialize};

/// Every error the server answers with: `{"kind": "<snake_case>", "message": "<sentence>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub kind: String,
    pub message: String,
}
