//! The control API used by the CLI: bundles, deploys, API listing, logs, deletes.

use serde::{Deserialize, Serialize};

use super::bazaar::DeploymentInfo;
use super::config::{ApiConfig, ApiKind};

/// `HEAD|PUT /api/v2/bundles/{sha256}`: the body of PUT is the project tar.gz whose SHA-256 is
/// the path's last segment. This is the answer to PUT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleStored {
    pub sha256: String,
    pub size: u64,
    /// False when the server already had these bytes and did not store them again.
    pub created: bool,
}

/// `POST /api/v2/apis`: deploy every API of a config file against an uploaded bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// The config file's base name, used in error messages (e.g. `cortex.yaml`).
    pub config_file: String,
    /// The config file's text; the server validates it again.
    pub config: String,
    /// SHA-256 of a bundle already uploaded with `PUT /api/v2/bundles/{sha256}`.
    pub bundle: String,
    /// Override an update that is still in progress.
    #[serde(default)]
    pub force: bool,
}

/// What deploy did to one API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployAction {
    Created,
    Updated,
    UpToDate,
    Failed,
}

/// Why a deploy refused an API, in the words of the CLI's error kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployRefusal {
    /// Its file asks for what cannot be (a field, a path, a name, an endpoint taken...).
    InvalidConfig,
    /// It clashes with the server's state: an update in progress (`--force` overrides it).
    Conflict,
}

/// One element of the `POST /api/v2/apis` answer (and of `cortex deploy -o json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployResult {
    pub name: String,
    pub kind: ApiKind,
    pub action: DeployAction,
    /// The model id the API is stored under (`None` when it failed before being stored).
    pub model_id: Option<String>,
    /// The sentence the CLI prints, e.g. `creating iris (RealtimeAPI)`.
    pub message: String,
    /// Why it failed, when `action` is `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why it was refused, when it was (not when it failed only because another API of the
    /// file was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<DeployRefusal>,
    /// Where it answers (the URL as the caller reached the server), once stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// The realtime status words `cortex get` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiStatus {
    Live,
    Updating,
    Error,
    ErrorOutOfMemory,
    ComputeUnavailable,
    Stopped,
}

impl ApiStatus {
    /// The text `cortex get` prints.
    pub fn message(self) -> &'static str {
        match self {
            ApiStatus::Live => "live",
            ApiStatus::Updating => "updating",
            ApiStatus::Error => "error",
            ApiStatus::ErrorOutOfMemory => "error (out of memory)",
            ApiStatus::ComputeUnavailable => "compute unavailable",
            ApiStatus::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for ApiStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// The state of one replica process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaPhase {
    /// Waiting for the CPU or memory it asks for to be free on the machine.
    Pending,
    /// Started, not answering `/healthz` yet.
    Initializing,
    Ready,
    /// Exited; waiting for the back-off before the next start.
    Restarting,
    /// Crash-looping or failed to initialise.
    Failed,
    Stopped,
}

/// One replica, for `cortex get X -o json` and for tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaInfo {
    pub id: String,
    pub phase: ReplicaPhase,
    /// True when the replica runs the latest spec (false: an older one still serving).
    pub up_to_date: bool,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    pub restarts: u32,
    /// The node it runs on, when the server's engine has several (`ray`: the node's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Request counters and latency, kept in memory by the gateway.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiMetrics {
    pub code_2xx: u64,
    pub code_4xx: u64,
    pub code_5xx: u64,
    /// Mean latency of all requests, in milliseconds; `None` before the first request.
    pub latency_ms_avg: Option<f64>,
}

/// Said in an API's `errors` of a replica that asks for more compute than the machine has:
/// its `compute unavailable` will not pass by itself, so a wait fails on it at once.
pub const NEVER_FITS: &str = "it can never start here";

/// One API as `GET /api/v2/apis` and `GET /api/v2/apis/{name}` describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiResponse {
    pub name: String,
    pub kind: ApiKind,
    pub model_id: String,
    pub status: ApiStatus,
    /// The full URL of the API on the server's gateway.
    pub endpoint: String,
    /// Unix seconds of the last deploy that changed the API.
    pub last_updated: i64,
    pub requested: u32,
    pub up_to_date: u32,
    pub replicas: Vec<ReplicaInfo>,
    pub metrics: ApiMetrics,
    /// Why the API is not live (recent init failures, crash output), newest last.
    pub errors: Vec<String>,
    /// The configuration it runs (the latest deployed).
    pub spec: ApiConfig,
    /// Its deployment, as the Model Bazaar API sees it.
    pub deployment: DeploymentInfo,
    /// A BatchAPI's jobs, in short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<super::BatchSummary>,
    /// What runs its replicas, when it is not the server itself (`ray`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
}

/// `DELETE /api/v2/apis/{name}` and other plain acknowledgements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageResponse {
    pub message: String,
}

/// `GET /api/v2/info`: who the token belongs to and the server's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerInfo {
    pub version: String,
    pub username: String,
    pub admin: bool,
}

/// Query of `GET /api/v2/apis/{name}/logs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsQuery {
    /// Keep streaming new lines until the client goes away.
    #[serde(default)]
    pub follow: bool,
    /// Only the last N lines of each replica's log.
    #[serde(default)]
    pub tail: Option<usize>,
}

/// `POST /api/v2/apis/{name}/refresh?force=true`: refresh even while an update is in progress
/// (upstream's `cortex refresh -f`): the replicas of the spec start again, the older version
/// serving until they are ready, as a deploy with `--force` does.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RefreshQuery {
    #[serde(default)]
    pub force: bool,
}

/// `DELETE /api/v2/apis/{name}?force=true`: delete even when a TrafficSplitter uses it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeleteQuery {
    #[serde(default)]
    pub force: bool,
    /// Keep the API's stored bundle for the usual hour of an unused upload, so deploying it
    /// again uploads nothing (upstream's `cortex delete --keep-cache`).
    #[serde(default, rename = "keepCache")]
    pub keep_cache: bool,
}
