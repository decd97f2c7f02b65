//! `cortex env configure|list|default|delete|token`.

use std::path::Path;

use anyhow::{bail, Context};
use serde::Serialize;

use super::config::{config_dir, CliConfig, Environment, LOCAL};
use super::environment;
use super::local_server::LocalServer;
use super::output::print_structured;
use super::output::OutputFormat;
use super::{EnvCommand, EnvConfigureArgs, ExitStatus};

pub async fn run(cmd: EnvCommand) -> anyhow::Result<ExitStatus> {
    let dir = config_dir()?;
    let mut config = CliConfig::load(&dir)?;
    match cmd {
        EnvCommand::Configure(args) => configure(&dir, &mut config, args)?,
        EnvCommand::List { output } => list(&config, output)?,
        EnvCommand::Default { name: None } => {
            println!("current default environment: {}", config.default_env())
        }
        EnvCommand::Default { name: Some(name) } => set_default(&dir, &mut config, name)?,
        EnvCommand::Delete { name } => delete(&dir, &mut config, &name)?,
        EnvCommand::Token { name } => {
            let name = environment::env_name(name.as_deref(), &config);
            let token = match config.find(&name) {
                Some(env) => env.token.clone(),
                None if name == LOCAL => {
                    let local = LocalServer::new(&dir);
                    local.ensure_running().await?;
                    local.admin_token()?
                }
                None => bail!("the {name} environment is not configured; `cortex env list` shows the configured ones"),
            };
            println!("{token}");
        }
    }
    Ok(ExitStatus::Success)
}

/// `cortex env configure`: adds an environment, or replaces the one of that name.
fn configure(dir: &Path, config: &mut CliConfig, args: EnvConfigureArgs) -> anyhow::Result<()> {
    if args.name == LOCAL {
        bail!("the local environment always talks to the embedded local server and cannot be configured; choose another name");
    }
    check_name(&args.name)?;
    let endpoint = args.endpoint.context(
        "--endpoint is required: the server's base url, e.g. --endpoint https://cortex.example.com",
    )?;
    let endpoint = endpoint.trim_end_matches('/').to_string();
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        bail!("--endpoint must start with http:// or https:// (got {endpoint:?})");
    }
    let token = args
        .token
        .context("--token is required: the token the server's admin gave you (`cortex env token` on the server's machine prints it)")?;
    let env = Environment {
        name: args.name.clone(),
        endpoint,
        token,
    };
    match config.environments.iter_mut().find(|e| e.name == args.name) {
        Some(existing) => *existing = env,
        None => config.environments.push(env),
    }
    config.save(dir)?;
    println!("configured {} environment", args.name);
    Ok(())
}

/// `cortex env list`: the local environment, then the configured ones.
fn list(config: &CliConfig, output: OutputFormat) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct Listed {
        name: String,
        default: bool,
        endpoint: String,
    }
    let default = config.default_env().to_string();
    let mut listed = vec![Listed {
        name: LOCAL.to_string(),
        default: default == LOCAL,
        endpoint: "embedded local server".to_string(),
    }];
    listed.extend(config.environments.iter().map(|e| Listed {
        name: e.name.clone(),
        default: default == e.name,
        endpoint: e.endpoint.clone(),
    }));
    if !print_structured(output, &listed)? {
        let blocks: Vec<String> = listed
            .iter()
            .map(|e| {
                let name = if e.default {
                    format!("{} (default)", e.name)
                } else {
                    e.name.clone()
                };
                format!("name:     {name}\nendpoint: {}", e.endpoint)
            })
            .collect();
        println!("{}", blocks.join("\n\n"));
    }
    Ok(())
}

/// `cortex env default NAME`.
fn set_default(dir: &Path, config: &mut CliConfig, name: String) -> anyhow::Result<()> {
    if name != LOCAL && config.find(&name).is_none() {
        bail!("the {name} environment is not configured; add it with `cortex env configure {name} --endpoint <url> --token <token>`");
    }
    if config.default_env() == name {
        println!("{name} is already the default environment");
    } else {
        config.default_environment = (name != LOCAL).then(|| name.clone());
        config.save(dir)?;
        println!("set {name} as the default environment");
    }
    Ok(())
}

/// `cortex env delete NAME`: the default falls back to the local environment.
fn delete(dir: &Path, config: &mut CliConfig, name: &str) -> anyhow::Result<()> {
    if name == LOCAL {
        println!("the local environment always exists; nothing to delete");
        return Ok(());
    }
    let before = config.environments.len();
    config.environments.retain(|e| e.name != name);
    if config.environments.len() == before {
        bail!(
            "the {name} environment is not configured; `cortex env list` shows the configured ones"
        );
    }
    let was_default = config.default_env() == name;
    if was_default {
        config.default_environment = None;
    }
    config.save(dir)?;
    println!("deleted the {name} environment configuration");
    if was_default {
        println!("set the default environment to {LOCAL}");
    }
    Ok(())
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        bail!("environment names use letters, digits, '-' and '_' (at most 63 characters); {name:?} does not");
    }
    Ok(())
}
