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
pub mod state;
pub mod status;
pub mod swapped;
pub mod tokens;
pub mod upload;
pub mod versions;
pub mod waiting;
mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::api::RuntimeFile;
use crate::engine::LocalEngine;
use crate::store::{models, BundleStore, Store};
use deployments::Deployments;
use state::AppState;

/// How long in-flight requests may run on after SIGTERM before the server stops anyway
/// (`CORTEX_SHUTDOWN_GRACE_SECS` changes it).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

fn shutdown_grace() -> std::time::Duration {
    std::env::var("CORTEX_SHUTDOWN_GRACE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(SHUTDOWN_GRACE, std::time::Duration::from_secs)
}

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
    let data_dir = &config.data_dir;
    // What the server makes is its own: other OS users read nothing of the data directory.
    // SAFETY: umask(2) only sets the process's file mode mask.
    unsafe {
        libc::umask(0o077);
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    // One server per data directory: a second one would run every replica twice.
    let lock_path = data_dir.join("server.lock");
    let _lock = lock_data_dir(&lock_path).await?;
    // Whatever runtime file is here belongs to a server that is gone.
    let runtime_file = data_dir.join(RuntimeFile::NAME);
    let _ = std::fs::remove_file(&runtime_file);
    data_check::check_database(data_dir, "cortex.db")?;
    let db = data_dir.join("cortex.db");
    let store = Store::open(&db).with_context(|| {
        format!(
            "cannot open the database {}; restore it from a backup",
            db.display()
        )
    })?;
    if let Some(root) = &config.data_root {
        if !root.is_dir() {
            anyhow::bail!(
                "--data-root {} is not a directory; give the directory jobs may read delimited files from",
                root.display()
            );
        }
    }
    let signals = ShutdownSignals::catch();
    tokens::ensure_admin_token(&store, data_dir).await?;
    let isolated = {
        let (wanted, dir, listen) = (config.isolation.clone(), data_dir.clone(), config.listen);
        tokio::task::spawn_blocking(move || isolation::set_up(&wanted, &dir, listen)).await??
    };
    let shim = crate::runtime::install_python_shim(&isolated.tree.runtime)
        .context("cannot write the python predictor shim")?;
    for path in &shim.paths {
        isolated
            .tree
            .share(path, isolated.user.as_ref())
            .context("cannot let replicas read the python predictor shim")?;
    }
    let seeded = {
        let (python, runtime, seed) = (
            isolated.python.clone(),
            isolated.tree.runtime.clone(),
            isolated.tree.pycache_seed(),
        );
        // Off the start's path: the server answers meanwhile.
        tokio::task::spawn_blocking(move || {
            crate::runtime::compile_runtime(&python, &runtime, &seed)
        })
    };

    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) if config.port_fallback && e.kind() == std::io::ErrorKind::AddrInUse => {
            tokio::net::TcpListener::bind(SocketAddr::new(config.listen.ip(), 0)).await?
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot listen on {}", config.listen));
        }
    };
    let addr = listener.local_addr()?;
    // A wildcard address is not something to connect to: advertise loopback instead.
    let connectable = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    let url = format!("http://{connectable}");

    crate::engine::local::rotating::set_cap(config.log_max_bytes);
    let bundles = BundleStore::new(data_dir.clone())
        .with_projects(isolated.tree.projects.clone())
        .with_limits(config.unpack_limits);
    cleanup::at_start(&store, &bundles).await;
    let engine: Arc<dyn crate::engine::Engine> = match &config.engine {
        EngineChoice::Local => {
            let owner = data_dir.canonicalize().unwrap_or_else(|_| data_dir.clone());
            let local = LocalEngine::new(
                &owner.display().to_string(),
                data_dir.join("logs"),
                isolated.sandbox.clone(),
            );
            let reaper = local.clone();
            let reaped = tokio::task::spawn_blocking(move || reaper.reap_orphans()).await?;
            if reaped > 0 {
                eprintln!("stopped {reaped} process(es) a previous server left running");
            }
            // After the reaping (spares carry the same owner mark), and started once the
            // runtime is compiled: they read its bytecode.
            Arc::new(local.with_spares(
                (&isolated.python, &shim.entry),
                config.spare_interpreters,
                seeded,
            ))
        }
        EngineChoice::Ray(ray) => {
            let runtime_dir = shim
                .entry
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let ray = crate::engine::RayEngine::start(
                ray.clone(),
                runtime_dir,
                data_dir,
                data_dir.join("logs"),
            )
            .await
            .context("cannot use the Ray cluster (--engine ray)")?;
            eprintln!(
                "running replicas on the Ray cluster at {}; its drivers and nodes reach this server at {}",
                ray.address(),
                ray.url()
            );
            Arc::new(ray)
        }
    };
    let tokens = Arc::new(tokens::Tokens::new(store.clone()));
    // The replicas a previous server started are gone, and so are their deployments: their
    // job tokens must not work any more (restored APIs get new ones).
    tokens
        .revoke_deployment_tokens()
        .await
        .context("cannot revoke the job tokens of the previous server's deployments")?;
    let conda = conda_tool::find(isolated.user.as_ref());
    let deployments = Arc::new(Deployments::new(
        engine.clone(),
        store.clone(),
        tokens.clone(),
        crate::runtime::ReplicaRuntime {
            shim_path: shim.entry,
            venvs_dir: isolated.tree.venvs.clone(),
            python: isolated.python.clone(),
            conda: conda.clone(),
        },
        Arc::new(interpreters::Interpreters::new(
            isolated.python.clone(),
            isolated.user.clone(),
            conda,
        )),
    ));
    deployments.set_server_url(url.clone());
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
    jobs.set_server_url(url.clone());
    let changes = Arc::new(tokio::sync::Mutex::new(()));
    let sweeper = Arc::new(cleanup::Sweeper::new(
        store.clone(),
        bundles.clone(),
        deployments.clone(),
        jobs.clone(),
        changes.clone(),
    ));
    let limits = connections::ConnectionLimits {
        max_connections: config
            .max_connections
            .unwrap_or_else(|| connections::default_max_connections(open_files)),
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.idle_timeout,
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let local_ports = Arc::new(local_ports::LocalPorts::new(addr, limits, shutdown.clone()));
    let state = AppState {
        store: store.clone(),
        bundles: bundles.clone(),
        deployments: deployments.clone(),
        jobs: jobs.clone(),
        loopback_only: addr.ip().is_loopback(),
        http,
        replicas: replica_client::ReplicaClient::new(config.replica_idle_timeout),
        bodies: body_budget::BodyBudget::new(config.max_buffered_bodies),
        changes,
        tokens,
        disk: disk::DiskGuard::new(data_dir.clone(), config.min_free_disk_mb),
        log_tail_lines: config.log_tail_lines,
        shutdown: shutdown.clone(),
        local_ports,
        isolation: Arc::new(isolated.report.clone()),
        engine: engine.clone(),
        sweeper: sweeper.clone(),
        exporter: Arc::default(),
    };
    restore(&store, &bundles, &deployments).await;
    jobs.resume(|name| deployments.get(name)).await;
    let sweeping = tokio::spawn(sweeper.run(shutdown.clone()));
    let reconciler = tokio::spawn(
        deployments
            .clone()
            .reconcile_loop(state.changes.clone(), shutdown.clone()),
    );

    let info = RuntimeFile {
        pid: std::process::id(),
        port: addr.port(),
        url: url.clone(),
        version: crate::VERSION.to_string(),
    };
    crate::atomic_file::write(&runtime_file, &serde_json::to_vec_pretty(&info)?)?;
    eprintln!("cortex server {} listening on {url}", crate::VERSION);

    let app = routes::router(state.clone());
    state.local_ports.set_app(app.clone());
    local_ports::sync_stored(&state.store, &state.local_ports).await;
    let graceful = shutdown.clone();
    tokio::spawn(async move {
        signals.received().await;
        graceful.cancel();
    });
    let front = front::Front::new(state.clone(), app, tokio::runtime::Handle::current());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let serve = connections::serve_on_threads(listener, front, threads, limits, shutdown.clone());
    // In-flight requests get a grace period; a prediction that never ends must not keep the
    // server (and every replica) alive forever.
    let grace = shutdown_grace();
    let mut failed = None;
    tokio::select! {
        served = serve => failed = served.err(),
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        } => {
            eprintln!("requests still in flight after {}s; stopping anyway", grace.as_secs());
        }
    };
    shutdown.cancel();
    let _ = reconciler.await;
    let _ = sweeping.await;
    jobs.shutdown().await;
    deployments.shutdown().await;
    // Only remove the runtime file if it is still ours.
    if std::fs::read(&runtime_file)
        .ok()
        .and_then(|b| serde_json::from_slice::<RuntimeFile>(&b).ok())
        .is_some_and(|f| f.pid == std::process::id())
    {
        let _ = std::fs::remove_file(&runtime_file);
    }
    match failed {
        Some(e) => Err(anyhow::anyhow!("cannot serve connections: {e}")),
        None => Ok(()),
    }
}

/// Takes an exclusive lock on `path` for the life of the server (released when the process
/// ends, however it ends).
async fn lock_data_dir(path: &Path) -> anyhow::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // A CLI checking whether a server runs holds the lock for an instant: retry briefly.
    let mut attempts = 0;
    let result = loop {
        match file.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) if attempts < 40 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => break other,
        }
    };
    match result {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            let dir = path.parent().unwrap_or(path);
            let owner = std::fs::read(dir.join(RuntimeFile::NAME))
                .ok()
                .and_then(|b| serde_json::from_slice::<RuntimeFile>(&b).ok())
                .map(|rt| format!(" (pid {}, {})", rt.pid, rt.url))
                .unwrap_or_default();
            anyhow::bail!(
                "another cortex server is already using {}{owner}; stop it first or choose another --data-dir",
                dir.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// SIGTERM and SIGINT, caught from the moment this is made: a signal that arrives while the
/// server is still starting (restoring APIs) is kept and ends it once it serves, instead of
/// killing it with its replicas half started.
struct ShutdownSignals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    fn catch() -> ShutdownSignals {
        use tokio::signal::unix::{signal, SignalKind};
        ShutdownSignals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }

    async fn received(mut self) {
        async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = recv(&mut self.term) => {}
            _ = recv(&mut self.int) => {}
        }
    }
}

/// Starts the replicas of every API that was deployed when the server last stopped.
async fn restore(store: &Store, bundles: &BundleStore, deployments: &Deployments) {
    let rows = match store.call(|c| models::list(c)).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!("cannot list the deployed apis: {e}");
            return;
        }
    };
    for row in rows {
        if matches!(
            row.deploy_status,
            models::DeployStatus::Stopped | models::DeployStatus::NotStarted
        ) {
            continue;
        }
        // A newer spec that never served comes back as an update over the one that did, as
        // before the restart: the old generation answers until the new one is ready (started
        // first, and even when the newer spec cannot start).
        if let Some(serving) = &row.serving {
            let served = models::ModelRow {
                spec_json: serving.spec_json.clone(),
                spec_hash: serving.spec_hash.clone(),
                bundle_sha256: serving.bundle_sha256.clone(),
                serving: None,
                ..row.clone()
            };
            if let Err(e) = start_again(bundles, deployments, &served).await {
                tracing::warn!("the generation of {} that served: {e}", row.name);
            }
        }
        if let Err(msg) = start_again(bundles, deployments, &row).await {
            eprintln!("{msg}");
            deployments.restore_failed(&row.name, msg);
        }
    }
}

/// Starts `row`'s version again; the error says why it could not.
async fn start_again(
    bundles: &BundleStore,
    deployments: &Deployments,
    row: &models::ModelRow,
) -> Result<(), String> {
    versions::start(bundles, deployments, row)
        .await
        .map_err(|e| format!("cannot start {} again: {e}", row.name))
}
