//! Removes the virtualenvs nothing uses: every one of a model that no longer exists, and a
//! live model's that no replica has started from for [`UNUSED_FOR`] (a version replaced by
//! one with other requirements). Without this the `venvs/` directory grew by a virtualenv per
//! deleted API and per changed `requirements.txt`.
//!
//! A replica marks the virtualenv it runs in (`cortex_runtime/venv.py`, `_hold`): a shared
//! `flock` on `<venv>.lock` for as long as it runs, and the time of `<venv>/.cortex-ready` at
//! each start. A virtualenv is removed only while the sweep holds that lock exclusively, so
//! never under a running replica, and a preparation waiting for the lock finds it gone and
//! makes it again. Blocking.

use std::collections::HashSet;
use std::fs::File;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// How long a live model's virtualenv may go without a replica starting from it.
pub const UNUSED_FOR: Duration = Duration::from_secs(3600);

/// What one sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// Directories of models that no longer exist.
    pub models: usize,
    /// Virtualenvs of live models, unused for [`UNUSED_FOR`].
    pub venvs: usize,
}

/// Sweeps `venvs` (`<venvs>/<model dir>/<virtualenv>`); `live` are the directory names of the
/// models that exist ([`crate::runtime::plan::model_venvs`]).
pub fn sweep(venvs: &Path, live: &HashSet<String>, unused_for: Duration) -> Removed {
    let mut removed = Removed::default();
    for path in sorted_entries(venvs) {
        if !path.is_dir() || path.is_symlink() {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !live.contains(&name) {
            // Its replicas are stopped; one still holding a virtualenv keeps the whole.
            if let Some(_held) = lock_all(&path) {
                if std::fs::remove_dir_all(&path).is_ok() {
                    removed.models += 1;
                }
            }
            continue;
        }
        removed.venvs += sweep_model(&path, unused_for);
    }
    removed
}

/// A live model's virtualenvs unused for `unused_for`, each removed under its lock (the lock
/// file stays: a preparation may be waiting on it).
fn sweep_model(dir: &Path, unused_for: Duration) -> usize {
    let mut n = 0;
    for venv in sorted_entries(dir) {
        let ready = venv.join(".cortex-ready");
        let idle = std::fs::metadata(&ready)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age >= unused_for);
        if !idle {
            continue; // not a virtualenv, being made, or used lately
        }
        let Some(_held) = lock(&lock_path(&venv)) else {
            continue;
        };
        // Ready first: a replica that takes the lock next sees the virtualenv gone.
        if std::fs::remove_file(&ready).is_ok() && std::fs::remove_dir_all(&venv).is_ok() {
            n += 1;
        }
    }
    n
}

/// The paths in `dir`, by name: a sweep goes through them in an order one can tell.
fn sorted_entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.sort();
    paths
}

fn lock_path(venv: &Path) -> std::path::PathBuf {
    let mut name = venv.as_os_str().to_owned();
    name.push(".lock");
    name.into()
}

/// An exclusive lock on `path` if no one holds one (None when someone does, or it is absent).
fn lock(path: &Path) -> Option<File> {
    let file = File::open(path).ok()?;
    file.try_lock().ok()?;
    Some(file)
}

/// Exclusive locks on every `*.lock` in `dir`, or None when any is held.
fn lock_all(dir: &Path) -> Option<Vec<File>> {
    let mut held = Vec::new();
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "lock") {
            held.push(lock(&path)?);
        }
    }
    Some(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A virtualenv as the shim leaves it: `<dir>/<name>/.cortex-ready` and `<name>.lock`.
    fn venv(dir: &Path, name: &str) -> std::path::PathBuf {
        let v = dir.join(name);
        std::fs::create_dir_all(v.join("bin")).unwrap();
        std::fs::write(v.join(".cortex-ready"), "").unwrap();
        std::fs::write(dir.join(format!("{name}.lock")), "").unwrap();
        v
    }

    #[test]
    fn a_deleted_models_directory_goes_unless_a_replica_still_holds_a_virtualenv() {
        let root = tempfile::tempdir().unwrap();
        let (gone, held, live) = (
            root.path().join("gone"),
            root.path().join("held"),
            root.path().join("live"),
        );
        venv(&gone, "a");
        std::fs::create_dir_all(gone.join("models")).unwrap();
        venv(&held, "b");
        venv(&live, "c");
        std::fs::create_dir_all(root.path().join("empty")).unwrap();
        let holder = File::open(held.join("b.lock")).unwrap();
        holder.lock_shared().unwrap();
        let live_names: HashSet<String> = ["live".to_string()].into();
        let removed = sweep(root.path(), &live_names, UNUSED_FOR);
        assert_eq!(
            removed,
            Removed {
                models: 2,
                venvs: 0
            }
        );
        assert!(!gone.exists() && !root.path().join("empty").exists());
        assert!(
            held.join("b").exists(),
            "a running replica's virtualenv stays"
        );
        assert!(
            live.join("c").exists(),
            "a live model's recent virtualenv stays"
        );
    }

    #[test]
    fn a_live_models_virtualenv_goes_once_unused_for_long_and_not_held() {
        let root = tempfile::tempdir().unwrap();
        let model = root.path().join("m");
        let (old, held) = (venv(&model, "old"), venv(&model, "held"));
        let holder = File::open(model.join("held.lock")).unwrap();
        holder.lock_shared().unwrap();
        let live: HashSet<String> = ["m".to_string()].into();
        let removed = sweep(root.path(), &live, Duration::ZERO);
        assert_eq!(
            removed,
            Removed {
                models: 0,
                venvs: 1
            }
        );
        assert!(!old.exists());
        assert!(model.join("old.lock").exists(), "the lock file stays");
        assert!(held.join(".cortex-ready").exists());
    }
}
