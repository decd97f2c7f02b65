//! The Model Bazaar v2 deployment API (`/api/v2/deploy/...`): bodies and answers exactly as
//! its documentation writes them. Success without a payload is `{}`.

use serde::{Deserialize, Serialize};

/// `POST /api/v2/deploy/{model_id}`: every field optional; an empty or `null` body is `{}`,
/// and fields it does not know are ignored (as Model Bazaar's own server does).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployParams {
    /// Also serve the model at `/<deployment_name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_name: Option<String>,
    /// False: one replica; true: between `autoscaling_min` and `autoscaling_max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling_min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling_max: Option<i64>,
    /// Memory per replica, in MB (overrides `compute.mem`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
}

/// `GET /api/v2/deploy/{model_id}/status` and `.../status-internal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentStatus {
    /// `not_started`, `starting`, `in_progress`, `complete`, `stopped` or `failed`.
    pub status: String,
    /// The current deployment's errors, oldest first (never null).
    pub errors: Vec<String>,
    /// The current deployment's warnings, oldest first (never null).
    pub warnings: Vec<String>,
}

/// One element of `GET /api/v2/deploy/{model_id}/logs`: the recent output of one replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaOutput {
    pub stdout: String,
    pub stderr: String,
}

/// `POST /api/v2/deploy/update-status` (job token).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// Missing: empty, which no status is (422).
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// Why (Model Bazaar v1 jobs send it with `failed`): recorded as an error of the
    /// deployment with `failed`, as a warning otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `GET|POST /api/v2/deploy/log` (job token).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLog {
    /// `warning` or `error`.
    #[serde(default)]
    pub level: String,
    #[serde(default)]
    pub message: String,
}

/// `POST /api/v2/deploy/{model_id}/save`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveRequest {
    #[serde(default)]
    pub model_name: String,
}

/// The answer to `POST /api/v2/deploy/{model_id}/save`: the new model, and the token that
/// uploads its files (`PUT /api/v2/deploy/{model_id}/files`) and marks it complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveAnswer {
    pub model_id: String,
    pub update_token: String,
}

/// One message a deployment logged, with its time, for `cortex get X -o json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentMessage {
    /// Which deployment of the model logged it (the current one is `ApiResponse::deployment`).
    pub deployment: i64,
    /// `warning` or `error`.
    pub level: String,
    pub message: String,
    /// Unix seconds.
    pub time: i64,
}

/// A model's deployment as `cortex get X -o json` shows it: its status word (the same as
/// `GET /api/v2/deploy/{model_id}/status` gives), what the deployment reported, and every
/// message of every deployment. Its errors and warnings are in `history` only (the current
/// ones have its `number`); why the API's replicas do not run is the API's `errors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentInfo {
    /// The number of the current deployment (each new version counts one up).
    pub number: i64,
    /// `not_started`, `starting`, `in_progress`, `complete`, `stopped` or `failed`.
    pub status: String,
    /// What the deployment set with `update-status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// The extra route of a Model Bazaar deploy (`/<deployment_name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_name: Option<String>,
    /// Every warning and error of every deployment, oldest first.
    pub history: Vec<DeploymentMessage>,
}

/// `GET /api/v2/model/{model_id}/permissions`: what the calling token may do with the model
/// (upstream's `ModelPermissions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPermissions {
    pub read: bool,
    pub write: bool,
    pub owner: bool,
    pub username: String,
    /// When the token expires, RFC 3339 (UTC); `9999-12-31T23:59:59Z` when it does not.
    pub exp: String,
}
