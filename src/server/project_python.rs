//! The python a project's replicas run: the server's, or the `python=3.X` of its
//! `conda-packages.txt` (how cortex 0.2x users chose theirs). With other conda packages the
//! machine's conda installer makes an environment (the replica's preparation does, with that
//! python); without an installer they are refused with the way forward.

use std::path::Path;
use std::sync::Arc;

use super::interpreters::Interpreters;
use crate::runtime::conda;

/// The interpreter `project_dir` asks for (`None`: the server's), or why it cannot run here.
pub async fn resolve(
    project_dir: &Path,
    interpreters: &Arc<Interpreters>,
) -> Result<Option<String>, String> {
    let path = project_dir.join("conda-packages.txt");
    let interpreters = interpreters.clone();
    tokio::task::spawn_blocking(move || {
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        let wanted = conda::parse(&text);
        if !wanted.others.is_empty() {
            if interpreters.conda.is_some() {
                // The installer makes an environment with them and the python asked for.
                return Ok(None);
            }
            return Err(format!(
                "conda-packages.txt lists {}, but this server's machine has no conda installer; install micromamba (or conda) on the server's PATH, or set CORTEX_CONDA for `cortex server`, or move them to requirements.txt (a pip package's name may differ from conda's) and keep only a python=3.X line in conda-packages.txt",
                wanted.others.join(", ")
            ));
        }
        match wanted.python {
            Some(version) => interpreters.find(&version).map(Some),
            None => Ok(None),
        }
    })
    .await
    .unwrap_or_else(|e| Err(format!("cannot read conda-packages.txt: {e}")))
}
