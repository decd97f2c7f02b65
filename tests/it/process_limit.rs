//! What bounds a run's processes: their number (`cortex server --max-replica-pids`), so a
//! tenant's fork or thread bomb stops at its own run's limit, not at the machine's, and the
//! replica's error says which limit it met; and the kernel's choice when the machine runs out
//! of memory, which falls on a replica before the server.

use crate::harness::*;

/// A predictor that starts sleeping threads until the OS refuses one (at most 500).
const THREAD_BOMB: &str = r#"
import threading, time

class PythonPredictor:
    def __init__(self, config):
        self.started = 0
        try:
            for _ in range(500):
                threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
                self.started += 1
        except RuntimeError:
            pass

    def predict(self, payload):
        return {"started": self.started}
"#;

/// A server limiting each run to `max` processes and threads, unless it says it cannot here
/// (not root, no pids cgroup): then the test is skipped, saying why.
fn limited_server(max: u32) -> Option<Server> {
    let max = max.to_string();
    let s = Server::start_with_args(
        "127.0.0.1:0",
        &[("CORTEX_LOG", "info")],
        &["--max-replica-pids", &max],
    );
    let log = std::fs::read_to_string(s.dir.path().join("server.log")).unwrap_or_default();
    let cannot = [
        "replicas are held by their process group only",
        "no pids cgroup can be made here",
    ];
    if cannot.iter().any(|why| log.contains(why)) {
        eprintln!(
            "skipped: the server cannot limit runs' processes here (not root, or no pids cgroup)"
        );
        return None;
    }
    assert!(
        log.contains(&format!(
            "each run may have at most {max} processes and threads"
        )),
        "{log}"
    );
    Some(s)
}

/// A python replica (made from a spare interpreter) starts threads up to its run's limit and
/// no further, and still serves.
#[test]
fn a_replicas_threads_stop_at_its_runs_limit() {
    let Some(s) = limited_server(64) else { return };
    let p = s.python_project("bomb", "RealtimeAPI", THREAD_BOMB, "");
    s.ok(&p, &["deploy", "-y"]);
    s.wait_status("bomb", "live");
    let answer: serde_json::Value = s.predict("bomb", "{}").json().unwrap();
    let started = answer["started"].as_u64().unwrap();
    // The interpreter's own threads count too; a few dozen of its own still start.
    assert!((20..64).contains(&started), "{answer}");
}

/// A command replica (a fresh start) that dies of the limit says so, naming the flag.
#[test]
fn a_command_replica_refused_a_thread_says_which_limit_it_met() {
    let Some(s) = limited_server(48) else { return };
    let p = s.project("cmdbomb");
    write(
        &p,
        "bomb.py",
        "import threading, time\nfor _ in range(500):\n    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n",
    );
    write(
        &p,
        "cortex.yaml",
        "- name: cmdbomb\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: [python3, bomb.py]\n",
    );
    s.ok(&p, &["deploy", "-y"]);
    let api = s.wait_status("cmdbomb", "error");
    let error = api["errors"][0].as_str().unwrap();
    assert!(
        error.contains("reached the server's limit of 48 processes and threads per run")
            && error.contains("--max-replica-pids"),
        "{error}"
    );
    // Python's own word for it is in the output below.
    assert!(error.contains("can't start new thread"), "{error}");
}

/// Reads `oom_score_adj` of the predictor's process and of a process it starts.
const OOM_SCORES: &str = r#"
import subprocess

class PythonPredictor:
    def __init__(self, config):
        pass

    def predict(self, payload):
        own = open("/proc/self/oom_score_adj").read().strip()
        child = subprocess.run(["cat", "/proc/self/oom_score_adj"], capture_output=True, text=True).stdout.strip()
        return {"own": own, "child": child}
"#;

/// The bug: a replica growing without `compute.mem` on a server whose memory ran out could
/// have the kernel kill the server (an equal `oom_score_adj`, and the server the bigger
/// process); now every replica (and what it starts) is the kernel's first choice.
#[test]
fn a_replica_is_killed_before_the_server_when_memory_runs_out() {
    let s = Server::start();
    let p = s.python_project("scores", "RealtimeAPI", OOM_SCORES, "");
    s.ok(&p, &["deploy", "-y"]);
    s.wait_status("scores", "live");
    let answer: serde_json::Value = s.predict("scores", "{}").json().unwrap();
    assert_eq!(answer["own"], "500", "{answer}");
    assert_eq!(answer["child"], "500", "{answer}");
    let server: i32 = std::fs::read_to_string(format!("/proc/{}/oom_score_adj", s.pid()))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(server < 500, "{server}");
}
