//! The control server: control API, gateway and replica supervision on one port.

pub mod access;
pub mod admission;
pub mod auth;
pub mod beside;
pub mod body_budget;
pub mod bundle_access;
pub mod cleanup;
pub mod conda_tool;
pub mod connections;
mod data_check;
pub mod deadline_body;
pub mod deployments;
pub mod disk;
pub mod endpoints;
pub mod error;
pub mod exposition;
pub mod fetch;
pub mod freed;
pub mod front;
pub mod gateway;
pub mod head_guard;
pub mod interpreters;
pub mod isolation;
pub mod jobs;
pub mod json_errors;
pub mod limits;
pub mod live_api;
pub mod local_ports;
pub mod metrics;
pub mod objects;
pub mod project_python;
pub mod replica_client;
pub mod replica_set;
pub mod replica_tree;
pub mod rollout;
pub mod route_table;
pub mod routes;
pub mod scaler;
pub mod splitter;
mod startup;
pub mod state;
pub mod status;
pub mod swapped;
mod temp_cleaners;
pub mod tokens;
pub mod upload;
pub mod venv_sweep;
pub mod versions;
pub mod waiting;
mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::api::RuntimeFile;
use crate::engine::Engine;
use crate::store::{BundleStore, Store};
use deployments::Deployments;
use startup::{DataDir, ShutdownSignals};
use state::AppState;

/// The server's S3 access for job inputs, from its `AWS_*` variables (said in its log); an
/// unusable variable stops the server from starting.
fn s3_access() -> anyhow::Result<objects::S3Access> {
    let access = objects::S3Access::from_env()
        .map_err(|e| anyhow::anyhow!("cannot read the S3 configuration: {e}"))?;
    match access.config() {
        Some(config) => tracing::info!("{}", config.describe()),
        None => tracing::info!(
            "no AWS credentials in the environment: s3:// job inputs are refused (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to read them)"
        ),
    }
    Ok(access)
}

/// How `cortex server` was asked to run.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// When `listen`'s port is taken, listen on any free port of the same address instead.
    pub port_fallback: bool,
    /// Every route needs a token, on loopback too.
    pub require_tokens: bool,
    /// Deploys are refused while the data directory's disk has less free space (MiB).
    pub min_free_disk_mb: u64,
    /// Lines of each stream the Model Bazaar logs route returns per replica.
    pub log_tail_lines: usize,
    /// The directory whose files jobs may name in `delimited_files` (none: URLs only).
    pub data_root: Option<PathBuf>,
    /// How replicas are held in (sandbox, user, paths).
    pub isolation: isolation::IsolationConfig,
    /// Special addresses (loopback, private, ...) `delimited_files` URLs may be fetched from.
    pub allow_fetch: Vec<fetch::Allowed>,
    /// Open client connections at most (none: half the open-file limit).
    pub max_connections: Option<usize>,
    /// How long a client has to send a request's headers.
    pub header_read_timeout: std::time::Duration,
    /// How long a keep-alive connection may wait for its next request.
    pub idle_timeout: std::time::Duration,
    /// How long a pooled connection to a replica may stay unused before it is closed.
    pub replica_idle_timeout: std::time::Duration,
    /// The memory prediction bodies without a Content-Length may use together (bytes).
    pub max_buffered_bodies: usize,
    /// The cap of each replica log file (bytes); one rotated generation is kept.
    pub log_max_bytes: u64,
    /// What one bundle may unpack to (bytes and files).
    pub unpack_limits: crate::store::unpack_limits::UnpackLimits,
    /// Batch workers that may run at once, across jobs (the others wait as `pending`).
    pub max_batch_workers: usize,
    /// Spare python interpreters kept ready for python replicas (local engine; 0: none).
    pub spare_interpreters: usize,
    /// What runs replicas and batch workers.
    pub engine: EngineChoice,
}

/// The engine `cortex server --engine` chose.
#[derive(Debug, Clone)]
pub enum EngineChoice {
    /// Child processes of the server.
    Local,
    /// Actors of a Ray cluster (`listen`'s port 0: the engine's port is chosen at start).
    Ray(crate::engine::ray::RayConfig),
}

/// Runs the server until SIGINT or SIGTERM; stops every replica before returning.
pub async fn run(config: ServerConfig) -> anyhow::Result<()> {
    let open_files = connections::raise_open_files_limit();
    connections::keep_freed_memory();
    let data = startup::open_data_dir(&config).await?;
    let signals = ShutdownSignals::catch();
    tokens::ensure_admin_token(&data.store, &config.data_dir).await?;
    let (isolated, shim, seeded) = startup::replica_runtime(&config).await?;
    let (listener, addr, url) = startup::listen(&config).await?;
    crate::engine::local::rotating::set_cap(config.log_max_bytes);
    crate::engine::local::rotating::set_floor(config.min_free_disk_mb.saturating_mul(1 << 20));
    let bundles = BundleStore::new(config.data_dir.clone())
        .with_projects(isolated.tree.projects.clone())
        .with_limits(config.unpack_limits);
    cleanup::at_start(&data.store, &bundles).await;
    let engine = startup::start_engine(&config, &isolated, &shim.entry, seeded).await?;
    let tokens = Arc::new(tokens::Tokens::new(data.store.clone()));
    // The replicas a previous server started are gone, and so are their deployments: their
    // job tokens must not work any more (restored APIs get new ones).
    tokens
        .revoke_deployment_tokens()
        .await
        .context("cannot revoke the job tokens of the previous server's deployments")?;
    let deployments = new_deployments(&data.store, &engine, &tokens, &isolated, shim.entry);
    deployments.set_server_url(url.clone());
    let limits = connections::ConnectionLimits {
        max_connections: config
            .max_connections
            .unwrap_or_else(|| connections::default_max_connections(open_files)),
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.idle_timeout,
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let parts = Parts {
        store: data.store.clone(),
        bundles,
        deployments,
        engine,
        tokens,
        isolation: Arc::new(isolated.report.clone()),
        local_ports: Arc::new(local_ports::LocalPorts::new(addr, limits, shutdown.clone())),
        anonymous_ok: addr.ip().is_loopback() && !config.require_tokens,
        shutdown: shutdown.clone(),
        venvs: isolated.tree.venvs.clone(),
    };
    let state = app_state(&config, parts, &url)?;
    startup::restore(&state.store, &state.bundles, &state.deployments).await;
    let deployments = state.deployments.clone();
    state.jobs.resume(|name| deployments.get(name)).await;
    let background = [
        tokio::spawn(state.sweeper.clone().run(shutdown.clone())),
        tokio::spawn(
            deployments
                .clone()
                .reconcile_loop(state.changes.clone(), shutdown.clone()),
        ),
    ];
    let info = RuntimeFile {
        pid: std::process::id(),
        port: addr.port(),
        url: url.clone(),
        version: crate::VERSION.to_string(),
    };
    crate::atomic_file::write(&data.runtime_file, &serde_json::to_vec_pretty(&info)?)?;
    eprintln!("cortex server {} listening on {url}", crate::VERSION);
    let failed = serve(listener, state.clone(), limits, signals).await;
    shutdown.cancel();
    for task in background {
        let _ = task.await;
    }
    state.jobs.shutdown().await;
    state.deployments.shutdown().await;
    state.engine.shutdown().await;
    state.store.checkpoint().await;
    remove_runtime_file(&data);
    eprintln!("cortex server stopped");
    match failed {
        Some(e) => Err(anyhow::anyhow!("cannot serve connections: {e}")),
        None => Ok(()),
    }
}

/// The live APIs of a server whose replicas run on `engine`, with `isolated`'s python and
/// tree and the shim at `shim_entry`.
fn new_deployments(
    store: &Store,
    engine: &Arc<dyn Engine>,
    tokens: &Arc<tokens::Tokens>,
    isolated: &isolation::Isolation,
    shim_entry: PathBuf,
) -> Arc<Deployments> {
    let conda = conda_tool::find(isolated.user.as_ref());
    Arc::new(Deployments::new(
        engine.clone(),
        store.clone(),
        tokens.clone(),
        crate::runtime::ReplicaRuntime {
            shim_path: shim_entry,
            venvs_dir: isolated.tree.venvs.clone(),
            python: isolated.python.clone(),
            conda: conda.clone(),
        },
        Arc::new(interpreters::Interpreters::new(
            isolated.python.clone(),
            isolated.user.clone(),
            conda,
        )),
    ))
}

/// What the handlers' state is made of that the start-up made first.
struct Parts {
    store: Store,
    bundles: BundleStore,
    deployments: Arc<Deployments>,
    engine: Arc<dyn Engine>,
    tokens: Arc<tokens::Tokens>,
    isolation: Arc<crate::api::Isolation>,
    local_ports: Arc<local_ports::LocalPorts>,
    anonymous_ok: bool,
    shutdown: tokio_util::sync::CancellationToken,
    /// Where the models' virtualenvs are.
    venvs: std::path::PathBuf,
}

/// The handlers' state: `parts`, and the jobs, the sweeper and the clients they use.
fn app_state(config: &ServerConfig, parts: Parts, url: &str) -> anyhow::Result<AppState> {
    let Parts {
        store,
        bundles,
        deployments,
        engine,
        tokens,
        isolation,
        local_ports,
        anonymous_ok,
        shutdown,
        venvs,
    } = parts;
    let data_dir = &config.data_dir;
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()?;
    let jobs = Arc::new(jobs::Jobs::new(
        store.clone(),
        engine.clone(),
        tokens.clone(),
        http.clone(),
        jobs::Sources {
            fetcher: fetch::Fetcher::new(fetch::FetchPolicy::new(config.allow_fetch.clone()))?,
            data_root: config.data_root.clone(),
            objects: s3_access()?,
        },
        data_dir,
        jobs::WorkerSlots::new(config.max_batch_workers),
    ));
    jobs.set_server_url(url.to_string());
    let changes = Arc::new(tokio::sync::Mutex::new(()));
    let sweeper = Arc::new(cleanup::Sweeper::new(
        store.clone(),
        bundles.clone(),
        deployments.clone(),
        jobs.clone(),
        changes.clone(),
        venvs,
    ));
    Ok(AppState {
        store,
        bundles,
        deployments,
        jobs,
        anonymous_ok,
        http,
        replicas: replica_client::ReplicaClient::new(config.replica_idle_timeout),
        bodies: body_budget::BodyBudget::new(config.max_buffered_bodies),
        changes,
        tokens,
        disk: disk::DiskGuard::new(data_dir.clone(), config.min_free_disk_mb),
        log_tail_lines: config.log_tail_lines,
        shutdown,
        local_ports,
        isolation,
        engine,
        sweeper,
        exporter: Arc::default(),
    })
}

/// Serves `listener` (a thread per core) until a signal, then gives in-flight requests a
/// grace period: a prediction that never ends must not keep the server (and every replica)
/// alive forever. Returns why serving failed, if it did.
async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: connections::ConnectionLimits,
    signals: ShutdownSignals,
) -> Option<std::io::Error> {
    let shutdown = state.shutdown.clone();
    let app = routes::router(state.clone());
    state.local_ports.set_app(app.clone());
    local_ports::sync_stored(&state.store, &state.local_ports).await;
    let graceful = shutdown.clone();
    tokio::spawn(async move {
        signals.received().await;
        graceful.cancel();
    });
    let front = front::Front::new(state, app, tokio::runtime::Handle::current());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let serve = connections::serve_on_threads(listener, front, threads, limits, shutdown.clone());
    let grace = startup::shutdown_grace();
    tokio::select! {
        served = serve => served.err(),
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        } => {
            eprintln!("requests still in flight after {}s; stopping anyway", grace.as_secs());
            None
        }
    }
}

/// Removes the runtime file, if it is still this server's.
fn remove_runtime_file(data: &DataDir) {
    let ours = std::fs::read(&data.runtime_file)
        .ok()
        .and_then(|b| serde_json::from_slice::<RuntimeFile>(&b).ok())
        .is_some_and(|f| f.pid == std::process::id());
    if ours {
        let _ = std::fs::remove_file(&data.runtime_file);
    }
}
