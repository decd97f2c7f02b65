//! How the server holds its tenants' replicas: it decides who they run as, where their files
//! are ([`ReplicaTree`]), which Landlock sandbox confines them, and reports it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::bail;

use super::replica_tree::{self, ReplicaTree};
use crate::engine::local::sandbox::{
    Grant, ReplicaUser, Sandbox, SandboxConfig, SandboxMode, SharedDirs,
};

/// What the operator asked for (`cortex server --sandbox ... --replica-user ...`).
#[derive(Debug, Clone, Default)]
pub struct IsolationConfig {
    pub sandbox: SandboxMode,
    /// Directories every replica may reach in strict mode (`--replica-path DIR[:rw]`).
    pub replica_paths: Vec<Grant>,
    /// Who replicas run as when the server is root (default `nobody`).
    pub replica_user: Option<String>,
    /// Start even when replicas cannot be sandboxed on a server reachable beyond loopback.
    pub allow_unsandboxed: bool,
    /// Processes and threads each run of a replica, batch worker or preparation may have
    /// (`None`: no limit), where the server can make pids cgroups.
    pub max_replica_pids: Option<u64>,
}

/// The isolation in force.
pub struct Isolation {
    pub sandbox: Arc<Sandbox>,
    pub tree: ReplicaTree,
    pub user: Option<ReplicaUser>,
    /// The interpreter replicas run the shim with.
    pub python: String,
    pub report: crate::api::Isolation,
}

/// Sets up the isolation `config` asks for a server with `data_dir` listening on `listen`.
/// Refuses to start a server reachable beyond loopback whose replicas cannot be sandboxed,
/// unless the operator allowed it. Blocking.
pub fn set_up(
    config: &IsolationConfig,
    data_dir: &Path,
    listen: SocketAddr,
) -> anyhow::Result<Isolation> {
    let user = replica_user(config.replica_user.as_deref())?;
    let tree = ReplicaTree::prepare(data_dir, user.as_ref())?;
    replica_tree::close_data_dir(data_dir, &tree, user.as_ref());
    let python = replica_tree::python_for(user.as_ref())?;
    let mut grants = config.replica_paths.clone();
    if config.sandbox == SandboxMode::Strict {
        // The interpreter's installation (`<prefix>/bin/python3` → `<prefix>`).
        let prefix = std::fs::canonicalize(&python)
            .ok()
            .and_then(|p| p.parent()?.parent().map(Path::to_path_buf));
        grants.extend(prefix.map(|path| Grant { path, write: false }));
    }
    // The data directory and, when replicas' files are elsewhere, every server's replica
    // trees there (other servers' tenants are strangers too).
    let mut hidden = vec![data_dir.canonicalize()?];
    if tree.root != hidden[0] {
        hidden.extend(tree.root.parent().map(Path::to_path_buf));
    }
    // What a private /tmp (or another of the machine's shared directories) must not hide.
    let needed: Vec<PathBuf> = hidden
        .iter()
        .cloned()
        .chain(grants.iter().map(|g| g.path.clone()))
        .chain([
            tree.root.clone(),
            tree.scratch.clone(),
            PathBuf::from(&python),
        ])
        .collect();
    let shared_dirs = user.as_ref().and_then(|_| SharedDirs::detect(&needed));
    let sandbox = Sandbox::new(SandboxConfig {
        mode: config.sandbox,
        hidden,
        grants,
        user: user.clone(),
        scratch_root: tree.scratch.clone(),
        pycache_seed: Some(tree.pycache_seed()),
        shared_dirs,
    });
    let report = report(&sandbox);
    match sandbox.landlock_abi() {
        Some(_) => tracing::info!("replicas: {}", report.summary),
        None => {
            eprintln!("warning: {}", report.summary);
            if !listen.ip().is_loopback() && !config.allow_unsandboxed {
                bail!(
                    "refusing to listen on {listen}: replicas would run without a sandbox ({}); listen on loopback, or accept the risk with --allow-unsandboxed-replicas",
                    why_unsandboxed(config.sandbox)
                );
            }
        }
    }
    Ok(Isolation {
        sandbox: Arc::new(sandbox),
        tree,
        user,
        python,
        report,
    })
}

fn replica_user(asked: Option<&str>) -> anyhow::Result<Option<ReplicaUser>> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    match (root, asked) {
        (true, asked) => Ok(Some(
            ReplicaUser::lookup(asked.unwrap_or("nobody")).map_err(anyhow::Error::msg)?,
        )),
        (false, None) => Ok(None),
        (false, Some(name)) => {
            let me = ReplicaUser::lookup(name).ok();
            // SAFETY: as above.
            if me.is_some_and(|u| u.uid == unsafe { libc::geteuid() }) {
                Ok(None)
            } else {
                bail!("--replica-user {name}: only a server running as root can run replicas as another user")
            }
        }
    }
}

fn why_unsandboxed(mode: SandboxMode) -> &'static str {
    match mode {
        SandboxMode::Off => "--sandbox off",
        _ => "this kernel has no Landlock",
    }
}

/// What `/healthz` and the server's start-up say of `sandbox`.
fn report(sandbox: &Sandbox) -> crate::api::Isolation {
    let user = sandbox.user_name();
    let summary = match sandbox.landlock_abi() {
        Some(abi) => format!(
            "sandboxed ({} landlock, abi {abi}) as user {user}: a replica reaches its own project, virtualenv and scratch directory, never the server's data, other apis' files or the server's environment{}",
            sandbox.mode().as_str(),
            if sandbox.mode() == SandboxMode::Strict {
                "; outside them only system paths and --replica-path directories"
            } else {
                "; outside the server's directories, what the OS lets its user reach"
            }
        ),
        None => format!(
            "not sandboxed ({}): replicas run as user {user} and can read whatever that user can, the server's data directory included when it is the server's own user",
            why_unsandboxed(sandbox.mode())
        ),
    };
    let summary = match sandbox.shared_dirs() {
        Some(dirs) => format!(
            "{summary}; each run has its own empty {} and System V IPC",
            dirs.describe()
        ),
        None => summary,
    };
    crate::api::Isolation {
        sandbox: sandbox.mode().as_str().to_string(),
        landlock_abi: sandbox.landlock_abi(),
        replica_user: user,
        summary,
    }
}
