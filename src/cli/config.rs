//! `cli.yaml` in the config directory: the environments the CLI knows and the default one.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The name of the environment that always exists and talks to the embedded local server.
pub const LOCAL: &str = "local";

/// The CLI's config directory: `$CORTEX_CLI_CONFIG_DIR`, else `~/.cortex`.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CORTEX_CLI_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = dirs::home_dir()
        .context("cannot find your home directory; set CORTEX_CLI_CONFIG_DIR to a directory for cortex's configuration")?;
    Ok(home.join(".cortex"))
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_environment: Option<String>,
    #[serde(default)]
    pub environments: Vec<Environment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub name: String,
    pub endpoint: String,
    pub token: String,
}

impl CliConfig {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("cli.yaml")
    }

    pub fn load(dir: &Path) -> anyhow::Result<CliConfig> {
        let path = CliConfig::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CliConfig::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if text.trim().is_empty() {
            return Ok(CliConfig::default());
        }
        serde_yaml::from_str(&text).with_context(|| {
            format!(
                "{} is not valid; fix it or delete it to start over",
                path.display()
            )
        })
    }

    /// Writes the file with mode 0600 (it holds tokens).
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = CliConfig::path(dir);
        let tmp = dir.join(".cli.yaml.tmp");
        let text = serde_yaml::to_string(self)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
    }

    /// The default environment's name (`local` unless changed).
    pub fn default_env(&self) -> &str {
        self.default_environment.as_deref().unwrap_or(LOCAL)
    }

    pub fn find(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }
}
