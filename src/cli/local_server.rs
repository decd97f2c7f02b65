//! The embedded local server: started by the CLI on first use as a background daemon bound to
//! loopback, with its state under `<config dir>/local/`.
//!
//! A lock file makes sure two CLI calls at once start one server.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::api::RuntimeFile;
use crate::client::Client;

/// How long a new local server gets to answer `/healthz`.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// The local server is not running (and the caller asked not to start it).
#[derive(Debug, thiserror::Error)]
#[error("the local cortex server is not running")]
pub struct NotRunning;

pub struct LocalServer {
    data_dir: PathBuf,
}

impl LocalServer {
    pub fn new(config_dir: &Path) -> LocalServer {
        LocalServer {
            data_dir: config_dir.join("local"),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("server.log")
    }

    /// The runtime file, if the server wrote one (it may be stale).
    pub fn runtime_file(&self) -> Option<RuntimeFile> {
        let bytes = std::fs::read(self.data_dir.join(RuntimeFile::NAME)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn admin_token(&self) -> anyhow::Result<String> {
        let path = self.data_dir.join(RuntimeFile::ADMIN_TOKEN);
        let token = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(token.trim().to_string())
    }

    /// Whether a server holds the data directory's lock: it runs (maybe still starting, or
    /// too busy to answer). This, not a pid, is the truth: pids get reused.
    pub fn lock_held(&self) -> bool {
        let Ok(file) = std::fs::OpenOptions::new()
            .write(true)
            .open(self.data_dir.join("server.lock"))
        else {
            return false;
        };
        matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
    }

    /// The URL of the running server, when a server holds the lock and answers `/healthz`
    /// as the process its runtime file names.
    pub async fn running_url(&self) -> Option<String> {
        if !self.lock_held() {
            return None;
        }
        let rt = self.runtime_file()?;
        let health = Client::new(&rt.url, None).health().await.ok()?;
        if health.pid != rt.pid {
            return None;
        }
        if health.version != crate::VERSION {
            eprintln!(
                "warning: the local cortex server runs version {}, but this cli is {}; restart it with `cortex server stop` (it starts again on the next command)",
                super::style::printable(&health.version),
                crate::VERSION
            );
        }
        Some(rt.url)
    }

    /// Returns the running server's URL, starting the server first if needed.
    pub async fn ensure_running(&self) -> anyhow::Result<String> {
        if let Some(url) = self.running_url().await {
            return Ok(url);
        }
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("cannot create {}", self.data_dir.display()))?;
        let lock_path = self.data_dir.join("start.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await?
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
        // Someone else may have started it while we waited for the lock.
        if let Some(url) = self.running_url().await {
            drop(lock);
            return Ok(url);
        }
        let result = if self.lock_held() {
            // A server owns the data directory but does not answer yet: wait for it rather
            // than start a second one.
            self.wait_for_running().await
        } else {
            self.start().await
        };
        drop(lock);
        result
    }

    async fn wait_for_running(&self) -> anyhow::Result<String> {
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            if let Some(url) = self.running_url().await {
                return Ok(url);
            }
            if !self.lock_held() {
                return self.start().await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let who = self
            .runtime_file()
            .map(|rt| format!(" (pid {}, {})", rt.pid, rt.url))
            .unwrap_or_default();
        bail!(
            "the local cortex server{who} runs but does not answer; see its log {} or stop it with `cortex server stop`",
            self.log_path().display()
        )
    }

    async fn start(&self) -> anyhow::Result<String> {
        let exe = std::env::current_exe().context("cannot find the cortex executable")?;
        let log_path = self.log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let asked = std::env::var("CORTEX_LOCAL_PORT").unwrap_or_else(|_| "8888".to_string());
        // The port it had last time, while it is free: saved endpoints keep working.
        let port = last_port(&self.data_dir, &asked)
            .filter(|p| port_is_free(*p))
            .map_or_else(|| asked.clone(), |p| p.to_string());
        let _ = std::fs::remove_file(self.data_dir.join(RuntimeFile::NAME));
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("server")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--port-fallback")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(log.try_clone()?))
            .stderr(std::process::Stdio::from(log));
        // SAFETY: setsid(2) is async-signal-safe; the daemon leaves our session so closing the
        // terminal does not stop it.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .context("cannot start the local cortex server")?;
        let pid = child.id();

        let spinner = std::io::stderr().is_terminal().then(|| {
            let s = indicatif::ProgressBar::new_spinner();
            s.set_message("starting the local cortex server");
            s.tick(); // draw at once: a quick start should still say what is happening
            s.enable_steady_tick(Duration::from_millis(100));
            s
        });
        let deadline = Instant::now() + START_DEADLINE;
        let outcome = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break Err(status.to_string());
            }
            if let Some(rt) = self.runtime_file().filter(|rt| rt.pid == pid) {
                if Client::new(&rt.url, None).health().await.is_ok() {
                    break Ok(rt.url);
                }
            }
            if Instant::now() > deadline {
                break Err(format!(
                    "it did not answer within {}s",
                    START_DEADLINE.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        match outcome {
            Ok(url) => {
                tell_if_port_moved(&asked, &port, &url, &self.data_dir.join(PORT_FILE));
                remember_port(&self.data_dir, &asked, &url);
                Ok(url)
            }
            Err(why) => {
                let tail = crate::tail::tail_lines(&log_path, 10).join("\n");
                bail!(
                    "the local cortex server did not start ({why}); its log {} ends with:\n{tail}",
                    log_path.display()
                )
            }
        }
    }
}

/// Where the local server remembers the port it was asked for and the one it took.
const PORT_FILE: &str = "port";

/// The port the local server took when it was last started with `asked`.
fn last_port(data_dir: &std::path::Path, asked: &str) -> Option<u16> {
    let text = std::fs::read_to_string(data_dir.join(PORT_FILE)).ok()?;
    let (was_asked, took) = text.trim().split_once(' ')?;
    (was_asked == asked).then(|| took.parse().ok()).flatten()
}

/// Remembers the port the server at `url` took when asked for `asked`.
fn remember_port(data_dir: &std::path::Path, asked: &str, url: &str) {
    if let Some(took) = url.rsplit(':').next().filter(|p| p.parse::<u16>().is_ok()) {
        let _ = crate::atomic_file::write(
            &data_dir.join(PORT_FILE),
            format!("{asked} {took}\n").as_bytes(),
        );
    }
}

/// Whether nothing listens on `port` of loopback now.
fn port_is_free(port: u16) -> bool {
    port != 0 && std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// When the server is not on the port asked for, says so (on stderr), since URLs with the usual
/// port would reach whatever holds it instead: `tried` was taken (the server took another), or
/// the server kept the port it had before, when `asked` was taken.
fn tell_if_port_moved(asked: &str, tried: &str, url: &str, port_file: &std::path::Path) {
    let took = url.rsplit(':').next().unwrap_or_default();
    if asked == "0" || took == asked {
        return;
    }
    if took != tried {
        eprintln!(
            "note: port {tried} is in use by another program, so the local cortex server listens on port {took}; send predictions to {url}/<api> (`cortex get <api>` prints the endpoint), or free port {tried} and run `cortex server stop`"
        );
    } else {
        eprintln!(
            "note: the local cortex server keeps port {took}, the one it had before (port {asked} was in use then), so saved endpoints still work; to move it to {asked}, delete {} and run `cortex server stop`",
            port_file.display()
        );
    }
}

/// Whether a process with this pid exists.
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks for existence.
    let exists = unsafe { libc::kill(pid, 0) == 0 };
    // One that exited and waits for its parent to reap it (a zombie) runs no more.
    exists && !is_zombie(pid)
}

/// Whether `pid` has exited and waits to be reaped (state `Z` in `/proc/<pid>/stat`).
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}
