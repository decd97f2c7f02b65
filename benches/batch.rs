//! BatchAPI throughput: 100,000 items in batches of 10 (10,000 batches) through the durable
//! queue, to no-op workers: a command worker (a small Rust HTTP server: this very binary,
//! started by cortex with `CORTEX_BENCH_WORKER=1`) and the python shim, with 1 and 4 workers;
//! then a python predictor doing 1 ms of work per batch with one worker, against the same
//! predictor called over the same batches in one plain python loop without cortex, in the same
//! run.
//!
//! Run: `cargo bench --bench batch` (needs python3); `CORTEX_BENCH_BIN=path/to/cortex` measures
//! another build of the server (an earlier commit's) with the same jobs. For each job it
//! prints the job's time (submission to its end, as the server records them: workers'
//! start-up included), batches per second, and the server's CPU-seconds per 1,000 batches
//! (from /proc).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ITEMS: usize = 100_000;
const BATCH_SIZE: usize = 10;

/// The no-op command worker: answers 200 to every request on `$CORTEX_PORT`.
fn worker() {
    use axum::routing::{get, post};
    let port: u16 = std::env::var("CORTEX_PORT").unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let app = axum::Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/", post(|_body: axum::body::Bytes| async { "{}" }))
            .route("/on-job-complete", post(|| async { "{}" }));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(listener, app).await.unwrap();
    });
}

struct Server {
    child: Child,
    url: String,
    token: String,
    bin: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start(bin: &Path) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let child = Command::new(bin)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("CORTEX_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as u64;
    let url = poll("server.json", Duration::from_secs(60), || {
        let v: Value =
            serde_json::from_slice(&std::fs::read(data.join("server.json")).ok()?).ok()?;
        (v["pid"].as_u64()? == pid).then(|| v["url"].as_str().unwrap().to_string())
    });
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    Server {
        child,
        url,
        token: token.trim().to_string(),
        bin: bin.to_path_buf(),
        _dir: dir,
    }
}

fn deploy(s: &Server, project: &Path, name: &str) {
    let out = Command::new(&s.bin)
        .env("CORTEX_CLI_CONFIG_DIR", project.join(".cli"))
        .env("CORTEX_ENDPOINT", &s.url)
        .env("CORTEX_TOKEN", &s.token)
        .current_dir(project)
        .args(["deploy"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let http = reqwest::blocking::Client::new();
    poll(
        &format!("{name} to take jobs"),
        Duration::from_secs(60),
        || {
            http.get(format!("{}/{name}", s.url))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
        },
    );
}

/// CPU seconds the process has used (user + system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Runs one job of `ITEMS` items on `workers` workers of `api`; (seconds, server CPU seconds).
fn job(s: &Server, api: &str, workers: u32) -> (f64, f64) {
    let http = reqwest::blocking::Client::new();
    let items: Vec<usize> = (0..ITEMS).collect();
    let cpu_before = cpu_seconds(s.child.id());
    let answer: Value = http
        .post(format!("{}/{api}", s.url))
        .json(&json!({"workers": workers, "item_list": {"items": items, "batch_size": BATCH_SIZE}}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = answer["job_id"].as_str().unwrap().to_string();
    let done = poll("the job to end", Duration::from_secs(1800), || {
        let v: Value = http
            .get(format!("{}/{api}/{id}", s.url))
            .send()
            .ok()?
            .json()
            .ok()?;
        let j = v["job_status"].clone();
        j.get("end_time").is_some().then_some(j)
    });
    let cpu = cpu_seconds(s.child.id()) - cpu_before;
    assert_eq!(done["status"], "status_succeeded", "{done}");
    let t = |k: &str| cortex_time(done[k].as_str().unwrap());
    (t("end_time") - t("created_time"), cpu)
}

fn cortex_time(text: &str) -> f64 {
    let t = humantime::parse_rfc3339(text).unwrap();
    t.duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

const NOOP: &str = "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload, batch_id):\n        pass\n";
const WORK_1MS: &str = "import time\n\nclass PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload, batch_id):\n        end = time.perf_counter() + 0.001\n        while time.perf_counter() < end:\n            pass\n";

fn main() {
    if std::env::var_os("CORTEX_BENCH_WORKER").is_some() {
        return worker();
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let bin = std::env::var_os("CORTEX_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cortex")));
    let this = std::env::current_exe().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().to_path_buf();
    std::fs::write(project.join("noop.py"), NOOP).unwrap();
    std::fs::write(project.join("work.py"), WORK_1MS).unwrap();
    std::fs::write(
        project.join("cortex.yaml"),
        format!(
            "- name: noop-cmd\n  kind: BatchAPI\n  predictor:\n    type: command\n    command: [{this:?}]\n    env:\n      CORTEX_BENCH_WORKER: '1'\n\
             - name: noop-py\n  kind: BatchAPI\n  predictor:\n    type: python\n    path: noop.py\n\
             - name: work-py\n  kind: BatchAPI\n  predictor:\n    type: python\n    path: work.py\n"
        ),
    )
    .unwrap();
    let s = start(&bin);
    for api in ["noop-cmd", "noop-py", "work-py"] {
        deploy(&s, &project, api);
    }
    let batches = ITEMS.div_ceil(BATCH_SIZE) as f64;
    println!(
        "{ITEMS} items in batches of {BATCH_SIZE} ({batches} batches); job time = submission to end, workers' start included\n"
    );
    println!(
        "{:<34} {:>10} {:>12} {:>24}",
        "job", "time", "batches/s", "server CPU-s / 1k batches"
    );
    let mut work_one = 0.0;
    for (api, workers, label) in [
        ("noop-cmd", 1, "no-op command worker, 1 worker"),
        ("noop-cmd", 4, "no-op command worker, 4 workers"),
        ("noop-py", 1, "no-op python predictor, 1 worker"),
        ("noop-py", 4, "no-op python predictor, 4 workers"),
        ("work-py", 1, "python, 1 ms per batch, 1 worker"),
    ] {
        let (secs, cpu) = job(&s, api, workers);
        if api == "work-py" {
            work_one = secs;
        }
        println!(
            "{label:<34} {:>9.2}s {:>12.0} {:>24.3}",
            secs,
            batches / secs,
            cpu / batches * 1000.0
        );
    }
    // The same 1 ms predictor over the same batches in one plain python loop.
    let plain = Command::new("python3")
        .current_dir(&project)
        .args([
            "-c",
            &format!(
                "import json, time, work\n\
                 items = list(range({ITEMS}))\n\
                 batches = [json.loads(json.dumps(items[i:i + {BATCH_SIZE}])) for i in range(0, len(items), {BATCH_SIZE})]\n\
                 p = work.PythonPredictor({{}})\n\
                 start = time.perf_counter()\n\
                 for i, b in enumerate(batches):\n    p.predict(b, str(i))\n\
                 print(time.perf_counter() - start)\n"
            ),
        ])
        .output()
        .unwrap();
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    let plain: f64 = String::from_utf8_lossy(&plain.stdout)
        .trim()
        .parse()
        .unwrap();
    println!(
        "{:<34} {:>9.2}s {:>12.0}",
        "python, 1 ms per batch, plain loop",
        plain,
        batches / plain
    );
    println!(
        "\ncortex job / plain loop (1 ms per batch, 1 worker): {:.3}x",
        work_one / plain
    );
}
