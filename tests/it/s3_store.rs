//! A local S3-compatible store for tests: moto in server mode on a free loopback port, with
//! buckets and objects made over plain HTTP (path-style; moto takes unsigned writes). The
//! server under test reaches it through the `AWS_*` variables of [`MotoServer::env`].
//!
//! ```ignore
//! let s3 = MotoServer::start();
//! s3.create_bucket("models");
//! s3.put("models", "iris/model.onnx", bytes);
//! let env = s3.env();
//! let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
//! let server = Server::start_with("127.0.0.1:0", &env);
//! ```

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::{http, KillOnDrop};

/// How long moto may take to answer its first request (it imports a lot).
const START_DEADLINE: Duration = Duration::from_secs(60);

/// moto's S3 on loopback, killed when dropped.
pub struct MotoServer {
    child: KillOnDrop,
    port: u16,
    /// moto's own output, shown when it does not start.
    log: TempDir,
}

impl MotoServer {
    /// Starts `python3 -m moto.server` on a free loopback port and waits until it answers.
    pub fn start() -> MotoServer {
        let mut log = tempfile::tempdir().unwrap();
        // A port taken between finding it and moto binding it: try another.
        for _ in 0..3 {
            let port = free_port();
            let out = std::fs::File::create(log.path().join("moto.log")).unwrap();
            let child = Command::new("python3")
                .args([
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("python3 runs moto's server (pip install 'moto[server]')");
            let mut moto = MotoServer {
                child: KillOnDrop(child),
                port,
                log,
            };
            if moto.wait_ready() {
                return moto;
            }
            log = moto.log_dir();
        }
        panic!(
            "moto did not start: {}",
            std::fs::read_to_string(log.path().join("moto.log")).unwrap_or_default()
        );
    }

    /// The store's URL, e.g. `http://127.0.0.1:41234` (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server-side variables that point at this store, with moto's test credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "test".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
        ]
    }

    /// Creates `bucket`.
    pub fn create_bucket(&self, bucket: &str) {
        let resp = http()
            .put(format!("{}/{bucket}", self.endpoint()))
            .send()
            .unwrap();
        assert!(
            resp.status().is_success(),
            "create bucket {bucket}: {resp:?}"
        );
    }

    /// Writes `bytes` at `key` of `bucket`.
    pub fn put(&self, bucket: &str, key: &str, bytes: impl Into<Vec<u8>>) {
        // Not a form's content type: moto would read the body as a form and store nothing.
        let resp = http()
            .put(format!("{}/{bucket}/{key}", self.endpoint()))
            .header("content-type", "application/octet-stream")
            .body(bytes.into())
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "put {bucket}/{key}: {resp:?}");
    }

    /// Waits until moto answers; false when it exited (its port was taken) first.
    fn wait_ready(&mut self) -> bool {
        let end = Instant::now() + START_DEADLINE;
        let mut delay = Duration::from_millis(20);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.0.try_wait() {
                return false;
            }
            let answered = http()
                .get(self.endpoint())
                .timeout(Duration::from_secs(2))
                .send()
                .is_ok();
            if answered {
                return true;
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(200));
        }
        panic!(
            "moto did not answer within {START_DEADLINE:?}: {}",
            std::fs::read_to_string(self.log.path().join("moto.log")).unwrap_or_default()
        );
    }

    /// Takes its log dir (to try again with another port).
    fn log_dir(self) -> TempDir {
        let MotoServer { log, .. } = self;
        log
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
