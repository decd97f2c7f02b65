//! What a replica may use and how it fails: memory limits (`compute.mem`) and the
//! `error (out of memory)` status, crash loops shown as `error` and mended by a redeploy, and
//! replicas that wait for CPU as `compute unavailable`.

use std::path::PathBuf;

use crate::harness::{wait_for, write, Server, DEADLINE};

/// A python RealtimeAPI named `name` with this predictor and extra YAML for the API.
fn write_python_api(s: &Server, name: &str, predictor: &str, extra_yaml: &str) -> PathBuf {
    s.python_project(name, "RealtimeAPI", predictor, extra_yaml)
}

const HOG: &str = "class PythonPredictor:\n    def __init__(self, config):\n        self.blob = b'x' * (400 << 20)\n\n    def predict(self, payload):\n        return 'ok'\n";
const LEAN: &str =
    "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return 'lean'\n";

/// Whether the server (logging at `info`) said it enforces memory limits with cgroups (it
/// does wherever it may make one; elsewhere it samples each replica's memory).
fn enforced_by_kernel(s: &Server) -> bool {
    let log = std::fs::read_to_string(s.dir.path().join("server.log")).unwrap();
    let kernel = log.contains("memory limits (compute.mem) are enforced by the kernel");
    assert!(
        kernel || log.contains("memory limits (compute.mem) are enforced by sampling"),
        "{log}"
    );
    kernel
}

/// Deploys `hog` (400 MiB in `__init__`) with `compute.mem: 100Mi`, waits until it is shown
/// out of memory, and returns its project and its error, checked to say what it used and what
/// the limit allows.
fn deploy_hog(s: &Server) -> (PathBuf, String) {
    let p = write_python_api(s, "hog", HOG, "  compute:\n    mem: 100Mi\n");
    s.ok(&p, &["deploy"]);
    let api = s.wait_status("hog", "error_out_of_memory");
    let error = api["errors"][0].as_str().unwrap().to_string();
    assert!(
        error.starts_with("out of memory: the replica's processes used")
            && error.contains("compute.mem allows 100MiB"),
        "{error}"
    );
    (p, error)
}

#[test]
fn a_replica_over_its_memory_limit_is_killed_and_shown_out_of_memory_until_a_fix_is_deployed() {
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_LOG", "info")]);
    let (p, error) = deploy_hog(&s);
    let killer = if enforced_by_kernel(&s) {
        "so the kernel killed them"
    } else {
        "so it was killed"
    };
    assert!(error.contains(killer), "{error}");
    let text = s.ok(&p, &["get", "hog"]);
    assert!(text.contains("error (out of memory)"), "{text}");
    // The list shows the failed replica in its own column (hidden while none failed).
    crate::harness::wait_for("a failed replica", crate::harness::DEADLINE, || {
        let v = s.api_json("hog")?;
        (v["replicas"][0]["phase"] == "failed").then_some(())
    });
    let list = s.ok(&p, &["get"]);
    let mut lines = list.lines();
    assert!(
        lines.next().unwrap().starts_with(
            "realtime api   status                  up-to-date   requested   failed   last update"
        ),
        "{list}"
    );
    let row = crate::harness::cells(lines.next().unwrap());
    assert_eq!(
        &row[..5],
        &["hog", "error (out of memory)", "0", "1", "1"],
        "{list}"
    );
    let logs = s.ok(&p, &["logs", "hog"]);
    assert!(logs.contains("cortex: error: out of memory"), "{logs}");

    // The fix, deployed: live, and answering.
    write(&p, "predictor.py", LEAN);
    s.ok(&p, &["deploy"]);
    s.wait_status("hog", "live");
    let resp = s.predict("hog", "{}");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().unwrap(), "lean");
}

#[test]
fn where_no_cgroup_is_used_memory_is_sampled_and_the_replica_killed_all_the_same() {
    let s = Server::start_with(
        "127.0.0.1:0",
        &[("CORTEX_MEMORY_LIMITS", "sample"), ("CORTEX_LOG", "info")],
    );
    assert!(!enforced_by_kernel(&s));
    let (_, error) = deploy_hog(&s);
    assert!(
        error.contains("compute.mem allows 100MiB, so it was killed"),
        "{error}"
    );
}

#[test]
fn the_same_predictor_without_a_memory_limit_runs() {
    let s = Server::start();
    let p = write_python_api(&s, "roomy", HOG, "");
    s.ok(&p, &["deploy"]);
    s.wait_status("roomy", "live");
    assert_eq!(s.predict("roomy", "{}").status(), 200);
}

#[test]
fn a_crash_looping_replica_shows_error_and_a_redeploy_that_fixes_it_makes_it_live() {
    let s = Server::start();
    let crashing = "import os\n\nclass PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        os._exit(9)\n";
    let p = write_python_api(&s, "flaky", crashing, "");
    s.ok(&p, &["deploy"]);
    s.wait_status("flaky", "live");
    // Each request makes the replica exit; the engine restarts it with back-off.
    let mut answered_error = false;
    let api = crate::harness::wait_for("error status", crate::harness::DEADLINE, || {
        if let Ok(resp) = crate::harness::http()
            .post(format!("{}/flaky", s.url))
            .body("{}")
            .send()
        {
            answered_error |= resp.status().as_u16() >= 500;
        }
        let v = s.api_json("flaky")?;
        (v["status"] == "error").then_some(v)
    });
    assert!(answered_error, "a crashing replica's caller gets a 5xx");
    let error = api["errors"][0].as_str().unwrap();
    assert!(error.contains("exited with status 9"), "{error}");
    write(&p, "predictor.py", LEAN);
    s.ok(&p, &["deploy"]);
    s.wait_status("flaky", "live");
    assert_eq!(s.predict("flaky", "{}").text().unwrap(), "lean");
}

#[test]
fn a_replica_that_does_not_fit_waits_as_compute_unavailable_until_room_is_made() {
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_ENGINE_CPUS", "1")]);
    let one_cpu =
        "  compute:\n    cpu: 1\n  autoscaling:\n    min_replicas: 1\n    max_replicas: 1\n";
    let first = write_python_api(&s, "first", LEAN, one_cpu);
    s.ok(&first, &["deploy"]);
    s.wait_status("first", "live");

    let second = write_python_api(&s, "second", LEAN, one_cpu);
    s.ok(&second, &["deploy"]);
    let api = s.wait_status("second", "compute_unavailable");
    assert_eq!(api["replicas"][0]["phase"], "pending", "{api}");
    let why = api["errors"][0].as_str().unwrap();
    assert!(
        why.starts_with("waiting for compute: it needs 1 cpu (compute.cpu) while 0 of this machine's 1 are free"),
        "{why}"
    );
    let text = s.ok(&second, &["get", "second"]);
    assert!(
        text.starts_with("status") && text.contains("compute unavailable"),
        "{text}"
    );

    // Room made: it starts.
    s.ok(&first, &["delete", "first", "-y"]);
    s.wait_status("second", "live");
    assert_eq!(s.predict("second", "{}").text().unwrap(), "lean");

    // More than the machine has: it says it can never start here.
    let huge = write_python_api(&s, "huge", LEAN, "  compute:\n    cpu: 64\n");
    s.ok(&huge, &["deploy"]);
    let api = s.wait_status("huge", "compute_unavailable");
    assert!(
        api["errors"][0]
            .as_str()
            .unwrap()
            .contains("it can never start here; lower compute in cortex.yaml"),
        "{api}"
    );
}

/// A command replica that starts a process in a session of its own (out of the replica's
/// process group, which the engine kills) and writes that process's pid to `escaped.pid`.
const ESCAPER: &str = r#"
import http.server, os, subprocess
p = subprocess.Popen(["sleep", "300"], start_new_session=True)
open(os.environ["PID_FILE"] + ".tmp", "w").write(str(p.pid))
os.rename(os.environ["PID_FILE"] + ".tmp", os.environ["PID_FILE"])

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass

http.server.HTTPServer(("127.0.0.1", int(os.environ["CORTEX_PORT"])), H).serve_forever()
"#;

#[test]
fn a_process_that_left_the_replicas_group_is_stopped_with_it_where_a_cgroup_holds_them() {
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_LOG", "info")]);
    let dir = s.project("escaper");
    let pid_file = dir.join("escaped.pid");
    write(&dir, "worker.py", ESCAPER);
    write(
        &dir,
        "cortex.yaml",
        &format!(
            "- name: escaper\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: python3 worker.py\n    env:\n      PID_FILE: {}\n  compute:\n    mem: 500Mi\n",
            pid_file.display()
        ),
    );
    s.ok(&dir, &["deploy"]);
    s.wait_status("escaper", "live");
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    assert!(alive(pid));
    s.ok(&dir, &["delete", "escaper", "-y"]);
    if enforced_by_kernel(&s) {
        wait_for("the escaped process to be killed", DEADLINE, || {
            (!alive(pid)).then_some(())
        });
    } else {
        // Without a cgroup nothing holds it: the engine cannot know of it. (Not this
        // machine's case wherever the server may make memory cgroups.)
        // SAFETY: kill(2) sends a signal; it touches no memory.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

#[test]
fn an_idle_batch_api_reserves_no_compute_and_a_job_counts_only_workers_that_ran() {
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_ENGINE_CPUS", "1")]);
    let one_cpu = "  compute:\n    cpu: 1\n";
    let batch = s.python_project(
        "idle-batch",
        "BatchAPI",
        "class PythonPredictor:\n    def __init__(self, config, job_spec):\n        pass\n\n    def predict(self, payload, batch_id):\n        pass\n",
        one_cpu,
    );
    s.ok(&batch, &["deploy"]);
    s.wait_status("idle-batch", "live");
    // The BatchAPI runs nothing while no job runs: a realtime api of the whole machine starts.
    let rt = write_python_api(
        &s,
        "realtime",
        LEAN,
        "  compute:\n    cpu: 1\n  autoscaling:\n    min_replicas: 1\n    max_replicas: 1\n",
    );
    s.ok(&rt, &["deploy"]);
    s.wait_status("realtime", "live");
    s.ok(&rt, &["delete", "realtime", "-y"]);

    // Room for one worker of a cpu: a job asking for two runs on one, and says so.
    let id = crate::batch::submit(
        &s,
        "idle-batch",
        serde_json::json!({"workers": 2, "item_list": {"items": [1, 2, 3, 4], "batch_size": 1}}),
    );
    let status = crate::batch::wait_job(&s, "idle-batch", &id, "status_succeeded");
    let succeeded = status["worker_stats"]["succeeded"].as_u64().unwrap();
    let ran = status["batch_metrics"]["succeeded"].as_u64().unwrap();
    assert_eq!(ran, 4, "{status}");
    // One worker ran every batch; the other never got compute and counts nowhere.
    assert_eq!(succeeded, 1, "{status}");
    assert_eq!(status["worker_stats"]["failed"], 0, "{status}");
}
