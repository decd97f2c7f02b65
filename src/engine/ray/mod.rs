//! The Ray engine: workers run as actors of a Ray cluster, which the server drives over HTTP.
//!
//! Ray only places and runs processes; cortex keeps everything else (gateway, autoscaler,
//! queue, statuses, logs). Each group of workers (a RealtimeAPI's replicas, a batch job's
//! workers) has one Ray job whose entrypoint is the driver in `python/cortex_ray` (shipped in
//! the binary); the driver keeps one named, detached actor per worker, each running the same
//! program the local engine runs, and syncs with the engine about twice a second over the
//! engine's own port (`listener.rs`): it reports what its actors do and gets back what the
//! engine wants (`groups.rs`). Restarts are the engine's decision (a generation raised after
//! cortex's back-off), never Ray's. Bundles reach the nodes as content-addressed archives
//! served on the same port (`bundles.rs`), the plan's server paths rewritten for the node
//! (`desired.rs`). `watchdog.rs` submits drivers, resubmits one that ended, ends stops whose
//! driver is silent, and keeps the list of nodes.

mod bundles;
pub mod cluster_api;
mod desired;
mod effects;
mod groups;
mod handle;
mod health;
mod listener;
pub mod protocol;
mod report;
mod watchdog;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;

use super::local::file_logs::FileLogs;
use super::{Engine, Purpose, Replica, ReplicaLogs, ReplicaPlan};
use cluster_api::{ClusterApi, NodeInfo};
use groups::{Group, Groups};
use handle::RayReplica;

/// How `cortex server --engine ray` reaches its cluster.
#[derive(Debug, Clone)]
pub struct RayConfig {
    /// The cluster's dashboard (`http://HEAD:8265`).
    pub address: String,
    /// The cluster's token (`RAY_AUTH_TOKEN` of its nodes). The nodes download bundles with
    /// it too: they must have it as `RAY_RUNTIME_ENV_BEARER_TOKEN`.
    pub token: String,
    /// Where the engine listens for drivers and bundle downloads (port 0: any free one). The
    /// nodes must reach it.
    pub listen: SocketAddr,
    /// The interpreter on the nodes that runs the driver (it must import `ray`).
    pub python: String,
}

/// What every part of the engine shares.
#[derive(Debug)]
pub(crate) struct Shared {
    cluster: ClusterApi,
    bundles: bundles::Bundles,
    /// The engine's URL as the nodes reach it.
    url: String,
    /// The server's python runtime (shim and package), shipped in every bundle.
    runtime_dir: PathBuf,
    log_root: PathBuf,
    python: String,
    /// The driver's bundle name.
    driver_bundle: String,
    groups: Mutex<Groups>,
    /// `/healthz` checks of replicas.
    http: reqwest::Client,
    /// The cluster's nodes, as last listed.
    nodes: Mutex<Vec<NodeInfo>>,
    /// Set when the server shuts down: the watchdog stops.
    closing: tokio_util::sync::CancellationToken,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Groups> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn log_path(&self, api: &str, replica_id: &str) -> PathBuf {
        self.log_root.join(api).join(format!("{replica_id}.log"))
    }

    fn bundle_url(&self, name: &str) -> String {
        format!("{}/api/v2/engine/ray/files/{name}", self.url)
    }
}

/// Runs workers as actors of a Ray cluster.
#[derive(Debug, Clone)]
pub struct RayEngine {
    shared: Arc<Shared>,
}

impl RayEngine {
    /// Connects to the cluster (its version answers with the token), starts the engine's
    /// listener and its watchdog. `runtime_dir` holds the python runtime replicas run;
    /// `data_dir` gets the bundles (`ray-bundles/`), `log_root` the workers' logs.
    pub async fn start(
        config: RayConfig,
        runtime_dir: PathBuf,
        data_dir: &std::path::Path,
        log_root: PathBuf,
    ) -> anyhow::Result<RayEngine> {
        use anyhow::Context;
        let cluster = ClusterApi::new(&config.address, &config.token);
        let version = cluster.version().await?;
        let bundles = bundles::Bundles::new(data_dir.join("ray-bundles"))
            .context("cannot make the directory of the Ray bundles")?;
        let bundles = tokio::task::spawn_blocking(move || {
            let name = bundles.driver()?;
            Ok::<_, std::io::Error>((bundles, name))
        })
        .await?
        .context("cannot write the Ray driver's bundle")?;
        let (bundles, driver_bundle) = bundles;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {} for the Ray nodes", config.listen))?;
        let addr = listener.local_addr()?;
        let host = if addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        };
        let shared = Arc::new(Shared {
            cluster,
            bundles,
            url: format!("http://{host}"),
            runtime_dir,
            log_root,
            python: config.python,
            driver_bundle,
            groups: Mutex::default(),
            http: super::readiness_client(),
            nodes: Mutex::default(),
            closing: tokio_util::sync::CancellationToken::new(),
        });
        tracing::info!(
            "engine: Ray {version} at {}; drivers and nodes reach this server at {}",
            shared.cluster.address(),
            shared.url
        );
        tokio::spawn(listener::serve(listener, shared.clone(), config.token));
        tokio::spawn(watchdog::run(shared.clone()));
        Ok(RayEngine { shared })
    }

    /// The cluster's dashboard address.
    pub fn address(&self) -> &str {
        self.shared.cluster.address()
    }

    /// The engine's own URL, as the drivers and the nodes reach it.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// The cluster's nodes as last listed: (node id, IP, alive).
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.shared
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The group a worker of `plan` belongs to: its API's replicas, or its job's workers.
fn group_key(plan: &ReplicaPlan) -> String {
    match &plan.purpose {
        Purpose::Realtime => format!("realtime/{}", plan.api),
        Purpose::BatchWorker { job_id } => format!("job/{job_id}"),
    }
}

/// A new group's name: what it is for, made safe for Ray names, and a random suffix (a
/// group of an earlier server, or of a deleted API of the same name, is never taken for it).
fn group_name(plan: &ReplicaPlan) -> String {
    let base = match &plan.purpose {
        Purpose::Realtime => plan.api.clone(),
        Purpose::BatchWorker { job_id } => format!("job-{}", job_id.get(..12).unwrap_or(job_id)),
    };
    let safe: String = base
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let suffix: u32 = rand::random();
    format!("{safe}-{suffix:08x}")
}

impl Engine for RayEngine {
    fn start(&self, plan: ReplicaPlan) -> Arc<dyn Replica> {
        let shared = &self.shared;
        let log_path = shared.log_path(&plan.api, &plan.replica_id);
        // Without its bundle's URL (made below, off the async threads) it is not asked for.
        let desired = desired::desired(&plan, &shared.runtime_dir, None);
        let replica = Arc::new(RayReplica::new(
            plan.replica_id.clone(),
            plan.api.clone(),
            &plan.purpose,
            log_path,
            desired,
        ));
        {
            let mut groups = shared.lock();
            let key = group_key(&plan);
            let name = match groups.by_key.get(&key) {
                Some(name) => name.clone(),
                None => {
                    let name = group_name(&plan);
                    groups.by_key.insert(key, name.clone());
                    let token = hex::encode(rand::random::<[u8; 32]>());
                    groups.by_name.insert(name.clone(), Group::new(token));
                    name
                }
            };
            if let Some(group) = groups.by_name.get_mut(&name) {
                group
                    .replicas
                    .insert(plan.replica_id.clone(), replica.clone());
            }
        }
        let (shared, r) = (shared.clone(), replica.clone());
        tokio::spawn(async move {
            let (project, bundles) = (plan.cwd.clone(), shared.clone());
            let made = tokio::task::spawn_blocking(move || {
                bundles.bundles.replica(&project, &bundles.runtime_dir)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match made {
                Ok(name) => {
                    let url = shared.bundle_url(&name);
                    r.update(|t| t.desired.working_dir = Some(url));
                    let line = groups::starting_line(&r, 1);
                    effects::apply(&shared, vec![effects::Effect::Line { replica: r, line }]);
                }
                Err(e) => r.update(|t| {
                    t.snapshot.phase = super::ReplicaPhase::Failed;
                    t.snapshot.last_error = Some(format!(
                        "cannot make the bundle the Ray nodes download: {e}"
                    ));
                }),
            }
        });
        replica
    }

    fn logs(&self, api: &str, replica_id: &str) -> Arc<dyn ReplicaLogs> {
        Arc::new(FileLogs {
            path: self.shared.log_path(api, replica_id),
        })
    }

    fn describe(&self) -> crate::api::EngineInfo {
        crate::api::EngineInfo {
            kind: "ray".to_string(),
            cluster: Some(self.address().to_string()),
            nodes: self
                .nodes()
                .into_iter()
                .map(|n| crate::api::EngineNode {
                    alive: n.state == "ALIVE",
                    id: n.node_id,
                    ip: n.node_ip,
                })
                .collect(),
        }
    }

    fn remove_logs(&self, api: &str) -> BoxFuture<'static, ()> {
        crate::engine::log_files::remove_dir(self.shared.log_root.join(api))
    }

    fn prune_logs(&self, api: &str, sets: Vec<String>) -> BoxFuture<'static, ()> {
        crate::engine::log_files::prune_dir(self.shared.log_root.join(api), sets)
    }
}
