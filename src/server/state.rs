//! What every handler can reach.

use std::sync::Arc;

use super::deployments::Deployments;
use super::tokens::Tokens;
use crate::store::{BundleStore, Store};

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub bundles: BundleStore,
    pub deployments: Arc<Deployments>,
    /// BatchAPI jobs and their workers.
    pub jobs: Arc<super::jobs::Jobs>,
    /// True when the server listens on loopback only (and was not told to require tokens):
    /// predictions, jobs and `/metrics` then take callers without a token, as cortex's local
    /// mode did.
    pub anonymous_ok: bool,
    /// Shared client for batch workers and the server's own calls.
    pub http: reqwest::Client,
    /// The gateway's client: pooled keep-alive connections to replicas.
    pub replicas: super::replica_client::ReplicaClient,
    /// The memory prediction bodies read whole (without a Content-Length) may use together.
    pub bodies: super::body_budget::BodyBudget,
    /// Held while deploying or deleting, so changes to APIs happen one at a time.
    pub changes: Arc<tokio::sync::Mutex<()>>,
    /// Issues and checks tokens (valid user tokens are remembered: checks skip the database).
    pub tokens: Arc<Tokens>,
    /// Refuses deploys while the data directory's disk is nearly full.
    pub disk: super::disk::DiskGuard,
    /// How many lines of each stream `GET /api/v2/deploy/{id}/logs` returns per replica.
    pub log_tail_lines: usize,
    /// Removes bundles and projects no API uses any more.
    pub sweeper: Arc<super::cleanup::Sweeper>,
    /// Cancelled when the server shuts down; long-lived streams (`logs -f`) end on it.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// How replicas are isolated (reported by `/healthz`).
    pub isolation: Arc<crate::api::Isolation>,
    /// What runs the replicas (said by `/healthz`).
    pub engine: Arc<dyn crate::engine::Engine>,
    /// The loopback ports APIs asked for with `networking.local_port`.
    pub local_ports: Arc<super::local_ports::LocalPorts>,
    /// Answers `GET /metrics`.
    pub exporter: Arc<super::exposition::Exporter>,
}
