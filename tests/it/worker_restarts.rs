//! A batch worker that exits after doing work is restarted, whatever killed it and however
//! soon after its start: only a worker that exits again and again without finishing a batch
//! fails its job (`status_worker_error`, in `batch.rs`).

use std::path::Path;

use serde_json::json;

use crate::batch::{deploy_batch, submit, wait_job};
use crate::harness::{wait_for, Server, DEADLINE};

/// Appends `<batch id> <pid>` to `runs` after each batch (a short sleep first, so that a
/// job of many batches lasts long enough to kill its worker twice).
const PID_RECORDER: &str = r#"
import os, time

class PythonPredictor:
    def __init__(self, config, job_spec):
        self.runs = os.path.join(config["results"], "runs")

    def predict(self, payload, batch_id):
        time.sleep(0.05)
        with open(self.runs, "a") as f:
            f.write("%s %d\n" % (batch_id, os.getpid()))
"#;

/// The pids that finished batches, in the order they first did.
fn worker_pids(results: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for line in std::fs::read_to_string(results.join("runs"))
        .unwrap_or_default()
        .lines()
    {
        if let Some(pid) = line.split(' ').nth(1).and_then(|p| p.parse().ok()) {
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
    }
    pids
}

#[test]
fn a_worker_killed_twice_after_finishing_batches_is_restarted_and_the_job_succeeds() {
    let s = Server::start();
    let p = deploy_batch(&s, "sturdy", PID_RECORDER, "");
    let results = p.join("results");
    std::fs::create_dir_all(&results).unwrap();
    let id = submit(
        &s,
        "sturdy",
        json!({"workers": 1, "item_list": {"items": (0..200).collect::<Vec<_>>(), "batch_size": 1}, "config": {"results": results}}),
    );
    // Each kill lands on a worker that finished a batch, a second or so after it started:
    // two exits this soon used to count as a crash loop and end the job.
    for kills in 1..=2 {
        let pid = wait_for("the worker to finish a batch", DEADLINE, || {
            worker_pids(&results).get(kills - 1).copied()
        });
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    let done = wait_job(&s, "sturdy", &id, "status_succeeded");
    assert_eq!(done["batch_metrics"]["succeeded"], 200, "{done:#}");
    assert!(worker_pids(&results).len() >= 3, "the worker started again");
}
