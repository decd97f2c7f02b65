//! The files replicas run from, laid out so that each replica reaches only its own.
//!
//! The tree holds `projects/` (unpacked bundles), `venvs/` (one directory per model),
//! `runtime/` (the shim) and `scratch/` (one directory per replica run). It is the data
//! directory itself, unless the server runs as root and the replica user cannot pass through
//! the data directory's parents (root's home, a 0700 temp dir): then it is
//! `<temp dir>/cortex-replicas-<hash of the data dir>`, owned by root, 0711. As root, the
//! tree's directories belong to group `<replica user's group>` (0750), so the replica user
//! can enter them and nobody else can; a replica's own venv and scratch directories are its
//! user's (0700). Landlock, not the OS user, keeps replicas of different APIs apart.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use crate::engine::local::sandbox::{can_reach, Need, ReplicaUser};

/// Where replicas' files are.
#[derive(Debug, Clone)]
pub struct ReplicaTree {
    pub root: PathBuf,
    pub projects: PathBuf,
    pub venvs: PathBuf,
    pub runtime: PathBuf,
    pub scratch: PathBuf,
    /// A shared lock on `root`, which keeps temp cleaners out (`temp_cleaners.rs`).
    _kept: Option<std::sync::Arc<std::fs::File>>,
}

impl ReplicaTree {
    /// The runtime's bytecode, compiled by the server for each run's cache to start from.
    pub fn pycache_seed(&self) -> PathBuf {
        self.root.join("pycache-seed")
    }

    /// Chooses and prepares the tree of the server whose data directory is `data_dir`, for
    /// replicas running as `user` (`None`: the server's own user). Removes scratch
    /// directories a previous server left. Blocking.
    pub fn prepare(data_dir: &Path, user: Option<&ReplicaUser>) -> anyhow::Result<ReplicaTree> {
        let data_dir = data_dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", data_dir.display()))?;
        let root = match user {
            Some(u) if !can_reach(&data_dir, u, Need::Search) => external_root(&data_dir, u)?,
            _ => data_dir.clone(),
        };
        let tree = ReplicaTree {
            projects: root.join("projects"),
            venvs: root.join("venvs"),
            runtime: root.join("runtime"),
            scratch: root.join("scratch"),
            _kept: super::temp_cleaners::hold(&root).map(std::sync::Arc::new),
            root,
        };
        for dir in [&tree.projects, &tree.venvs, &tree.runtime, &tree.scratch] {
            shared_dir(dir, user)?;
        }
        if let Ok(stale) = std::fs::read_dir(&tree.scratch) {
            for entry in stale.flatten() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        if let Some(u) = user {
            if !can_reach(&tree.projects, u, Need::Search) {
                bail!(
                    "replicas run as user {} (--replica-user), who cannot reach {}: start the server with TMPDIR set to a directory every user may pass through",
                    u.name,
                    tree.root.display()
                );
            }
        }
        Ok(tree)
    }

    /// Makes a file or directory the server wrote into the tree (the shim's) readable by
    /// replicas: the replica user's group, 0640 (a directory 0750).
    pub fn share(&self, path: &Path, user: Option<&ReplicaUser>) -> std::io::Result<()> {
        if let Some(u) = user {
            let mode = if std::fs::symlink_metadata(path)?.is_dir() {
                0o750
            } else {
                0o640
            };
            std::os::unix::fs::chown(path, None, Some(u.gid))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    }
}

/// The directory every root server's external replica tree is in.
pub fn external_parent() -> PathBuf {
    std::env::temp_dir().join("cortex-replicas")
}

/// `<temp dir>/cortex-replicas/<hash of data_dir>`, made (or checked: directories of root's,
/// not links) 0711 so the replica user can pass through it.
fn external_root(data_dir: &Path, user: &ReplicaUser) -> anyhow::Result<PathBuf> {
    let hash = hex::encode(Sha256::digest(data_dir.as_os_str().as_encoded_bytes()));
    let parent = external_parent();
    let root = parent.join(&hash[..16]);
    for dir in [&parent, &root] {
        match std::fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
        let meta = std::fs::symlink_metadata(dir)?;
        if !meta.is_dir() || meta.uid() != 0 {
            bail!(
                "{} is not a directory of root's (someone else made it); remove it, then start the server again",
                dir.display()
            );
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
    }
    tracing::info!(
        "replicas run as {}, who cannot reach the data directory: their files are under {}",
        user.name,
        root.display()
    );
    // Hidden from replicas by its real path (the temp dir may be reached through a link).
    Ok(root.canonicalize()?)
}

/// A directory of the tree: 0700 for the server's own user, or root's with the replica
/// user's group, 0750.
fn shared_dir(dir: &Path, user: Option<&ReplicaUser>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mode = match user {
        Some(u) => {
            std::os::unix::fs::chown(dir, Some(0), Some(u.gid))
                .with_context(|| format!("cannot give {} to group {}", dir.display(), u.gid))?;
            0o750
        }
        None => 0o700,
    };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Closes the data directory to other OS users: the directory 0700 (0711 when the replica
/// tree is inside it and replicas run as another user) and every entry in it that is not part
/// of the tree 0600 (files) or 0700 (directories). Blocking.
pub fn close_data_dir(data_dir: &Path, tree: &ReplicaTree, user: Option<&ReplicaUser>) {
    let set = |p: &Path, mode: u32| {
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
    };
    let Ok(data_dir) = data_dir.canonicalize() else {
        return;
    };
    let passable = user.is_some() && tree.root == data_dir;
    set(&data_dir, if passable { 0o711 } else { 0o700 });
    let Ok(entries) = std::fs::read_dir(&data_dir) else {
        return;
    };
    let tree_dirs = [&tree.projects, &tree.venvs, &tree.runtime, &tree.scratch];
    for entry in entries.flatten() {
        let path = entry.path();
        if tree_dirs.contains(&&path) {
            continue;
        }
        match entry.file_type() {
            Ok(t) if t.is_dir() => set(&path, 0o700),
            Ok(t) if t.is_file() => set(&path, 0o600),
            _ => {}
        }
    }
}

/// The interpreter replicas run the shim with: `CORTEX_PYTHON` or `python3`, resolved to the
/// real program (not a version manager's wrapper) by asking it once. When replicas run as
/// another user who cannot run it, the first `python3` on `PATH` that user can run.
pub fn python_for(user: Option<&ReplicaUser>) -> anyhow::Result<String> {
    let wanted = crate::runtime::python_interpreter();
    let real = real_interpreter(&wanted).unwrap_or_else(|| wanted.clone());
    let Some(u) = user else {
        return Ok(real);
    };
    if can_reach(Path::new(&real), u, Need::Execute) {
        return Ok(real);
    }
    let on_path = std::env::var_os("PATH").unwrap_or_default();
    let usable = std::env::split_paths(&on_path)
        .map(|dir| dir.join("python3"))
        .chain([PathBuf::from("/usr/bin/python3")])
        .find(|p| can_reach(p, u, Need::Execute))
        .and_then(|p| real_interpreter(&p.display().to_string()));
    match usable {
        Some(p) => {
            tracing::info!(
                "replicas run as {} and cannot run {real}: they run {p} instead (set CORTEX_PYTHON to choose)",
                u.name
            );
            Ok(p)
        }
        None => bail!(
            "replicas run as user {}, who cannot run {real} and finds no python3 on PATH it can run; install python3 where every user can run it or set CORTEX_PYTHON",
            u.name
        ),
    }
}

/// `sys.executable` of `program` (a pyenv shim resolves to the interpreter it starts).
fn real_interpreter(program: &str) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(["-c", "import sys; print(sys.executable)"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && path.starts_with('/')).then_some(path)
}
