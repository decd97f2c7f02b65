//! An API's configuration as the control API describes it (`cortex get X` and its `-o json`):
//! the validated `cortex.yaml` entry with defaults filled in, under the YAML key names.
//!
//! These are the wire's own types. The server converts its specs into them at the edge, so a
//! change to `spec/` cannot change this JSON without a change here. Quantities are the canonical
//! text the spec writes (`"200m"`, `"1Gi"`, `"1m30s"`, `"25%"`); a surge is a count or a
//! percentage.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The kind of an API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ApiKind {
    RealtimeAPI,
    BatchAPI,
    TrafficSplitter,
}

impl ApiKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKind::RealtimeAPI => "RealtimeAPI",
            ApiKind::BatchAPI => "BatchAPI",
            ApiKind::TrafficSplitter => "TrafficSplitter",
        }
    }
}

impl std::fmt::Display for ApiKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What each `predictor.env` value reads as to a caller who is not the API's owner: the keys
/// stay visible, the values (often secrets) do not.
pub const REDACTED: &str = "<redacted>";

/// One API's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub name: String,
    pub kind: ApiKind,
    /// None for a TrafficSplitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictor: Option<PredictorConfig>,
    /// A TrafficSplitter's RealtimeAPIs and their weights (percent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apis: Vec<BackendConfig>,
    /// None for a TrafficSplitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<ComputeConfig>,
    /// RealtimeAPIs only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingConfig>,
    /// RealtimeAPIs only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<UpdateStrategyConfig>,
    pub networking: NetworkingConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringConfig>,
}

impl ApiConfig {
    /// Replaces every `predictor.env` value with [`REDACTED`].
    pub fn redact_env(&mut self) {
        if let Some(predictor) = self.predictor.as_mut() {
            for value in predictor.env.values_mut() {
                *value = REDACTED.to_string();
            }
        }
    }
}

/// One RealtimeAPI of a TrafficSplitter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub name: String,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictorConfig {
    /// `python`, `onnx` or `command`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// python and onnx: the model's location (as written in `cortex.yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_path: Option<String>,
    /// python and onnx: several models (instead of `model_path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<ModelsConfig>,
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_path: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub processes_per_replica: u32,
    pub threads_per_process: u32,
}

/// `predictor.models` (cortex 0.22): the models a predictor serves, each from its own location
/// (`paths`) or every subdirectory of one (`dir`), and how many stay loaded (`cache_size` in
/// memory, `disk_cache_size` downloaded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<NamedModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_cache_size: Option<u32>,
}

impl ModelsConfig {
    /// Every location the models come from.
    pub fn locations(&self) -> impl Iterator<Item = &str> {
        self.dir
            .as_deref()
            .into_iter()
            .chain(self.paths.iter().map(|p| p.model_path.as_str()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedModel {
    pub name: String,
    pub model_path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputeConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    pub gpu: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscalingConfig {
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub init_replicas: u32,
    pub target_replica_concurrency: f64,
    pub max_replica_concurrency: u32,
    pub window: String,
    pub downscale_stabilization_period: String,
    pub upscale_stabilization_period: String,
    pub max_downscale_factor: f64,
    pub max_upscale_factor: f64,
    pub downscale_tolerance: f64,
    pub upscale_tolerance: f64,
    #[serde(default = "default_max_queue_length")]
    pub max_queue_length: u32,
}

fn default_max_queue_length() -> u32 {
    100
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateStrategyConfig {
    pub max_surge: Surge,
    pub max_unavailable: Surge,
}

/// A count of replicas (`1`) or a percentage of them (`"25%"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Surge {
    Count(u32),
    Percent(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkingConfig {
    pub endpoint: String,
    /// e.g. `5m`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub timeout: String,
    /// e.g. `64Mi`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub max_request_size: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringConfig {
    /// `classification` or `regression`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}
