//! At-least-once with a small window: a server SIGKILLed in the middle of a job re-runs only
//! the batches its workers were running (and at most one more per worker), not every batch
//! a worker had taken; and that holds however far the server lags behind its workers.

use std::path::Path;

use serde_json::{json, Value};

use crate::harness::{http, wait_for, Server, DEADLINE};

/// A BatchAPI predictor that appends each batch it ran to `runs` (one line per run), after
/// sleeping `seconds`: long enough that a kill, or a disk filled, lands mid-job.
pub(crate) fn recorder(seconds: f64) -> String {
    format!(
        r#"
import os, time

class PythonPredictor:
    def __init__(self, config, job_spec):
        self.runs = os.path.join(config["results"], "runs")

    def predict(self, payload, batch_id):
        time.sleep({seconds})
        with open(self.runs, "a") as f:
            f.write(batch_id + "\n")
"#
    )
}

/// The batches [`recorder`] ran, one per run.
pub(crate) fn runs(results: &Path) -> Vec<String> {
    std::fs::read_to_string(results.join("runs"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Submits a job of `items` one-item batches to `recorder` on `workers` workers; its id.
fn submit(s: &Server, results: &Path, items: usize, workers: usize) -> String {
    let items: Vec<usize> = (0..items).collect();
    let body = json!({
        "workers": workers,
        "item_list": {"items": items, "batch_size": 1},
        "config": {"results": results},
    });
    let resp = http()
        .post(format!("{}/recorder", s.url))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn job(s: &Server, id: &str) -> Value {
    let resp = http()
        .get(format!("{}/recorder/{id}", s.url))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().unwrap()["job_status"].clone()
}

#[test]
fn a_server_killed_mid_job_re_runs_at_most_two_batches_per_worker() {
    const WORKERS: usize = 2;
    const ITEMS: usize = 800;
    const KILLS: usize = 3;
    let mut s = Server::start();
    // The results live in a directory the test owns, outside the server's data directory.
    let results = tempfile::tempdir().unwrap();
    let p = s.python_project("recorder", "BatchAPI", &recorder(0.04), "");
    s.ok(&p, &["deploy"]);
    s.wait_status("recorder", "live");
    let id = submit(&s, results.path(), ITEMS, WORKERS);
    for kill in 1..=KILLS {
        // Kill once the workers have run a good share of the job since the last start.
        let before = runs(results.path()).len();
        wait_for("the workers to run batches", DEADLINE, || {
            (runs(results.path()).len() >= before + 60).then_some(())
        });
        let distinct: std::collections::HashSet<String> =
            runs(results.path()).into_iter().collect();
        assert!(
            distinct.len() < ITEMS,
            "kill {kill} lands in the middle of the job"
        );
        s.kill();
        s.restart_after_kill();
    }
    let done = wait_for("the job to end", DEADLINE, || {
        let j = job(&s, &id);
        j.get("end_time").is_some().then_some(j)
    });
    assert_eq!(done["status"], "status_succeeded", "{done:#}");
    assert_eq!(done["batch_metrics"]["succeeded"], ITEMS);
    let ran = runs(results.path());
    let distinct: std::collections::HashSet<&String> = ran.iter().collect();
    assert_eq!(distinct.len(), ITEMS, "every batch ran");
    let re_runs = ran.len() - ITEMS;
    assert!(
        re_runs <= KILLS * WORKERS * 2,
        "{re_runs} batches ran again after {KILLS} kills of the server with {WORKERS} workers"
    );
}

/// The hard bound: a worker starts a batch only once the outcome of the batch two before it
/// is committed, so a server that stops writing (here SIGSTOPped: starved of CPU does the
/// same) holds its workers at two batches past the last committed outcome instead of
/// letting them run through every batch they were sent. Killed then, it runs again at most
/// those two per worker.
#[test]
fn a_stopped_server_lets_each_worker_run_at_most_two_batches_past_its_last_commit() {
    const WORKERS: usize = 2;
    const ITEMS: usize = 800;
    let mut s = Server::start();
    let results = tempfile::tempdir().unwrap();
    let p = s.python_project("recorder", "BatchAPI", &recorder(0.04), "");
    s.ok(&p, &["deploy"]);
    s.wait_status("recorder", "live");
    let id = submit(&s, results.path(), ITEMS, WORKERS);
    wait_for("the workers to run batches", DEADLINE, || {
        (runs(results.path()).len() >= 60).then_some(())
    });
    s.signal(libc::SIGSTOP);
    // The workers go on until they have nothing they may start: wait until the runs stop
    // growing (unchanged over a stretch of 25 batches' time).
    let mut last = (runs(results.path()).len(), std::time::Instant::now());
    let stopped_at = wait_for("the workers to stop running batches", DEADLINE, || {
        let n = runs(results.path()).len();
        if n != last.0 {
            last = (n, std::time::Instant::now());
        }
        (last.1.elapsed() >= std::time::Duration::from_secs(1)).then_some(n)
    });
    assert!(
        stopped_at < ITEMS,
        "the server stopped in the middle of the job"
    );
    s.kill();
    s.restart_after_kill();
    let done = wait_for("the job to end", DEADLINE, || {
        let j = job(&s, &id);
        j.get("end_time").is_some().then_some(j)
    });
    assert_eq!(done["status"], "status_succeeded", "{done:#}");
    assert_eq!(done["batch_metrics"]["succeeded"], ITEMS);
    assert_eq!(done["batch_metrics"]["failed"], 0);
    let ran = runs(results.path());
    let mut times = std::collections::HashMap::<&String, usize>::new();
    for b in &ran {
        *times.entry(b).or_default() += 1;
    }
    assert_eq!(times.len(), ITEMS, "every batch ran");
    let again: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "{stopped_at} batch(es) ran before the kill; {} ran again",
        again.len()
    );
    assert!(
        again.iter().all(|(_, n)| **n == 2) && again.len() <= WORKERS * 2,
        "{} batch(es) ran again after the server was stopped and killed with {WORKERS} workers \
         (at most 2 per worker may): {again:?}",
        again.len()
    );
}
