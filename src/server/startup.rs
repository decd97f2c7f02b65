//! What a server does before it serves: takes its data directory, prepares what replicas run
//! (isolation, the python shim and its bytecode), listens, starts its engine, and starts the
//! APIs that were deployed when it last stopped; and the signals that end it, caught from the
//! start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use super::deployments::{Deployment, Deployments};
use super::{data_check, isolation, versions, EngineChoice, ServerConfig};
use crate::api::RuntimeFile;
use crate::engine::{Engine, LocalEngine};
use crate::runtime::InstalledShim;
use crate::store::{models, BundleStore, Store};

/// How long in-flight requests may run on after SIGTERM before the server stops anyway
/// (`CORTEX_SHUTDOWN_GRACE_SECS` changes it).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

pub(super) fn shutdown_grace() -> std::time::Duration {
    std::env::var("CORTEX_SHUTDOWN_GRACE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(SHUTDOWN_GRACE, std::time::Duration::from_secs)
}

/// The server's data directory, held for the life of the server.
pub(super) struct DataDir {
    pub(super) store: Store,
    /// Where the server says its pid, port and URL (`RuntimeFile`) once it listens.
    pub(super) runtime_file: PathBuf,
    _lock: std::fs::File,
    /// A shared lock on the directory, which keeps temp cleaners out (`temp_cleaners.rs`).
    _kept: Option<std::fs::File>,
}

/// Takes `config.data_dir` (made if missing, readable by no other OS user, locked against
/// a second server) and opens its database.
pub(super) async fn open_data_dir(config: &ServerConfig) -> anyhow::Result<DataDir> {
    let data_dir = &config.data_dir;
    // What the server makes is its own: other OS users read nothing of the data directory.
    // SAFETY: umask(2) only sets the process's file mode mask.
    unsafe {
        libc::umask(0o077);
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    // One server per data directory: a second one would run every replica twice.
    let lock = lock_data_dir(&data_dir.join("server.lock")).await?;
    // Whatever runtime file is here belongs to a server that is gone; a server that stops
    // cleanly removes its own, so one left means it did not.
    let runtime_file = data_dir.join(RuntimeFile::NAME);
    if std::fs::remove_file(&runtime_file).is_ok() {
        eprintln!(
            "the previous server on {} did not stop cleanly (killed, or its machine stopped): its apis start again and its jobs resume",
            data_dir.display()
        );
    }
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
    Ok(DataDir {
        store,
        runtime_file,
        _lock: lock,
        _kept: super::temp_cleaners::hold(data_dir),
    })
}

/// What replicas run: their isolation, the python shim (readable by the replica user), and
/// the compiling of its bytecode, which goes on while the server starts.
pub(super) async fn replica_runtime(
    config: &ServerConfig,
) -> anyhow::Result<(
    isolation::Isolation,
    InstalledShim,
    tokio::task::JoinHandle<()>,
)> {
    let isolated = {
        let (wanted, dir, listen) = (
            config.isolation.clone(),
            config.data_dir.clone(),
            config.listen,
        );
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
    Ok((isolated, shim, seeded))
}

/// Listens on `config.listen` (or, with `port_fallback`, on any free port of its address when
/// that port is taken); returns the listener, its address and the URL to reach it by.
pub(super) async fn listen(
    config: &ServerConfig,
) -> anyhow::Result<(TcpListener, SocketAddr, String)> {
    let listener = match TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) if config.port_fallback && e.kind() == std::io::ErrorKind::AddrInUse => {
            TcpListener::bind(SocketAddr::new(config.listen.ip(), 0)).await?
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
    Ok((listener, addr, format!("http://{connectable}")))
}

/// The engine `config` chose, started: local child processes (after stopping what a previous
/// server left running; spare interpreters once `seeded` has compiled the runtime), or a Ray
/// cluster.
pub(super) async fn start_engine(
    config: &ServerConfig,
    isolated: &isolation::Isolation,
    shim_entry: &Path,
    seeded: tokio::task::JoinHandle<()>,
) -> anyhow::Result<Arc<dyn Engine>> {
    let data_dir = &config.data_dir;
    match &config.engine {
        EngineChoice::Local => {
            let owner = data_dir.canonicalize().unwrap_or_else(|_| data_dir.clone());
            let local = LocalEngine::new(
                &owner.display().to_string(),
                data_dir.join("logs"),
                isolated.sandbox.clone(),
                config.isolation.max_replica_pids,
            );
            let reaper = local.clone();
            let reaped = tokio::task::spawn_blocking(move || reaper.reap_orphans()).await?;
            if reaped > 0 {
                eprintln!("stopped {reaped} process(es) a previous server left running");
            }
            // After the reaping (spares carry the same owner mark), and started once the
            // runtime is compiled: they read its bytecode.
            Ok(Arc::new(local.with_spares(
                (&isolated.python, shim_entry),
                config.spare_interpreters,
                seeded,
            )))
        }
        EngineChoice::Ray(ray) => {
            let runtime_dir = shim_entry
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
            Ok(Arc::new(ray))
        }
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
pub(super) struct ShutdownSignals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    pub(super) fn catch() -> ShutdownSignals {
        use tokio::signal::unix::{signal, SignalKind};
        ShutdownSignals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }

    pub(super) async fn received(mut self) {
        async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        let which = tokio::select! {
            _ = recv(&mut self.term) => "SIGTERM",
            _ = recv(&mut self.int) => "SIGINT",
        };
        eprintln!("cortex server stopping ({which}): requests in flight finish, replicas stop");
    }
}

/// Starts the replicas of every API that was deployed when the server last stopped.
pub(super) async fn restore(store: &Store, bundles: &BundleStore, deployments: &Deployments) {
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
            crate::store::DeployStatus::Stopped | crate::store::DeployStatus::NotStarted
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
                current_served: true,
                ..row.clone()
            };
            // A database from before the serving deployment was kept: the one before the
            // current one is the best guess.
            let older = Deployment::Resumed(serving.deployment.unwrap_or(row.deployment - 1));
            if let Err(e) = start_again(bundles, deployments, &served, older).await {
                tracing::warn!("the generation of {} that served: {e}", row.name);
            }
        }
        let current = Deployment::Resumed(row.deployment);
        if let Err(msg) = start_again(bundles, deployments, &row, current).await {
            eprintln!("{msg}");
            deployments.restore_failed(&row.name, msg);
        }
    }
}

/// Starts `row`'s version again, as `deployment`; the error says why it could not.
async fn start_again(
    bundles: &BundleStore,
    deployments: &Deployments,
    row: &models::ModelRow,
    deployment: Deployment,
) -> Result<(), String> {
    versions::start(bundles, deployments, row, deployment)
        .await
        .map_err(|e| format!("cannot start {} again: {e}", row.name))
}
