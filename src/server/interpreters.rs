//! Which python runs an API: the server's own, or the `python=3.X` its `conda-packages.txt`
//! names, found on the server's `PATH` (`python3.X`), in pyenv's versions (`$PYENV_ROOT` or
//! `~/.pyenv`) or in `/usr/local/bin` and `/usr/bin`, and runnable by the replicas' user.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::engine::local::sandbox::{can_reach, Need, ReplicaUser};

/// The interpreters found, by version.
pub struct Interpreters {
    user: Option<ReplicaUser>,
    /// What the server runs replicas with unless a project asks otherwise.
    pub default: String,
    /// The installer of other `conda-packages.txt` packages (see `conda_tool`), if any.
    pub conda: Option<String>,
    found: Mutex<HashMap<String, Option<String>>>,
}

impl Interpreters {
    pub fn new(default: String, user: Option<ReplicaUser>, conda: Option<String>) -> Interpreters {
        Interpreters {
            user,
            default,
            conda,
            found: Mutex::default(),
        }
    }

    /// The real path of a python `version` (`3.8`) the replicas can run, or why there is none.
    /// Blocking (it asks each candidate its version); answers are remembered.
    pub fn find(&self, version: &str) -> Result<String, String> {
        if let Some(known) = self.lookup(version) {
            return known.ok_or_else(|| self.missing(version));
        }
        let found = candidates(version)
            .into_iter()
            .filter(|p| p.is_file())
            .find_map(|p| self.usable(&p, version));
        self.found
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(version.to_string(), found.clone());
        found.ok_or_else(|| self.missing(version))
    }

    fn lookup(&self, version: &str) -> Option<Option<String>> {
        let found = self.found.lock().unwrap_or_else(|p| p.into_inner());
        found.get(version).cloned()
    }

    /// `program`'s real path when it is python `version` and the replicas can run it.
    fn usable(&self, program: &Path, version: &str) -> Option<String> {
        let out = std::process::Command::new(program)
            .args([
                "-c",
                "import sys; print(sys.executable); print('%d.%d' % sys.version_info[:2])",
            ])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        let mut lines = text.lines();
        let (real, actual) = (lines.next()?.trim(), lines.next()?.trim());
        let runnable = self
            .user
            .as_ref()
            .is_none_or(|u| can_reach(Path::new(real), u, Need::Execute));
        (out.status.success() && actual == version && real.starts_with('/') && runnable)
            .then(|| real.to_string())
    }

    fn missing(&self, version: &str) -> String {
        let who = match &self.user {
            Some(u) => format!(" that the replicas' user {} can run", u.name),
            None => String::new(),
        };
        format!(
            "conda-packages.txt asks for python={version}, but this server has no python{version}{who} (looked on PATH, in pyenv's versions, /usr/local/bin and /usr/bin); install it where every user can run it (e.g. `pyenv install {version}` outside a private home) or remove the line to run on the server's python ({})",
            self.default
        )
    }
}

/// Where a `python{version}` may be, in order.
fn candidates(version: &str) -> Vec<PathBuf> {
    let program = format!("python{version}");
    let mut out: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(&program))
                .collect()
        })
        .unwrap_or_default();
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".pyenv")));
    if let Some(root) = pyenv {
        let mut versions: Vec<PathBuf> = std::fs::read_dir(root.join("versions"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        versions.retain(|v| {
            v.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == version || n.starts_with(&format!("{version}.")))
        });
        versions.sort();
        out.extend(versions.iter().rev().map(|v| v.join("bin").join(&program)));
    }
    out.extend(["/usr/local/bin", "/usr/bin"].map(|d| Path::new(d).join(&program)));
    out
}

#[cfg(test)]
mod tests {
    use super::Interpreters;

    #[test]
    fn a_version_that_is_not_there_says_where_it_was_looked_for() {
        let i = Interpreters::new("/usr/bin/python3".into(), None, None);
        let why = i.find("2.1").unwrap_err();
        assert!(why.contains("python=2.1"), "{why}");
        assert!(why.contains("pyenv install 2.1"), "{why}");
        // Remembered: asked again, the same answer without looking.
        assert_eq!(i.find("2.1").unwrap_err(), why);
    }
}
