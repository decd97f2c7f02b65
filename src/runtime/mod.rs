//! The worker side: what replicas run. The python predictor shim ships inside the binary and is
//! written to the server's data directory at start-up.

pub mod conda;
pub mod dotenv;
pub mod plan;

use std::path::{Path, PathBuf};

/// The cortex 0.2x python predictor shim (Python stdlib only).
pub const PYTHON_SHIM: &str = include_str!("python/cortex_shim.py");

/// Writes the shim under `dir` (if its content changed) and returns its path.
pub fn install_python_shim(dir: &Path) -> std::io::Result<PathBuf> {
    let path = dir.join("cortex_shim.py");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(PYTHON_SHIM) {
        crate::atomic_file::write(&path, PYTHON_SHIM.as_bytes())?;
    }
    Ok(path)
}

/// What every replica of one server runs with.
#[derive(Debug, Clone)]
pub struct ReplicaRuntime {
    /// The python shim the server installed.
    pub shim_path: PathBuf,
    /// Where each model's virtualenvs go (`<venvs_dir>/<model id>`).
    pub venvs_dir: PathBuf,
    /// The interpreter that runs the shim.
    pub python: String,
}

/// The python interpreter replicas run: `$CORTEX_PYTHON`, else `python3`.
pub fn python_interpreter() -> String {
    std::env::var("CORTEX_PYTHON").unwrap_or_else(|_| "python3".to_string())
}
