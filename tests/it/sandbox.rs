//! A shared server against its own tenants: what a plain user's replica can reach.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::harness::{http, wait_for, write, Server, DEADLINE};
use crate::permissions::user;

/// A command predictor that tries every read, listing and write it is asked to (the request
/// body) and answers with what it got: `{"<path>": "ok" | "<error>"}` per attempt.
const PROBE: &str = r#"
import http.server, json, os, subprocess

def attempt(f):
    try:
        f()
        return "ok"
    except Exception as e:
        return type(e).__name__

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.answer({"status": "ok"})

    def do_POST(self):
        asked = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        got = {"uid": os.getuid(), "euid": os.geteuid()}
        for p in asked.get("read", []):
            got["read " + p] = attempt(lambda: open(p, "rb").read(1))
        for p in asked.get("list", []):
            got["list " + p] = attempt(lambda: os.listdir(p))
        for p in asked.get("write", []):
            got["write " + p] = attempt(lambda: open(p, "w").write("x"))
        for pid in asked.get("signal", []):
            got["signal %d" % pid] = attempt(lambda: os.kill(pid, 0))
        for argv in asked.get("run", []):
            out = subprocess.run(argv, capture_output=True, text=True)
            got["run " + " ".join(argv)] = out.stdout.strip() or out.stderr.strip()
        self.answer(got)

    def answer(self, doc):
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass

http.server.HTTPServer(("127.0.0.1", int(os.environ["CORTEX_PORT"])), H).serve_forever()
"#;

fn probe_project(s: &Server, name: &str) -> PathBuf {
    let p = s.project(name);
    write(&p, "probe.py", PROBE);
    write(
        &p,
        "cortex.yaml",
        &format!(
            "- name: {name}\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: [python3, probe.py]\n"
        ),
    );
    p
}

fn deploy_as(s: &Server, token: &str, dir: &Path, api: &str) {
    let out = s
        .cortex()
        .current_dir(dir)
        .env("CORTEX_TOKEN", token)
        .args(["deploy", "-y"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.wait_status(api, "live");
}

fn ask(s: &Server, token: &str, api: &str, what: Value) -> Value {
    let resp = http()
        .post(format!("{}/{api}", s.url))
        .bearer_auth(token)
        .json(&what)
        .send()
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text());
    resp.json().unwrap()
}

/// Every file under `dirs` whose name is `name`.
fn find(dirs: &[PathBuf], name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo: Vec<PathBuf> = dirs.to_vec();
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p);
            } else if p.file_name().is_some_and(|n| n == name) {
                found.push(p);
            }
        }
    }
    found
}

/// Where servers keep replicas' files: this one's data dir, and when replicas run as another
/// user who cannot reach it, trees of their own in the temp dir (this server's and others').
fn replica_roots(s: &Server) -> Vec<PathBuf> {
    let mut roots = vec![s.data_dir()];
    if let Ok(trees) = std::fs::read_dir(std::env::temp_dir().join("cortex-replicas")) {
        roots.extend(trees.flatten().map(|e| e.path()));
    }
    roots
}

#[test]
fn a_plain_users_replica_reaches_nothing_of_the_server_or_of_other_tenants() {
    let s = Server::start();
    // A tenant with a secret in its project's .env and a replica that logs.
    let victim = s.project("victim");
    write(&victim, "probe.py", PROBE);
    write(&victim, ".env", "VICTIM_SECRET=hunter2-victim\n");
    write(
        &victim,
        "cortex.yaml",
        "- name: victim\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: [python3, probe.py]\n",
    );
    s.ok(&victim, &["deploy", "-y"]);
    s.wait_status("victim", "live");

    let mallory = user(&s, "mallory");
    let attacker = probe_project(&s, "attacker");
    deploy_as(&s, &mallory, &attacker, "attacker");

    let data = s.data_dir();
    let victim_env = find(&replica_roots(&s), ".env");
    assert!(
        !victim_env.is_empty(),
        "the victim's unpacked .env exists somewhere"
    );
    let pid: u64 = http()
        .get(format!("{}/healthz", s.url))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["pid"]
        .as_u64()
        .unwrap();
    let p = |rel: &str| data.join(rel).display().to_string();
    let mut reads = vec![
        p("admin.token"),
        p("cortex.db"),
        format!("/proc/{pid}/environ"),
    ];
    reads.extend(victim_env.iter().map(|e| e.display().to_string()));
    let victim_logs = std::fs::read_dir(data.join("logs").join("victim")).unwrap();
    reads.extend(
        victim_logs
            .flatten()
            .map(|e| e.path().display().to_string()),
    );
    let mut lists = vec![p(""), p("bundles"), p("logs")];
    for root in replica_roots(&s) {
        for sub in ["projects", "venvs", "scratch"] {
            lists.push(root.join(sub).display().to_string());
        }
    }
    let writes = vec![p("planted"), p("bundles/planted")];
    let got = ask(
        &s,
        &mallory,
        "attacker",
        json!({"read": reads, "list": lists, "write": writes, "signal": [pid]}),
    );
    let mut reached = Vec::new();
    for (k, v) in got.as_object().unwrap() {
        let attempt = ["read ", "list ", "write ", "signal "]
            .iter()
            .any(|p| k.starts_with(p));
        if attempt && v == "ok" {
            reached.push(k.clone());
        }
    }
    assert!(
        reached.is_empty(),
        "the tenant's replica reached: {reached:#?}\n{got:#}"
    );
    assert!(!data.join("planted").exists());
    // It is not root, and what it may do still works: its project, its scratch, the system.
    assert_ne!(got["euid"], json!(0), "{got}");
    let scratch = ask(
        &s,
        &mallory,
        "attacker",
        json!({"run": [["sh", "-c", "echo x > \"$TMPDIR/f\" && cat \"$TMPDIR/f\" probe.py /etc/hostname >/dev/null && echo fine"]]}),
    );
    let line = scratch
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with("run "))
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(line, json!("fine"), "{scratch}");
}

/// A tar.gz with `files` (name, mode, bytes), as a hostile client would build it.
fn tarball(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (name, mode, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(*mode);
        h.set_cksum();
        builder.append_data(&mut h, name, *bytes).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

#[test]
fn a_setuid_program_in_a_bundle_runs_without_privileges() {
    let s = Server::start();
    let mallory = user(&s, "mallory");
    let id = std::fs::read("/usr/bin/id").unwrap();
    let config = "- name: suid\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: [python3, probe.py]\n";
    let archive = tarball(&[
        ("cortex.yaml", 0o644, config.as_bytes()),
        ("probe.py", 0o644, PROBE.as_bytes()),
        ("id", 0o4755, &id),
    ]);
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(&archive));
    let put = http()
        .put(format!("{}/api/v2/bundles/{sha}", s.url))
        .bearer_auth(&mallory)
        .body(archive)
        .send()
        .unwrap();
    assert!(put.status().is_success(), "{:?}", put.text());
    let deployed = http()
        .post(format!("{}/api/v2/apis", s.url))
        .bearer_auth(&mallory)
        .json(&json!({"config_file": "cortex.yaml", "config": config, "bundle": sha}))
        .send()
        .unwrap();
    assert!(deployed.status().is_success(), "{:?}", deployed.text());
    s.wait_status("suid", "live");
    let got = ask(
        &s,
        &mallory,
        "suid",
        json!({"run": [["./id", "-u"], ["id", "-u"]]}),
    );
    // The bundled setuid copy runs as the replica's own user, like the system's `id`.
    assert_eq!(got["run ./id -u"], got["run id -u"], "{got}");
    assert_ne!(got["run ./id -u"], json!("0"), "{got}");
}

#[test]
fn healthz_reports_the_isolation_in_force() {
    let s = Server::start();
    let health: Value = s.health();
    let iso = &health["isolation"];
    assert_eq!(iso["sandbox"], "standard", "{health}");
    assert!(iso["landlock_abi"].as_i64().unwrap_or(0) >= 1, "{health}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(iso["replica_user"], "nobody", "{health}");
    }
    assert!(
        iso["summary"].as_str().unwrap().contains("sandboxed"),
        "{health}"
    );
}

#[test]
fn a_server_beyond_loopback_will_not_run_unsandboxed_replicas_unless_told_to() {
    let dir = tempfile::tempdir().unwrap();
    let server = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(crate::harness::cortex_bin());
        cmd.args([
            "server",
            "--sandbox",
            "off",
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .args(extra)
        .env("CORTEX_CLI_CONFIG_DIR", dir.path().join("cli"))
        .stdin(std::process::Stdio::null());
        cmd
    };
    let out = server(&[]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-unsandboxed-replicas"), "{err}");
    assert!(err.contains("not sandboxed"), "{err}");

    let child = server(&["--allow-unsandboxed-replicas"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _guard = crate::harness::KillOnDrop(child);
    let url = wait_for("the server's runtime file", DEADLINE, || {
        let bytes = std::fs::read(dir.path().join("data/server.json")).ok()?;
        let v: Value = serde_json::from_slice(&bytes).ok()?;
        v["url"].as_str().map(str::to_string)
    });
    let health: Value = wait_for("/healthz", DEADLINE, || {
        http()
            .get(format!("{url}/healthz"))
            .send()
            .ok()?
            .json()
            .ok()
    });
    assert_eq!(health["isolation"]["sandbox"], "off", "{health}");
    assert_eq!(health["isolation"]["landlock_abi"], Value::Null, "{health}");
}

#[test]
fn a_strict_sandbox_reaches_only_system_paths_its_own_files_and_granted_directories() {
    let shared = crate::harness::shared_tempdir();
    let (granted, other) = (shared.path().join("granted"), shared.path().join("other"));
    for d in [&granted, &other] {
        std::fs::create_dir(d).unwrap();
        write(d, "data.txt", "x");
    }
    let grant = format!("{}:rw", granted.display());
    let s = Server::start_with_args(
        "127.0.0.1:0",
        &[],
        &["--sandbox", "strict", "--replica-path", &grant],
    );
    let health: Value = s.health();
    assert_eq!(health["isolation"]["sandbox"], "strict", "{health}");
    let p = probe_project(&s, "strict");
    s.ok(&p, &["deploy", "-y"]);
    s.wait_status("strict", "live");
    let path = |d: &Path, f: &str| d.join(f).display().to_string();
    let got = ask(
        &s,
        &s.token,
        "strict",
        json!({
            "read": [path(&granted, "data.txt"), path(&other, "data.txt"), "/etc/hostname"],
            "write": [path(&granted, "out.txt"), path(&other, "out.txt")],
        }),
    );
    let outcome = |what: &str, d: &Path, f: &str| got[format!("{what} {}", path(d, f))].clone();
    assert_eq!(outcome("read", &granted, "data.txt"), "ok", "{got}");
    assert_eq!(outcome("write", &granted, "out.txt"), "ok", "{got}");
    assert_eq!(got["read /etc/hostname"], "ok", "{got}");
    // The same OS permissions, but not granted: out of reach.
    assert_ne!(outcome("read", &other, "data.txt"), "ok", "{got}");
    assert_ne!(outcome("write", &other, "out.txt"), "ok", "{got}");
    // The python shim runs there too.
    let py = s.python_project(
        "strictpy",
        "RealtimeAPI",
        "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return 'held'\n",
        "",
    );
    s.ok(&py, &["deploy", "-y"]);
    s.wait_status("strictpy", "live");
    assert_eq!(s.predict("strictpy", "{}").text().unwrap(), "held");
}

#[test]
fn the_data_dir_is_closed_to_other_os_users() {
    use std::os::unix::fs::PermissionsExt;
    let s = Server::start();
    let p = probe_project(&s, "closed");
    s.ok(&p, &["deploy", "-y"]);
    s.wait_status("closed", "live");
    let mode = |rel: &str| {
        std::fs::metadata(s.data_dir().join(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    for file in ["cortex.db", "admin.token"] {
        assert_eq!(mode(file), 0o600, "{file}");
    }
    for dir in ["bundles", "logs"] {
        assert_eq!(mode(dir), 0o700, "{dir}");
    }
    assert_eq!(
        mode("") & 0o066,
        0,
        "the data dir lets others read or write it"
    );
}

/// Each run's bytecode cache is new (its scratch space), but it starts from the runtime and the
/// standard modules the server compiled once: readable by the replica's user and used as they
/// are, not compiled again in the run (which cost a few hundred milliseconds per start).
#[test]
fn a_replicas_bytecode_cache_starts_warm() {
    let s = Server::start();
    // Made in the background after the server starts (a replica started before compiles).
    let seed = s.replica_tree().join("pycache-seed");
    wait_for("the server's compiled runtime", DEADLINE, || {
        seed.is_dir().then_some(())
    });
    let p = s.python_project(
        "warm",
        "RealtimeAPI",
        "import importlib.util, json.decoder, os, sys\n\n\
         class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    \
         def predict(self, payload):\n        out = {}\n        \
         for name in ('json.decoder', 'cortex_runtime.main'):\n            \
         cached = importlib.util.cache_from_source(sys.modules[name].__file__)\n            \
         out[name] = {'in_scratch': cached.startswith(os.environ['TMPDIR']), \
         'readable': os.access(cached, os.R_OK), 'linked': os.stat(cached).st_nlink > 1}\n        \
         return out\n",
        "",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("warm", "live");
    let resp = s.predict("warm", "{}");
    assert_eq!(resp.status(), 200);
    let got: Value = resp.json().unwrap();
    let warm = json!({"in_scratch": true, "readable": true, "linked": true});
    assert_eq!(
        got,
        json!({"json.decoder": warm, "cortex_runtime.main": warm})
    );
}
