//! The conda-style installer that `conda-packages.txt` packages (other than `python=3.X`) are
//! installed with: `$CORTEX_CONDA`, else the first of `micromamba`, `mamba` and `conda` on the
//! server's `PATH` that the replicas' user can run. None: such projects are refused at deploy.

use std::path::{Path, PathBuf};

use crate::engine::local::sandbox::{can_reach, Need, ReplicaUser};

/// The installer's path, found once at server start.
pub fn find(user: Option<&ReplicaUser>) -> Option<String> {
    let runnable = |p: &Path| p.is_file() && user.is_none_or(|u| can_reach(p, u, Need::Execute));
    if let Some(given) = std::env::var_os("CORTEX_CONDA").filter(|v| !v.is_empty()) {
        let given = PathBuf::from(given);
        return runnable(&given).then(|| given.display().to_string());
    }
    let path = std::env::var_os("PATH")?;
    ["micromamba", "mamba", "conda"].iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| runnable(p))
            .map(|p| p.display().to_string())
    })
}
