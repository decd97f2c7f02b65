//! The machine's shared directories (`/dev/shm`, `/var/tmp`, ...) and System V IPC are each
//! run's own: every tenant's replicas run as the same OS user, so what one leaves there must
//! not reach another, nor outlive it on the machine.

use serde_json::Value;

use crate::harness::*;

/// A command predictor (a fresh start) that leaves a file named `$MARK` in `/dev/shm` and
/// `/var/tmp` and a System V shared memory segment keyed `$KEY`, and answers with what it
/// finds there: the files, and whether the segment of key `$KEY` exists.
const LOOK: &str = r#"
import ctypes, http.server, json, os

libc = ctypes.CDLL(None, use_errno=True)
IPC_CREAT = 0o1000
DIRS = ["/dev/shm", "/var/tmp"]

def look():
    return {
        "files": {d: sorted(os.listdir(d)) for d in DIRS},
        "segment": libc.shmget(int(os.environ["KEY"]), 0, 0) != -1,
    }

if os.environ.get("MARK"):
    for d in DIRS:
        with open(os.path.join(d, os.environ["MARK"]), "w") as f:
            f.write("secret")
    assert libc.shmget(int(os.environ["KEY"]), 4096, IPC_CREAT | 0o600) != -1

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.answer(b"ok")

    def do_POST(self):
        self.answer(json.dumps(look()).encode())

    def answer(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.HTTPServer(("127.0.0.1", int(os.environ["CORTEX_PORT"])), Handler).serve_forever()
"#;

/// The same look from a python predictor (made from a spare interpreter).
const PY_LOOK: &str = r#"
import ctypes, os

libc = ctypes.CDLL(None, use_errno=True)

class PythonPredictor:
    def __init__(self, config):
        self.key = int(config["key"])

    def predict(self, payload):
        return {
            "files": {d: sorted(os.listdir(d)) for d in ["/dev/shm", "/var/tmp"]},
            "segment": libc.shmget(self.key, 0, 0) != -1,
        }
"#;

fn look(s: &Server, api: &str) -> Value {
    let answer = s.predict(api, "{}");
    assert_eq!(answer.status(), 200);
    answer.json().unwrap()
}

#[test]
fn what_one_replica_leaves_in_dev_shm_and_var_tmp_no_other_sees() {
    let s = Server::start();
    let health: Value = s.health();
    let summary = health["isolation"]["summary"].as_str().unwrap().to_string();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only a server running as root gives each run its own directories");
        return;
    }
    assert!(
        summary.contains("each run has its own empty /dev/shm")
            && summary.contains("/var/tmp")
            && summary.contains("System V IPC"),
        "{summary}"
    );
    let mark = format!("cortex-test-{}", std::process::id());
    let key = 0x0c07_0000 + std::process::id() % 0xffff;
    let p = s.project("writer");
    write(&p, "look.py", LOOK);
    write(
        &p,
        "cortex.yaml",
        &format!("- name: writer\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: [python3, look.py]\n    env:\n      MARK: {mark}\n      KEY: '{key}'\n"),
    );
    s.ok(&p, &["deploy", "-y"]);
    s.wait_status("writer", "live");
    // The writer sees what it left (its directories are writable, the segment made).
    let own = look(&s, "writer");
    assert_eq!(own["files"]["/dev/shm"], serde_json::json!([mark]), "{own}");
    assert_eq!(own["files"]["/var/tmp"], serde_json::json!([mark]), "{own}");
    assert_eq!(own["segment"], true, "{own}");
    // The machine does not.
    for dir in ["/dev/shm", "/var/tmp"] {
        assert!(!std::path::Path::new(dir).join(&mark).exists(), "{dir}");
    }
    // Nor does another tenant's replica, made from a spare interpreter.
    let config = format!("    config:\n      key: '{key}'\n");
    let r = s.python_project("reader", "RealtimeAPI", PY_LOOK, &config);
    s.ok(&r, &["deploy", "-y"]);
    s.wait_status("reader", "live");
    let other = look(&s, "reader");
    assert_eq!(other["segment"], false, "{other}");
    for dir in ["/dev/shm", "/var/tmp"] {
        let files = other["files"][dir].as_array().unwrap();
        assert!(files.is_empty(), "{dir}: {other}");
    }
}
