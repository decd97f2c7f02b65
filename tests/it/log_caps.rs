//! Replica logs are capped: past `--log-max-mb` a log file is rotated (one generation kept), so
//! a replica that prints fast stays under the cap on disk, and `cortex logs` (and `logs -f`)
//! still show its latest lines. The log takes each stream's output in whole lines. Output that
//! would leave the disk with less free space than the server keeps (`--min-free-disk-mb`) is
//! dropped, saying so.

use std::path::Path;
use std::process::Stdio;

use crate::harness::{line_channel, wait_line, write, KillOnDrop, Server};

/// Prints `lines` lines of 100 bytes each, then `burst <id> done`.
const PRINTER: &str = r#"
import sys

class PythonPredictor:
    def __init__(self, config):
        print("ready to print", flush=True)

    def predict(self, payload):
        for i in range(payload["lines"]):
            sys.stdout.write(f"line {i:>93}\n")
        print(f"burst {payload['id']} done", flush=True)
        return "ok"
"#;

/// Bytes of every file under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn a_replica_that_prints_fast_stays_under_the_log_cap_and_its_latest_lines_show() {
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_LOG_MAX_MB", "1")]);
    let p = s.project("printer");
    write(&p, "predictor.py", PRINTER);
    write(
        &p,
        "cortex.yaml",
        "- name: printer\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("printer", "live");
    let mut follow = s
        .cortex()
        .args(["logs", "printer", "-f"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = line_channel(follow.stdout.take().unwrap());
    let _follow = KillOnDrop(follow);
    wait_line(&lines, "ready to print");
    // 24 MiB of output, through stdout into two files (its own and the combined log).
    let resp = s.predict("printer", r#"{"lines": 250000, "id": 1}"#);
    assert_eq!(resp.status(), 200);
    wait_line(&lines, "burst 1 done");
    let tail = s.ok(&p, &["logs", "printer", "--tail", "2"]);
    assert!(tail.ends_with("burst 1 done\n"), "{tail}");
    assert!(tail.lines().next().unwrap().contains("line "), "{tail}");
    let dir = s.data_dir().join("logs").join("printer");
    let on_disk = bytes_under(&dir);
    // Three files (combined, stdout, stderr), each at most 1 MiB with one rotated generation.
    assert!(on_disk <= 6 << 20, "{on_disk} bytes of logs on disk");
    // Once more: the follower goes on across further rotations.
    assert_eq!(
        s.predict("printer", r#"{"lines": 50000, "id": 2}"#)
            .status(),
        200
    );
    wait_line(&lines, "burst 2 done");
    assert!(bytes_under(&dir) <= 6 << 20);
}

/// A batch worker that prints `lines` lines of 100 bytes per batch, then `batch <id> printed`.
const BATCH_PRINTER: &str = r#"
import sys

class PythonPredictor:
    def __init__(self, config, job_spec):
        self.lines = config["lines"]

    def predict(self, payload, batch_id):
        for i in range(self.lines):
            sys.stdout.write(f"line {i:>93}\n")
        print(f"batch {batch_id} printed", flush=True)
"#;

#[test]
fn a_jobs_merged_log_reads_across_rotations() {
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_LOG_MAX_MB", "1")]);
    crate::batch::deploy_batch(&s, "loud", BATCH_PRINTER, "");
    let id = crate::batch::submit(
        &s,
        "loud",
        serde_json::json!({"workers": 1, "item_list": {"items": [1], "batch_size": 1}, "config": {"lines": 100000}}),
    );
    crate::batch::wait_job(&s, "loud", &id, "status_succeeded");
    let log = s.ok(s.dir.path(), &["logs", "loud", &id]);
    assert!(
        log.contains(&format!("batch {id}-0 printed")),
        "{}",
        &log[log.len().saturating_sub(2000)..]
    );
    assert!(
        log.len() < 4 << 20,
        "what was rotated away is not shown: {} bytes",
        log.len()
    );
    assert!(bytes_under(&s.data_dir().join("logs").join("loud")) <= 6 << 20);
}

/// Writes half a line on stdout, a whole line on stderr, then the rest of the first line.
const INTERLEAVED: &str = r#"
import sys, time

class PythonPredictor:
    def __init__(self, config):
        sys.stdout.write("init done"); sys.stdout.flush()
        sys.stderr.write("a line on stderr\n"); sys.stderr.flush()
        time.sleep(0.05)
        sys.stdout.write(" and ready\n"); sys.stdout.flush()

    def predict(self, payload):
        return "ok"
"#;

#[test]
fn a_line_of_one_stream_is_never_cut_by_a_line_of_the_other() {
    let s = crate::harness::Server::start();
    let p = s.python_project("interleaved", "RealtimeAPI", INTERLEAVED, "");
    s.ok(&p, &["deploy"]);
    s.wait_status("interleaved", "live");
    let logs = s.logs_with(&p, &["interleaved"], "and ready");
    let lines: Vec<&str> = logs.lines().collect();
    assert!(
        lines.iter().any(|l| l.ends_with("init done and ready")),
        "{logs}"
    );
    assert!(
        lines.iter().any(|l| l.ends_with("a line on stderr")),
        "{logs}"
    );
}

/// Draws a progress bar of dots for a few seconds before it ends its line.
const PROGRESS: &str = r#"
import sys, time

class PythonPredictor:
    def __init__(self, config):
        for _ in range(100):
            sys.stdout.write("."); sys.stdout.flush()
            time.sleep(0.05)
        sys.stdout.write(" loaded\n"); sys.stdout.flush()

    def predict(self, payload):
        return "ok"
"#;

#[test]
fn a_line_that_keeps_growing_shows_before_it_ends() {
    let s = crate::harness::Server::start();
    let p = s.python_project("progress", "RealtimeAPI", PROGRESS, "");
    s.ok(&p, &["deploy"]);
    // The dots come every 50 ms for 5 s: the log shows them while the line is still open.
    let logs = s.logs_with(&p, &["progress", "--no-follow"], ".....");
    assert!(
        !logs.contains("loaded"),
        "the dots waited for the line's end:\n{logs}"
    );
}

/// Prints 1 MB lines as fast as it can, beside a `/healthz` that answers.
const SPAMMER: &str = r#"
import http.server, os, sys, threading

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

server = http.server.HTTPServer(("127.0.0.1", int(os.environ["CORTEX_PORT"])), Health)
threading.Thread(target=server.serve_forever, daemon=True).start()
line = "x" * (1 << 20) + "\n"
while True:
    sys.stdout.write(line)
    sys.stdout.flush()
"#;

/// The bug: three replicas printing fast filled a small disk with their logs (each caps
/// three files of its own at `--log-max-mb`, not the disk), and then the database could not
/// store the api's delete. Now output that would take the room the server keeps free is
/// dropped, the log says so, and the delete goes through.
#[test]
fn replica_output_leaves_the_room_the_server_keeps_free() {
    let Some(s) = crate::nothing_lost::SmallDiskServer::start_with(
        48,
        &[
            ("CORTEX_MIN_FREE_DISK_MB", "16"),
            ("CORTEX_LOG_MAX_MB", "20"),
        ],
    ) else {
        return;
    };
    let project = s.dir.path().join("spam");
    std::fs::create_dir_all(&project).unwrap();
    write(&project, "spam.py", SPAMMER);
    write(
        &project,
        "cortex.yaml",
        "- name: spam\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: python3 spam.py\n",
    );
    s.deploy(&project);
    let logs = s.view.join("logs").join("spam");
    crate::harness::wait_for(
        "the log to say output is dropped",
        crate::harness::DEADLINE,
        || {
            let entries = std::fs::read_dir(&logs).ok()?;
            entries.flatten().find(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.ends_with(".log")
                    && !name.contains(".std")
                    && crate::harness::tail_contains(
                        &e.path(),
                        "output is dropped until there is room again",
                    )
            })
        },
    );
    let free = cortex::free_space::free_bytes(&s.view).unwrap();
    assert!(free >= 15 << 20, "{} MiB free", free >> 20);
    let (status, v) = s.delete("spam");
    assert_eq!(status, 200, "{v}");
}
