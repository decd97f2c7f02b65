//! Gateway overhead: the same python predictor called directly on its replica port, through the
//! gateway of a loopback server (anonymous predictions), and through the gateway of a server on
//! all interfaces (every prediction carries a token that is checked), side by side in one run.
//!
//! Run: `cargo bench --bench gateway` (needs python3). Prints latency percentiles for sequential
//! requests and throughput with several client threads.
//!
//! To compare two builds in one run, point `CORTEX_BENCH_BEFORE` at another `cortex` binary (for
//! example a release build of an earlier commit): its servers run beside this build's and are
//! measured in the same run as `gateway (before)` and `+token (before)`, in two rounds: this
//! build first in the first round, the other first in the second (all servers and replicas run
//! throughout both).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SEQUENTIAL: usize = 2000;
const THREADS: usize = 4;
const THROUGHPUT_FOR: Duration = Duration::from_secs(5);

struct Server {
    bin: PathBuf,
    child: Child,
    url: String,
    token: String,
    _dir: tempfile::TempDir,
    cli_dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start(bin: &Path, listen: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let child = Command::new(bin)
        .args(["server", "--listen", listen, "--data-dir"])
        .arg(&data)
        .env("CORTEX_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as u64;
    let url = poll("server.json", || {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(data.join("server.json")).ok()?).ok()?;
        (v["pid"].as_u64()? == pid).then(|| v["url"].as_str().unwrap().to_string())
    });
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let cli_dir = dir.path().join("cli");
    Server {
        bin: bin.to_path_buf(),
        child,
        url,
        token: token.trim().to_string(),
        _dir: dir,
        cli_dir,
    }
}

fn cortex(s: &Server, cwd: &Path, args: &[&str]) -> String {
    let out = Command::new(&s.bin)
        .env("CORTEX_CLI_CONFIG_DIR", &s.cli_dir)
        .env("CORTEX_ENDPOINT", &s.url)
        .env("CORTEX_TOKEN", &s.token)
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One prediction, read to the end.
fn echo(client: &reqwest::blocking::Client, url: &str, token: Option<&str>) {
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(r#"{"x": 1}"#);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let r = req.send().unwrap();
    assert!(r.status().is_success());
    r.bytes().unwrap();
}

fn sequential(url: &str, token: Option<&str>) -> Vec<Duration> {
    let client = reqwest::blocking::Client::new();
    let mut times = Vec::with_capacity(SEQUENTIAL);
    for i in 0..SEQUENTIAL + 100 {
        let t = Instant::now();
        echo(&client, url, token);
        if i >= 100 {
            times.push(t.elapsed()); // the first 100 warm up
        }
    }
    times.sort();
    times
}

fn throughput(url: &str, token: Option<&str>) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (url, done, stop) = (url.to_string(), done.clone(), stop.clone());
            let token = token.map(str::to_string);
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    echo(&client, &url, token.as_deref());
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(THROUGHPUT_FOR);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / THROUGHPUT_FOR.as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` style probing
    }
    let this = PathBuf::from(env!("CARGO_BIN_EXE_cortex"));
    let before = std::env::var_os("CORTEX_BENCH_BEFORE").map(PathBuf::from);
    let project_dir = tempfile::tempdir().unwrap();
    let project = project_dir.path().to_path_buf();
    std::fs::write(
        project.join("predictor.py"),
        "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return payload\n",
    )
    .unwrap();
    std::fs::write(
        project.join("cortex.yaml"),
        format!(
            "- name: echo\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    threads_per_process: {THREADS}\n"
        ),
    )
    .unwrap();
    let live = |server: &Server| -> serde_json::Value {
        cortex(server, &project, &["deploy"]);
        poll("echo to be live", || {
            let v: serde_json::Value =
                serde_json::from_str(&cortex(server, &project, &["get", "echo", "-o", "json"]))
                    .ok()?;
            (v["status"] == "live").then_some(v)
        })
    };
    // (label suffix, loopback server, all-interfaces server) per build.
    let mut builds = vec![("", start(&this, "127.0.0.1:0"), start(&this, "0.0.0.0:0"))];
    if let Some(bin) = &before {
        builds.push((
            " (before)",
            start(bin, "127.0.0.1:0"),
            start(bin, "0.0.0.0:0"),
        ));
    }
    let mut direct = String::new();
    for (i, (_, s, open)) in builds.iter().enumerate() {
        let api = live(s);
        live(open);
        if i == 0 {
            let port = api["replicas"][0]["port"].as_u64().unwrap();
            direct = format!("http://127.0.0.1:{port}/");
        }
    }

    println!("python predictor echoing a small JSON body; {SEQUENTIAL} sequential requests after 100 warm-up ones, then {THREADS} client threads for {}s", THROUGHPUT_FOR.as_secs());
    if let Some(bin) = &before {
        println!("(before) rows: the servers of {}", bin.display());
    }
    println!(
        "{:<18} {:>10} {:>10} {:>10} {:>12}",
        "path", "p50", "p90", "p99", "req/s"
    );
    let rounds = if before.is_some() { 2 } else { 1 };
    for round in 0..rounds {
        if rounds > 1 {
            println!("round {}", round + 1);
        }
        let mut cases: Vec<(String, String, Option<&str>)> =
            vec![("direct".to_string(), direct.clone(), None)];
        for kind in ["gateway", "+token"] {
            let mut order: Vec<_> = builds.iter().collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for (suffix, s, open) in order {
                cases.push(match kind {
                    "gateway" => (format!("gateway{suffix}"), format!("{}/echo", s.url), None),
                    _ => (
                        format!("+token{suffix}"),
                        format!("{}/echo", open.url),
                        Some(open.token.as_str()),
                    ),
                });
            }
        }
        for (name, url, token) in &cases {
            let t = sequential(url, *token);
            let rps = throughput(url, *token);
            println!(
                "{:<18} {:>10.3?} {:>10.3?} {:>10.3?} {:>12.0}",
                name,
                percentile(&t, 0.5),
                percentile(&t, 0.9),
                percentile(&t, 0.99),
                rps
            );
        }
    }
}
