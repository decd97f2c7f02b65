//! Validated API specs: what `cortex.yaml` means once defaults are filled in.
//!
//! Everything downstream of `spec::parse*` uses these types and never re-checks input. They
//! serialise to JSON for storage and for `cortex get X -o json`, using the YAML key names, and
//! read back unchanged. Quantities serialise as canonical text (`"200m"`, `"1Gi"` as written,
//! `"1m30s"`, `"25%"` or a count); see [`Cpu`], [`Mem`], [`Duration`] and [`Surge`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::quantity::{Cpu, Duration, Mem, Surge};
pub use crate::api::{ModelsConfig, NamedModel};

/// One entry of `cortex.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSpec {
    pub name: String,
    pub kind: ApiKind,
    /// What serves it; `None` for a TrafficSplitter (its `apis` serve).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictor: Option<Predictor>,
    /// A TrafficSplitter's RealtimeAPIs and their shares; empty for other kinds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apis: Vec<Backend>,
    pub compute: Compute,
    /// Present for RealtimeAPIs (defaults filled in); `None` for BatchAPIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Present for RealtimeAPIs (defaults filled in); `None` for BatchAPIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<UpdateStrategy>,
    pub networking: Networking,
    /// Accepted and kept; not acted upon yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<Monitoring>,
}

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

/// One RealtimeAPI of a TrafficSplitter and its share of the requests, in percent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub name: String,
    pub weight: u32,
}

impl std::fmt::Display for ApiKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PredictorType {
    Python,
    Command,
    /// An `ONNXPredictor` with an `onnx_client` (the python shim, with onnxruntime).
    Onnx,
}

impl PredictorType {
    /// Whether its replicas run the python shim (`python` and `onnx`), rather than a command.
    pub fn runs_shim(self) -> bool {
        matches!(self, PredictorType::Python | PredictorType::Onnx)
    }

    /// The class the predictor file defines.
    pub fn class_name(self) -> &'static str {
        match self {
            PredictorType::Onnx => "ONNXPredictor",
            _ => "PythonPredictor",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Predictor {
    #[serde(rename = "type")]
    pub kind: PredictorType,
    /// python: the file (relative to the project root) that defines `PythonPredictor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// command: the program and its arguments (a YAML string is split with shell words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// python and onnx: where the model is: a file or directory in the project (relative),
    /// `file:///...`, an `http(s)://` URL or `s3://bucket/prefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_path: Option<String>,
    /// python and onnx: several models (instead of `model_path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<ModelsConfig>,
    /// Passed to `__init__(self, config)`; always a mapping (`{}` by default).
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Added to PYTHONPATH, relative to the project root (default: the project root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_path: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub processes_per_replica: u32,
    pub threads_per_process: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compute {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    pub gpu: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<Mem>,
}

/// cortex 0.2x autoscaling, with cortex's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Autoscaling {
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub init_replicas: u32,
    pub target_replica_concurrency: f64,
    pub max_replica_concurrency: u32,
    pub window: Duration,
    pub downscale_stabilization_period: Duration,
    pub upscale_stabilization_period: Duration,
    pub max_downscale_factor: f64,
    pub max_upscale_factor: f64,
    pub downscale_tolerance: f64,
    pub upscale_tolerance: f64,
    /// Requests that may wait per replica (at least one replica's worth, even at zero) when
    /// every replica has `max_replica_concurrency` in flight; beyond it: 503 `overloaded`.
    #[serde(default = "default_max_queue_length")]
    pub max_queue_length: u32,
}

fn default_max_queue_length() -> u32 {
    DEFAULT_MAX_QUEUE_LENGTH
}

/// Requests that may wait per replica by default (cortex 0.36's `max_queue_length`).
pub const DEFAULT_MAX_QUEUE_LENGTH: u32 = 100;

impl Autoscaling {
    /// cortex's defaults, given the default `target_replica_concurrency`
    /// (`processes_per_replica × threads_per_process`).
    pub fn with_target(target_replica_concurrency: f64) -> Autoscaling {
        Autoscaling {
            min_replicas: 1,
            max_replicas: 100,
            init_replicas: 1,
            target_replica_concurrency,
            max_replica_concurrency: 1024,
            window: Duration(60),
            downscale_stabilization_period: Duration(5 * 60),
            upscale_stabilization_period: Duration(60),
            max_downscale_factor: 0.75,
            max_upscale_factor: 1.5,
            downscale_tolerance: 0.05,
            upscale_tolerance: 0.05,
            max_queue_length: DEFAULT_MAX_QUEUE_LENGTH,
        }
    }
}

/// How a rolling update replaces replicas; `25%`/`25%` by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateStrategy {
    pub max_surge: Surge,
    pub max_unavailable: Surge,
}

impl Default for UpdateStrategy {
    fn default() -> UpdateStrategy {
        UpdateStrategy {
            max_surge: Surge::Percent(25),
            max_unavailable: Surge::Percent(25),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Networking {
    /// The gateway path, always starting with `/` (default `/<name>`).
    pub endpoint: String,
    /// How long a prediction may take, waiting for a replica included; then 504.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// The largest prediction request body; larger ones get 413.
    #[serde(default = "default_max_request_size")]
    pub max_request_size: Mem,
    /// A port of the local server's host where the API also answers at `/` (as cortex's local
    /// environment had it): `http://localhost:<local_port>/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port: Option<u16>,
}

/// How long a prediction may take by default: generous, for slow models.
pub const DEFAULT_TIMEOUT: Duration = Duration(300);
/// The largest prediction request body by default.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 64 << 20;

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

fn default_max_request_size() -> Mem {
    Mem {
        bytes: DEFAULT_MAX_REQUEST_BYTES,
        text: "64Mi".to_string(),
    }
}

impl Networking {
    /// An endpoint with the default limits.
    pub fn at(endpoint: String) -> Networking {
        Networking {
            endpoint,
            timeout: DEFAULT_TIMEOUT,
            max_request_size: default_max_request_size(),
            local_port: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitoring {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_type: Option<ModelType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    Classification,
    Regression,
}
