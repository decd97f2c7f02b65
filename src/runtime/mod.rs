//! The worker side: what replicas run. The python predictor shim ships inside the binary and is
//! written to the server's data directory at start-up.

pub mod conda;
pub mod dotenv;
pub mod plan;

use std::path::{Path, PathBuf};

/// The file replicas run (`python3 -u <runtime dir>/cortex_shim.py`): it runs the
/// `cortex_runtime` package beside it, which predictor code imports too.
pub const PYTHON_SHIM_ENTRY: &str = "cortex_shim.py";

/// The package the shim is (its directory in the runtime directory).
pub const PYTHON_SHIM_PACKAGE: &str = "cortex_runtime";

/// `(path in the runtime directory, content)` of one module of the package.
macro_rules! module {
    ($file:literal) => {
        (
            concat!("cortex_runtime/", $file),
            include_str!(concat!("python/cortex_runtime/", $file)),
        )
    };
}

/// The cortex 0.2x python predictor shim (Python stdlib only): every file, by its path in the
/// runtime directory. The entry file comes last, so that it is written after the modules it runs.
pub const PYTHON_SHIM_FILES: &[(&str, &str)] = &[
    module!("__init__.py"),
    module!("__main__.py"),
    module!("batch.py"),
    module!("conda_env.py"),
    module!("connection.py"),
    module!("http_wire.py"),
    module!("lifecycle.py"),
    module!("log.py"),
    module!("main.py"),
    module!("model_sources.py"),
    module!("model_store.py"),
    module!("models.py"),
    module!("onnx_client.py"),
    module!("payload.py"),
    module!("predictor.py"),
    module!("python_client.py"),
    module!("reporting.py"),
    module!("responses.py"),
    module!("server.py"),
    module!("settings.py"),
    module!("spare.py"),
    module!("supervisor.py"),
    module!("tracebacks.py"),
    module!("venv.py"),
    (PYTHON_SHIM_ENTRY, include_str!("python/cortex_shim.py")),
];

/// The shim as installed in a runtime directory.
#[derive(Debug, Clone)]
pub struct InstalledShim {
    /// The file replicas run.
    pub entry: PathBuf,
    /// Every file and directory of the shim, the entry included: what replicas must be able to
    /// read.
    pub paths: Vec<PathBuf>,
}

/// Writes the shim under `dir`: each file whose content changed (atomically, one by one), then
/// removes the package's python files that are not the binary's (a previous layout's).
pub fn install_python_shim(dir: &Path) -> std::io::Result<InstalledShim> {
    let package = dir.join(PYTHON_SHIM_PACKAGE);
    std::fs::create_dir_all(&package)?;
    let mut paths = vec![package.clone()];
    for (relative, content) in PYTHON_SHIM_FILES {
        let path = dir.join(relative);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(*content) {
            crate::atomic_file::write(&path, content.as_bytes())?;
        }
        paths.push(path);
    }
    for entry in std::fs::read_dir(&package)?.flatten() {
        let path = entry.path();
        let stale = path.extension().is_some_and(|e| e == "py")
            && entry.file_type().is_ok_and(|t| t.is_file())
            && !paths.contains(&path);
        if stale {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(InstalledShim {
        entry: dir.join(PYTHON_SHIM_ENTRY),
        paths,
    })
}

/// Compiles the runtime in `dir` with `python` into `seed`, in `PYTHONPYCACHEPREFIX`'s layout,
/// and with it every standard module the runtime imports: what replicas' bytecode caches start
/// from. Each run's cache is new and a cache prefix hides the interpreter's own `__pycache__`,
/// so without this every replica start compiles asyncio, http, email, json... again (about a
/// quarter of a second here). Made beside `seed` and renamed into place whole, so it can run
/// while replicas start (those that start before it is there compile for themselves). Best
/// effort: on failure the replicas compile it themselves. Blocking (about half a second).
pub fn compile_runtime(python: &str, dir: &Path, seed: &Path) {
    let made = seed.with_extension("new");
    let _ = std::fs::remove_dir_all(&made);
    let compiled = std::process::Command::new(python)
        .args(["-c", COMPILE_RUNTIME])
        .arg(dir)
        .env("PYTHONPYCACHEPREFIX", &made)
        .env_remove("PYTHONDONTWRITEBYTECODE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    // Written under the server's umask: every replica's user must be able to read them.
    let ready = compiled.is_ok_and(|s| s.success()) && readable_by_all(&made).is_ok() && {
        let _ = std::fs::remove_dir_all(seed);
        std::fs::rename(&made, seed).is_ok()
    };
    if !ready {
        tracing::warn!(
            "cannot compile the python runtime with {python}: replicas compile it on every start"
        );
        let _ = std::fs::remove_dir_all(&made);
    }
}

/// Opens `dir`'s tree to every user for reading (directories 0755, files 0644).
fn readable_by_all(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let kind = entry.file_type()?;
        if kind.is_dir() {
            readable_by_all(&entry.path())?;
        } else if kind.is_file() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}

/// Compiles the package, then imports each of its modules (never `__main__`, which runs the
/// shim), so that the standard modules they import are compiled into the cache too.
const COMPILE_RUNTIME: &str = "\
import compileall, importlib, pkgutil, sys
if not compileall.compile_dir(sys.argv[1], quiet=1):
    sys.exit(1)
sys.path.insert(0, sys.argv[1])
import cortex_runtime
for m in pkgutil.iter_modules(cortex_runtime.__path__):
    if m.name != '__main__':
        importlib.import_module('cortex_runtime.' + m.name)
";

/// What every replica of one server runs with.
#[derive(Debug, Clone)]
pub struct ReplicaRuntime {
    /// The entry file of the python shim the server installed ([`InstalledShim::entry`]).
    pub shim_path: PathBuf,
    /// Where each model's virtualenvs go (`<venvs_dir>/<model id>`).
    pub venvs_dir: PathBuf,
    /// The interpreter that runs the shim.
    pub python: String,
    /// The installer of `conda-packages.txt` packages (`micromamba`, `conda`), if the machine
    /// has one.
    pub conda: Option<String>,
}

/// The python interpreter replicas run: `$CORTEX_PYTHON`, else `python3`.
pub fn python_interpreter() -> String {
    std::env::var("CORTEX_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_of_the_package_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/runtime/python");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir.join(PYTHON_SHIM_PACKAGE))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".py"))
            .map(|n| format!("{PYTHON_SHIM_PACKAGE}/{n}"))
            .collect();
        on_disk.push(PYTHON_SHIM_ENTRY.to_string());
        on_disk.sort();
        let mut embedded: Vec<String> = PYTHON_SHIM_FILES
            .iter()
            .map(|(p, _)| p.to_string())
            .collect();
        embedded.sort();
        assert_eq!(
            embedded, on_disk,
            "PYTHON_SHIM_FILES must list every module"
        );
    }

    #[test]
    fn installing_writes_what_changed_and_removes_stale_modules() {
        let dir = tempfile::tempdir().unwrap();
        let package = dir.path().join(PYTHON_SHIM_PACKAGE);
        std::fs::create_dir_all(package.join("__pycache__")).unwrap();
        std::fs::write(package.join("old_layout.py"), "x = 1\n").unwrap();
        std::fs::write(package.join("notes.txt"), "kept\n").unwrap();
        std::fs::write(dir.path().join(PYTHON_SHIM_ENTRY), "stale entry\n").unwrap();
        let shim = install_python_shim(dir.path()).unwrap();
        assert_eq!(shim.entry, dir.path().join(PYTHON_SHIM_ENTRY));
        assert_eq!(shim.paths.len(), PYTHON_SHIM_FILES.len() + 1);
        assert!(shim.paths.contains(&package));
        for (relative, content) in PYTHON_SHIM_FILES {
            let path = dir.path().join(relative);
            assert_eq!(std::fs::read_to_string(&path).unwrap(), *content);
            assert!(shim.paths.contains(&path));
        }
        assert!(!package.join("old_layout.py").exists());
        assert!(package.join("notes.txt").exists());
        assert!(package.join("__pycache__").is_dir());
        // A second install rewrites nothing: the files keep their identity.
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        let before: Vec<u64> = shim.paths.iter().map(|p| inode(p)).collect();
        install_python_shim(dir.path()).unwrap();
        let after: Vec<u64> = shim.paths.iter().map(|p| inode(p)).collect();
        assert_eq!(before, after);
    }
}
