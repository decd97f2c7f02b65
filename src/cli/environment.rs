//! Which server a command talks to: flags, `CORTEX_*` variables and `cli.yaml` resolved into a
//! client.

use anyhow::Context;

use super::config::{config_dir, CliConfig, LOCAL};
use super::failure::Refusal;
use super::local_server;
use crate::client::Client;

/// A resolved environment.
pub struct Target {
    pub name: String,
    pub client: Client,
    /// True when the user named an environment other than the default (hints then add `-e`).
    pub explicit: bool,
}

impl Target {
    /// ` --env NAME` when the environment is not the default one, for hint lines.
    pub fn env_suffix(&self) -> String {
        if self.explicit {
            format!(" --env {}", self.name)
        } else {
            String::new()
        }
    }
}

/// The environment's name: `-e`, else `$CORTEX_ENV`, else the configured default.
pub fn env_name(flag: Option<&str>, config: &CliConfig) -> String {
    flag.map(str::to_string)
        .or_else(|| std::env::var("CORTEX_ENV").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| config.default_env().to_string())
}

/// Connects to the environment, starting the local server when it is `local` and not running.
pub async fn connect(flag: Option<&str>) -> anyhow::Result<Target> {
    resolve(flag, true).await
}

/// Like [`connect`], but never starts the local server: `None` when it is not running.
pub async fn connect_if_running(flag: Option<&str>) -> anyhow::Result<Option<Target>> {
    match resolve(flag, false).await {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.downcast_ref::<local_server::NotRunning>().is_some() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `cortex get` with no API should list every configured environment, as cortex
/// does: no `-e`, no `CORTEX_ENV`/`CORTEX_ENDPOINT`/`CORTEX_TOKEN`, and at least one remote
/// environment.
pub fn list_all_environments(flag: Option<&str>) -> anyhow::Result<Option<Vec<String>>> {
    // CORTEX_TOKEN too: a CI token must not be sent to every configured server.
    let overridden = ["CORTEX_ENV", "CORTEX_ENDPOINT", "CORTEX_TOKEN"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()));
    if flag.is_some() || overridden {
        return Ok(None);
    }
    let config = CliConfig::load(&config_dir()?)?;
    if config.environments.is_empty() {
        return Ok(None);
    }
    let mut names = vec![LOCAL.to_string()];
    names.extend(config.environments.iter().map(|e| e.name.clone()));
    Ok(Some(names))
}

async fn resolve(flag: Option<&str>, start: bool) -> anyhow::Result<Target> {
    // A timeout the user set but mistyped is refused rather than silently replaced.
    crate::client::timeout_from_env().map_err(Refusal::InvalidRequest)?;
    let dir = config_dir()?;
    let config = CliConfig::load(&dir)?;
    let name = env_name(flag, &config);
    let explicit = name != config.default_env();
    let env_token = std::env::var("CORTEX_TOKEN").ok().filter(|s| !s.is_empty());
    if let Some(endpoint) = std::env::var("CORTEX_ENDPOINT")
        .ok()
        .filter(|s| !s.is_empty())
    {
        return Ok(Target {
            name,
            client: Client::new(&endpoint, env_token),
            explicit,
        });
    }
    if let Some(env) = config.find(&name) {
        let token = env_token.unwrap_or_else(|| env.token.clone());
        return Ok(Target {
            name,
            client: Client::new(&env.endpoint, Some(token)),
            explicit,
        });
    }
    if name != LOCAL {
        return Err(Refusal::InvalidRequest(format!(
            "the {name} environment is not configured; add it with `cortex env configure {name} --endpoint <url> --token <token>`, or see `cortex env list`"
        ))
        .into());
    }
    let local = local_server::LocalServer::new(&dir);
    let url = if start {
        local.ensure_running().await?
    } else {
        local.running_url().await.ok_or(local_server::NotRunning)?
    };
    let token = match env_token {
        Some(t) => t,
        None => local
            .admin_token()
            .context("cannot read the local server's admin token")?,
    };
    Ok(Target {
        name,
        client: Client::new(&url, Some(token)),
        explicit,
    })
}
