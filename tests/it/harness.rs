//! The test harness: a real `cortex server` on an ephemeral loopback port with a temp data
//! directory, the real `cortex` binary with a temp config directory, and polling helpers with
//! deadlines. Everything started here is stopped on drop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// The default deadline for anything the tests wait for.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Kills a child process when the test ends, whatever happened (a failed assertion included).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temp dir for a test's projects and what its replicas write: when the tests run as root,
/// replicas run as an unprivileged user, who must be able to pass through it (0711) and
/// write what the test makes in it (the test process's umask is 0, as a user who shares
/// a results directory with their predictors would set it).
pub fn shared_tempdir() -> TempDir {
    static UMASK: std::sync::Once = std::sync::Once::new();
    // SAFETY: umask(2) only sets the process's file mode mask.
    UMASK.call_once(|| unsafe {
        libc::umask(0);
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

/// An HTTP client for the tests' loopback servers: never through a proxy from the
/// environment, and no overall timeout (a test's own deadline decides).
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(None)
        .build()
        .unwrap()
}

pub fn cortex_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cortex"))
}

/// Polls `f` until it returns `Some`, panicking with `what` after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    let mut delay = Duration::from_millis(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

/// Copies a directory tree (for turning an example into a scratch project).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// The `cortex server` flags of the engine the tests run on (none: the local engine).
pub fn engine_args() -> Vec<String> {
    match std::env::var("CORTEX_TEST_ENGINE").as_deref() {
        Ok("ray") => {
            let var = |name: &str| {
                std::env::var(name).unwrap_or_else(|_| {
                    panic!(
                        "CORTEX_TEST_ENGINE=ray needs {name}: run the tests through .ci/ray/run.sh"
                    )
                })
            };
            vec![
                "--engine".into(),
                "ray".into(),
                "--ray-address".into(),
                var("CORTEX_TEST_RAY_ADDRESS"),
                "--ray-token-file".into(),
                var("CORTEX_TEST_RAY_TOKEN_FILE"),
            ]
        }
        Ok("local") | Ok("") | Err(_) => Vec::new(),
        Ok(other) => panic!("CORTEX_TEST_ENGINE={other}: give local or ray"),
    }
}

/// A running server plus a scratch directory for projects and CLI config.
pub struct Server {
    pub dir: TempDir,
    listen: String,
    server_env: Vec<(String, String)>,
    server_args: Vec<String>,
    child: Option<Child>,
    pub url: String,
    pub token: String,
}

impl Server {
    pub fn start() -> Server {
        Server::start_on("127.0.0.1:0")
    }

    /// A server listening on `listen` (tests connect to it through loopback all the same).
    pub fn start_on(listen: &str) -> Server {
        Server::start_with(listen, &[])
    }

    /// A server with extra environment variables (tuning knobs such as
    /// `CORTEX_READY_WARN_SECS`).
    pub fn start_with(listen: &str, env: &[(&str, &str)]) -> Server {
        Server::start_with_args(listen, env, &[])
    }

    /// A server with extra environment variables and extra `cortex server` flags. With
    /// `CORTEX_TEST_ENGINE=ray` (set by `.ci/ray/engine-tests.sh` inside `.ci/ray/run.sh`), its
    /// engine is the Ray cluster of `CORTEX_TEST_RAY_ADDRESS`: the same tests run on both
    /// engines.
    pub fn start_with_args(listen: &str, env: &[(&str, &str)], args: &[&str]) -> Server {
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.extend(engine_args());
        let dir = shared_tempdir();
        // The data dir lies under a directory no other user may enter, as under root's home.
        let private = dir.path().join("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut s = Server {
            dir,
            server_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            server_args: args,
            listen: listen.to_string(),
            child: None,
            url: String::new(),
            token: String::new(),
        };
        s.boot();
        s
    }

    /// The server's own output (appended across restarts); printed when a test fails.
    fn server_log(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("private").join("server")
    }

    /// `GET /healthz`'s answer.
    pub fn health(&self) -> Value {
        http()
            .get(format!("{}/healthz", self.url))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// The server's process id, as its `server.json` says.
    pub fn pid(&self) -> u32 {
        let bytes = std::fs::read(self.data_dir().join("server.json")).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["pid"].as_u64().unwrap() as u32
    }

    /// Where the server keeps replicas' files (`projects/`, `venvs/`, `scratch/`): its data
    /// dir, or, when replicas run as a user who cannot reach it, its tree in the temp dir.
    pub fn replica_tree(&self) -> PathBuf {
        use sha2::Digest;
        let data = self
            .data_dir()
            .canonicalize()
            .unwrap_or_else(|_| self.data_dir());
        if data.join("projects").is_dir() {
            return data;
        }
        let hash = hex::encode(sha2::Sha256::digest(data.as_os_str().as_encoded_bytes()));
        std::env::temp_dir()
            .join("cortex-replicas")
            .join(&hash[..16])
    }

    pub fn cli_dir(&self) -> PathBuf {
        self.dir.path().join("cli")
    }

    /// A fresh project directory inside the scratch dir.
    pub fn project(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join("projects").join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// A copy of an example project.
    /// A project with one python API: `predictor.py` holds `predictor`, and `cortex.yaml`
    /// declares `name` of `kind` with `extra_yaml` (indented as the API's keys) after it.
    pub fn python_project(
        &self,
        name: &str,
        kind: &str,
        predictor: &str,
        extra_yaml: &str,
    ) -> PathBuf {
        let p = self.project(name);
        write(&p, "predictor.py", predictor);
        write(
            &p,
            "cortex.yaml",
            &format!(
                "- name: {name}\n  kind: {kind}\n  predictor:\n    type: python\n    path: predictor.py\n{extra_yaml}"
            ),
        );
        p
    }

    pub fn example_project(&self, example_name: &str) -> PathBuf {
        let p = self.project(example_name);
        copy_dir(&example(example_name), &p);
        p
    }

    fn boot(&mut self) {
        let data = self.data_dir();
        let child = Command::new(cortex_bin())
            .args(["server", "--listen", &self.listen, "--data-dir"])
            .arg(&data)
            .args(&self.server_args)
            .env("CORTEX_CLI_CONFIG_DIR", self.cli_dir())
            .env("CORTEX_LOG", "warn")
            // Tests stop servers with requests in flight: a short grace keeps them quick.
            .env("CORTEX_SHUTDOWN_GRACE_SECS", "1")
            .envs(self.server_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(self.server_log()))
            .stderr(Stdio::from(self.server_log()))
            .spawn()
            .unwrap();
        let pid = child.id();
        self.child = Some(child);
        let url = wait_for("the server's runtime file", DEADLINE, || {
            let bytes = std::fs::read(data.join("server.json")).ok()?;
            let v: Value = serde_json::from_slice(&bytes).ok()?;
            (v["pid"].as_u64()? == pid as u64).then(|| v["url"].as_str().unwrap().to_string())
        });
        wait_for("/healthz", DEADLINE, || {
            http()
                .get(format!("{url}/healthz"))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
        });
        self.token = std::fs::read_to_string(data.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        self.url = url;
    }

    /// Stops the server with SIGTERM and waits for it to exit; true when it exited cleanly
    /// (status 0) before the deadline, false when it had to be killed or failed.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the server (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` to the server process (SIGSTOP, SIGCONT, ...).
    pub fn signal(&self, signal: i32) {
        let child = self.child.as_ref().expect("the server is running");
        // SAFETY: kill(2) only sends a signal, to the child this harness started.
        let sent = unsafe { libc::kill(child.id() as i32, signal) };
        assert_eq!(sent, 0, "cannot send signal {signal} to the server");
    }

    /// Sets an environment variable of the server for its next start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.server_env.retain(|(k, _)| k != key);
        self.server_env.push((key.to_string(), value.to_string()));
    }

    /// Starts the server again after [`Server::kill`] (same data directory, a new port).
    pub fn restart_after_kill(&mut self) {
        assert!(self.child.is_none(), "kill the server first");
        self.boot();
    }

    /// Starts the server again on the same data directory (a new port).
    pub fn restart(&mut self) {
        assert!(self.stop(), "the server did not stop cleanly");
        self.boot();
    }

    /// `cortex` configured for this server through `CORTEX_ENDPOINT`/`CORTEX_TOKEN`.
    pub fn cortex(&self) -> Command {
        let mut c = Command::new(cortex_bin());
        c.env("CORTEX_CLI_CONFIG_DIR", self.cli_dir())
            .env("CORTEX_ENDPOINT", &self.url)
            .env("CORTEX_TOKEN", &self.token)
            .env_remove("CORTEX_ENV")
            .stdin(Stdio::null());
        c
    }

    /// Runs `cortex args...` in `cwd` and returns its output.
    pub fn run(&self, cwd: &Path, args: &[&str]) -> Output {
        self.cortex().current_dir(cwd).args(args).output().unwrap()
    }

    /// Runs `cortex args...`, asserting success; returns stdout.
    pub fn ok(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.run(cwd, args);
        assert!(
            out.status.success(),
            "cortex {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `cortex logs args...` once it holds `needle` (an engine may forward output a moment
    /// after the fact: the Ray engine's drivers send it every half second).
    pub fn logs_with(&self, cwd: &Path, args: &[&str], needle: &str) -> String {
        let mut all = vec!["logs"];
        all.extend_from_slice(args);
        wait_for(
            &format!("{needle:?} in `cortex {}`", all.join(" ")),
            DEADLINE,
            || {
                let logs = self.ok(cwd, &all);
                logs.contains(needle).then_some(logs)
            },
        )
    }

    /// `cortex get <api> -o json`.
    pub fn api_json(&self, api: &str) -> Option<Value> {
        let out = self.run(self.dir.path(), &["get", api, "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    /// Waits until `cortex get <api>` reports `status`.
    pub fn wait_status(&self, api: &str, status: &str) -> Value {
        wait_for(&format!("{api} to be {status}"), DEADLINE, || {
            self.api_json(api).filter(|v| v["status"] == status)
        })
    }

    /// POSTs JSON to an API through the gateway.
    pub fn predict(&self, api: &str, body: &str) -> reqwest::blocking::Response {
        http()
            .post(format!("{}/{api}", self.url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop();
        // A tree of the server's own in the temp dir outlives the test's temp dir otherwise.
        let tree = self.replica_tree();
        if !tree.starts_with(self.dir.path()) {
            let _ = std::fs::remove_dir_all(tree);
        }
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            eprintln!("---- server output ----\n{log}-----------------------");
        }
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts that a command was refused (exit status 1) with `needle` in its error output.
#[track_caller]
pub fn assert_refused(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "{needle:?} not in: {err}");
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes `text` to `dir/name`, creating directories.
pub fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Reads lines from a child's pipe on a thread, so tests can wait on them with a deadline.
pub fn line_channel(
    pipe: impl std::io::Read + Send + 'static,
) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; returns every line read up to it.
pub fn wait_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    wait_for(&format!("a line with {needle:?}"), DEADLINE, || {
        while let Ok(line) = rx.try_recv() {
            let hit = line.contains(needle);
            seen.push(line);
            if hit {
                return Some(());
            }
        }
        None
    });
    seen
}

/// The cells of a table row as `cortex get` draws it (columns are 3 spaces apart; a cell may
/// hold single spaces, as `error (out of memory)` does).
pub fn cells(line: &str) -> Vec<&str> {
    line.split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// Whether the last 256 KiB of the file at `path` hold `needle`.
pub fn tail_contains(path: &Path, needle: &str) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(256 << 10)));
    let mut tail = Vec::new();
    let _ = f.read_to_end(&mut tail);
    String::from_utf8_lossy(&tail).contains(needle)
}
