//! Batch workers are bounded: a job runs no more workers than it has batches, and the server
//! runs at most `--max-batch-workers` at once; the others wait as `pending`.

use serde_json::json;

use crate::batch::{gated, job, submit, submit_raw, wait_job, wait_started};
use crate::harness::{wait_for, write, Server, DEADLINE};

#[test]
fn a_job_runs_no_more_workers_than_it_has_batches() {
    let s = Server::start();
    let results = gated(&s, "few");
    let body = json!({"workers": 64, "item_list": {"items": [1, 2], "batch_size": 1}, "config": {"results": results}});
    let (status, answer) = submit_raw(&s, "few", &body.to_string());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["workers"], 2, "{answer}");
    let id = answer["job_id"].as_str().unwrap().to_string();
    wait_started(&results, &id);
    let stats = job(&s, "few", &id)["worker_stats"].clone();
    let total: u64 = ["pending", "initializing", "running", "succeeded", "failed"]
        .iter()
        .map(|k| stats[k].as_u64().unwrap())
        .sum();
    assert_eq!(total, 2, "two batches, two workers: {stats}");
    write(&results, "go", "");
    wait_job(&s, "few", &id, "status_succeeded");
}

#[test]
fn past_the_servers_cap_workers_wait_as_pending_until_a_slot_is_free() {
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_MAX_BATCH_WORKERS", "1")]);
    let results = gated(&s, "capped");
    let first = submit(
        &s,
        "capped",
        json!({"workers": 1, "item_list": {"items": [1], "batch_size": 1}, "config": {"results": results}}),
    );
    wait_started(&results, &first);
    let second = submit(
        &s,
        "capped",
        json!({"workers": 2, "item_list": {"items": [1, 2], "batch_size": 1}, "config": {"results": results}}),
    );
    // The only slot is taken: both of the second job's workers wait.
    let stats = wait_for("the second job's workers to wait", DEADLINE, || {
        let j = job(&s, "capped", &second);
        (j["worker_stats"]["pending"] == 2).then(|| j["worker_stats"].clone())
    });
    assert_eq!(stats["running"], 0, "{stats}");
    assert_eq!(stats["initializing"], 0, "{stats}");
    assert_eq!(job(&s, "capped", &second)["status"], "status_running");
    assert!(
        !results.join(format!("started-{second}-0")).exists()
            && !results.join(format!("started-{second}-1")).exists(),
        "no batch of the second job started"
    );
    // Once the first job ends, its slot goes to the second job's workers, one at a time.
    write(&results, "go", "");
    wait_job(&s, "capped", &first, "status_succeeded");
    wait_job(&s, "capped", &second, "status_succeeded");
    let log = s.ok(s.dir.path(), &["logs", "capped", &second]);
    assert!(
        log.contains("at most 1 batch workers at once"),
        "the job's log says why its workers wait: {log}"
    );
}
