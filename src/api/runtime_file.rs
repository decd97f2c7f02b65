use serde::{Deserialize, Serialize};

/// `server.json` in a server's data directory: how the CLI finds a running local server.
/// Written by the server once it listens, removed when it stops cleanly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeFile {
    pub pid: u32,
    pub port: u16,
    /// The base URL of the server, e.g. `http://127.0.0.1:8888`.
    pub url: String,
    pub version: String,
}

impl RuntimeFile {
    /// The file name inside the data directory.
    pub const NAME: &'static str = "server.json";
    /// The admin token file inside the data directory (mode 0600).
    pub const ADMIN_TOKEN: &'static str = "admin.token";
}
