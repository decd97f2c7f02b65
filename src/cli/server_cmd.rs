//! `cortex server` (foreground), `cortex server status`, `cortex server stop`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::config::config_dir;
use super::local_server::{process_alive, LocalServer};
use super::{ExitStatus, ServerArgs, ServerCommand};
use crate::server::{self, ServerConfig};

pub async fn run(args: ServerArgs) -> anyhow::Result<ExitStatus> {
    match args.command {
        None => {
            init_tracing();
            let data_dir = match args.data_dir {
                Some(d) => d,
                // The same directory the local environment uses: a foreground `cortex server`
                // is the local server, and the CLI finds it there.
                None => config_dir()?.join("local"),
            };
            let engine = engine_choice(&args.engine, args.listen)?;
            server::run(ServerConfig {
                engine,
                listen: args.listen,
                data_dir,
                port_fallback: args.port_fallback,
                require_tokens: args.require_tokens,
                min_free_disk_mb: args.min_free_disk_mb,
                log_tail_lines: args.log_tail_lines,
                data_root: args.data_root,
                isolation: server::isolation::IsolationConfig {
                    sandbox: args.isolation.sandbox,
                    replica_paths: args.isolation.replica_paths,
                    replica_user: args.isolation.replica_user,
                    allow_unsandboxed: args.isolation.allow_unsandboxed_replicas,
                    max_replica_pids: Some(args.isolation.max_replica_pids).filter(|&n| n > 0),
                },
                allow_fetch: args.allow_fetch,
                max_connections: args.max_connections.map(|n| n.max(1)),
                header_read_timeout: Duration::from_secs(args.header_read_timeout.max(1)),
                idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
                replica_idle_timeout: Duration::from_secs(args.replica_idle_timeout.max(1)),
                max_buffered_bodies: args.max_buffered_bodies_mb.saturating_mul(1 << 20),
                log_max_bytes: args.log_max_mb.saturating_mul(1 << 20),
                unpack_limits: crate::store::unpack_limits::UnpackLimits {
                    max_bytes: args.max_unpacked_mb.saturating_mul(1 << 20),
                    max_files: args.max_bundle_files,
                },
                max_batch_workers: args.max_batch_workers as usize,
                spare_interpreters: args.spare_interpreters as usize,
            })
            .await?;
            Ok(ExitStatus::Success)
        }
        Some(ServerCommand::Status) => status().await,
        Some(ServerCommand::Stop) => stop().await,
    }
}

/// The engine `--engine` and the `--ray-*` flags describe.
fn engine_choice(
    args: &super::EngineArgs,
    listen: std::net::SocketAddr,
) -> anyhow::Result<server::EngineChoice> {
    if args.engine == super::EngineKind::Local {
        return Ok(server::EngineChoice::Local);
    }
    let Some(address) = args.ray_address.clone() else {
        bail!(
            "--engine ray needs --ray-address, the Ray cluster's dashboard (e.g. http://HEAD:8265)"
        );
    };
    if !(address.starts_with("http://") || address.starts_with("https://")) {
        bail!("--ray-address {address} is not an http(s) URL; give the Ray dashboard's, e.g. http://HEAD:8265");
    }
    let Some(token_file) = &args.ray_token_file else {
        bail!("--engine ray needs --ray-token-file: a Ray cluster without token auth runs code for anyone who reaches it; start its nodes with RAY_AUTH_MODE=token and give the token's file");
    };
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("cannot read --ray-token-file {}", token_file.display()))?
        .trim()
        .to_string();
    if token.is_empty() {
        bail!(
            "--ray-token-file {} is empty; put the cluster's token in it",
            token_file.display()
        );
    }
    Ok(server::EngineChoice::Ray(crate::engine::ray::RayConfig {
        address,
        token,
        listen: args
            .ray_listen
            .unwrap_or_else(|| std::net::SocketAddr::new(listen.ip(), 0)),
        python: args.ray_python.clone(),
    }))
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CORTEX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(super::style::colors())
        .with_writer(std::io::stderr)
        .try_init();
}

async fn status() -> anyhow::Result<ExitStatus> {
    let local = LocalServer::new(&config_dir()?);
    match (local.running_url().await, local.runtime_file()) {
        (Some(url), Some(rt)) => {
            println!("the local cortex server is running");
            println!("url:      {url}");
            println!("pid:      {}", rt.pid);
            println!("version:  {}", rt.version);
            println!("data dir: {}", local.data_dir().display());
            println!("log:      {}", local.log_path().display());
            let health = crate::client::Client::new(&url, None).health().await;
            if let Ok(health) = health {
                if let Some(iso) = health.isolation {
                    println!("replicas: {}", iso.summary);
                }
                if let Some(engine) = health.engine {
                    println!("engine:   {}", engine.summary());
                }
            }
            Ok(ExitStatus::Success)
        }
        _ => {
            println!("the local cortex server is not running (it starts on the first command that needs it)");
            Ok(ExitStatus::Failure)
        }
    }
}

async fn stop() -> anyhow::Result<ExitStatus> {
    let local = LocalServer::new(&config_dir()?);
    if !local.lock_held() {
        println!("the local cortex server is not running");
        return Ok(ExitStatus::Success);
    }
    // The lock holder writes the runtime file once it listens; its pid is the one to signal.
    let rt = match local.runtime_file() {
        Some(rt) if process_alive(rt.pid) => rt,
        _ => bail!(
            "the local cortex server is starting (no runtime file in {} yet); try again in a moment",
            local.data_dir().display()
        ),
    };
    let pid = i32::try_from(rt.pid).context("the runtime file holds an invalid pid")?;
    // SAFETY: kill(2) sends a signal; it touches no memory.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        bail!(
            "cannot stop the local cortex server (pid {pid}): {}",
            std::io::Error::last_os_error()
        );
    }
    // Stopped means exited: the lock goes a little before the process does, and a backup of
    // the data directory must not start before the process has written its last.
    let deadline = Instant::now() + Duration::from_secs(30);
    let running = || local.lock_held() || process_alive(rt.pid);
    while running() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if running() {
        bail!("the local cortex server (pid {pid}) did not stop within 30s; stop it with `kill -9 {pid}`");
    }
    println!("stopped the local cortex server (pid {pid})");
    Ok(ExitStatus::Success)
}
