//! BatchAPIs: deploy, submit, the seed's job fields and statuses, failures kept as dead letters,
//! retries, timeouts, stop, worker failures, faults (worker and server killed), the queue behind
//! `sqs_url`, command workers, and the CLI's tables.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::harness::{http, wait_for, write, Server, DEADLINE};

/// A BatchAPI named `name` with this predictor (and extra YAML under `predictor:`), deployed.
pub(crate) fn deploy_batch(s: &Server, name: &str, predictor: &str, config_yaml: &str) -> PathBuf {
    let p = s.python_project(name, "BatchAPI", predictor, config_yaml);
    s.ok(&p, &["deploy"]);
    s.wait_status(name, "live");
    p
}

/// `POST /<api>` with `body`; the answer's status and JSON.
pub(crate) fn submit_raw(s: &Server, api: &str, body: &str) -> (u16, Value) {
    let resp = http()
        .post(format!("{}/{api}", s.url))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

/// Submits a job that must be accepted; returns its id.
pub(crate) fn submit(s: &Server, api: &str, body: Value) -> String {
    let (status, v) = submit_raw(s, api, &body.to_string());
    assert_eq!(status, 200, "{v}");
    v["job_id"].as_str().unwrap().to_string()
}

/// `GET /<api>/<job_id>`: the seed's `job_status`.
pub(crate) fn job(s: &Server, api: &str, id: &str) -> Value {
    let resp = http().get(format!("{}/{api}/{id}", s.url)).send().unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().unwrap()["job_status"].clone()
}

/// Waits until the job has ended, and checks that it ended as `status`.
#[track_caller]
pub(crate) fn wait_job(s: &Server, api: &str, id: &str, status: &str) -> Value {
    let ended = wait_for(&format!("job {id} to end"), DEADLINE, || {
        let j = job(s, api, id);
        j.get("end_time").is_some().then_some(j)
    });
    assert_eq!(ended["status"], status, "{ended:#}");
    ended
}

pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Sums each batch into `results/<batch_id>`; `on_job_complete` appends to `results/complete`.
pub(crate) const SUMMER: &str = r#"
import json, os

class PythonPredictor:
    def __init__(self, config, job_spec):
        self.config = config
        self.job_spec = job_spec
        self.out = config["results"]
        with open(os.path.join(self.out, "init-" + str(os.getpid())), "w") as f:
            json.dump({"config": config, "job_spec": job_spec}, f)

    def predict(self, payload, batch_id):
        with open(os.path.join(self.out, batch_id), "w") as f:
            json.dump({"sum": sum(payload), "n": len(payload)}, f)

    def on_job_complete(self):
        with open(os.path.join(self.out, "complete"), "a") as f:
            f.write("done\n")
"#;

#[test]
fn a_job_is_split_into_batches_processed_by_its_workers_and_completed_once() {
    let s = Server::start();
    let p = deploy_batch(
        &s,
        "summer",
        SUMMER,
        "    config:\n      scale: 1\n      keep: api\n",
    );
    let results = p.join("results");
    std::fs::create_dir_all(&results).unwrap();
    let items: Vec<u32> = (1..=25).collect();
    let (status, answer) = submit_raw(
        &s,
        "summer",
        &json!({
            "workers": 3,
            "item_list": {"items": items, "batch_size": 4},
            "config": {"results": results, "scale": 2}
        })
        .to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    for field in [
        "job_id",
        "api_name",
        "workers",
        "batches_per_worker",
        "config",
        "api_id",
        "sqs_url",
        "created_time",
        "total_batch_count",
    ] {
        assert!(answer.get(field).is_some(), "{field} missing: {answer}");
    }
    let id = answer["job_id"].as_str().unwrap().to_string();
    assert_eq!(answer["api_name"], "summer");
    assert_eq!(answer["workers"], 3);
    assert_eq!(answer["total_batch_count"], 7);
    assert_eq!(answer["batches_per_worker"], 3);
    assert_eq!(
        answer["config"],
        json!({"scale": 2, "keep": "api", "results": results}),
        "the job's config goes over predictor.config"
    );
    assert_eq!(
        answer["sqs_url"],
        format!("{}/api/v2/queues/{id}", s.url).as_str()
    );
    let created = answer["created_time"].as_str().unwrap();
    assert!(
        created.len() == "2020-07-16T14:56:10.276007415Z".len() && created.ends_with('Z'),
        "{created}"
    );

    let done = wait_job(&s, "summer", &id, "status_succeeded");
    assert_eq!(
        done["batch_metrics"],
        json!({"succeeded": 7, "failed": 0, "total": 7, "avg_time_per_batch": done["batch_metrics"]["avg_time_per_batch"]})
    );
    assert!(
        done["batch_metrics"]["avg_time_per_batch"]
            .as_f64()
            .unwrap()
            >= 0.0
    );
    assert_eq!(done["batches_in_queue"], 0);
    assert_eq!(done["worker_stats"]["succeeded"], 3);
    assert!(done["start_time"].is_string() && done["end_time"].is_string());

    // Every batch was processed, once each, with the right items.
    let mut total = 0;
    for seq in 0..7 {
        let batch: Value =
            serde_json::from_str(&read(&results.join(format!("{id}-{seq}")))).unwrap();
        total += batch["sum"].as_u64().unwrap();
    }
    assert_eq!(total, (1..=25).sum::<u64>());
    assert_eq!(
        read(&results.join("complete")),
        "done\n",
        "on_job_complete ran once"
    );
    // Three workers, each given the merged config and the seed's job fields.
    let inits: Vec<Value> = std::fs::read_dir(&results)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("init-")
                .then(|| serde_json::from_str(&read(&e.path())).unwrap())
        })
        .collect();
    // Three workers started; one that was still starting when the last batch was done was
    // stopped before its __init__ ran.
    assert!((1..=3).contains(&inits.len()), "{inits:?}");
    for init in &inits {
        assert_eq!(init["config"]["scale"], 2);
        assert_eq!(init["config"]["keep"], "api");
        assert_eq!(init["job_spec"]["job_id"], id.as_str());
        assert_eq!(init["job_spec"]["workers"], 3);
    }

    // The job list, newest first.
    let second = submit(
        &s,
        "summer",
        json!({"workers": 1, "item_list": {"items": [1], "batch_size": 1}, "config": {"results": results}}),
    );
    wait_job(&s, "summer", &second, "status_succeeded");
    let list: Value = http()
        .get(format!("{}/summer", s.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let ids: Vec<&str> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.as_str(), id.as_str()]);
}

#[test]
fn bad_submissions_are_refused_naming_what_to_change() {
    let s = Server::start();
    deploy_batch(&s, "strict", SUMMER, "");
    let cases = [
        ("not json", 400, "not valid JSON"),
        (
            r#"{"item_list": {"items": [1], "batch_size": 1}}"#,
            400,
            "workers: required",
        ),
        (
            r#"{"workers": 0, "item_list": {"items": [1], "batch_size": 1}}"#,
            400,
            "workers: expected a whole number",
        ),
        (r#"{"workers": 1}"#, 400, "item_list: required"),
        (
            r#"{"workers": 1, "item_list": {"items": [], "batch_size": 1}}"#,
            400,
            "item_list.items: is empty",
        ),
        (
            r#"{"workers": 1, "item_list": {"items": [1]}}"#,
            400,
            "item_list.batch_size: required",
        ),
        (
            r#"{"workers": 1, "item_list": {"items": [1], "batch_size": "two"}}"#,
            400,
            "item_list.batch_size: expected a whole number",
        ),
        (
            r#"{"workers": 1, "item_list": {"items": [1], "batch_size": 1}, "config": 3}"#,
            400,
            "config: expected a mapping",
        ),
        (
            r#"{"workers": 1, "item_list": {"items": [1], "batch_size": 1}, "dead_letter": {}}"#,
            400,
            "dead_letter.max_receive_count: required",
        ),
        (
            r#"{"workers": 1, "item_list": {"items": [1], "batch_size": 1}, "wokers": 2}"#,
            400,
            "wokers: unknown field",
        ),
    ];
    for (body, code, needle) in cases {
        let (status, v) = submit_raw(&s, "strict", body);
        assert_eq!(status, code, "{body}: {v}");
        assert_eq!(v["kind"], "bad_request", "{body}: {v}");
        let message = v["message"].as_str().unwrap();
        assert!(
            message.contains(needle),
            "{body}: {needle:?} not in {message:?}"
        );
    }
    // An item over 256 KiB is named by its index.
    let big = "x".repeat(300 * 1024);
    let (status, v) = submit_raw(
        &s,
        "strict",
        &json!({"workers": 1, "item_list": {"items": [1, big], "batch_size": 1}}).to_string(),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("item_list.items[1]: is "),
        "{v}"
    );
    // A body over 10 MB is 413, with the advice to use delimited files.
    let items: Vec<String> = (0..50).map(|_| "y".repeat(220 * 1024)).collect();
    let (status, v) = submit_raw(
        &s,
        "strict",
        &json!({"workers": 1, "item_list": {"items": items, "batch_size": 1}}).to_string(),
    );
    assert_eq!(status, 413, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("delimited_files"),
        "{v}"
    );
    // Nothing was stored by any of them.
    let list: Value = http()
        .get(format!("{}/strict", s.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list["jobs"], json!([]));
    // Unknown jobs are 404; methods other than the seed's are 405.
    let resp = http()
        .get(format!("{}/strict/7fffffffffffffff", s.url))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = http().put(format!("{}/strict", s.url)).send().unwrap();
    assert_eq!(resp.status(), 405);
}

/// Fails the batches whose first item is odd (every delivery), or, with `flaky`, the first
/// delivery of every batch (a marker file remembers it).
const PICKY: &str = r#"
import os

class PythonPredictor:
    def __init__(self, config):
        self.config = config

    def predict(self, payload, batch_id):
        if self.config.get("flaky"):
            marker = os.path.join(self.config["results"], "seen-" + batch_id)
            if not os.path.exists(marker):
                open(marker, "w").close()
                raise RuntimeError("first delivery of " + batch_id + " fails")
            return
        if payload[0] % 2 == 1:
            raise ValueError("odd batch " + str(payload))
"#;

#[test]
fn failed_batches_are_kept_as_dead_letters_and_retried_with_dead_letter() {
    let s = Server::start();
    let p = deploy_batch(&s, "picky", PICKY, "");
    let id = submit(
        &s,
        "picky",
        json!({"workers": 2, "item_list": {"items": [1, 2, 3, 4, 5, 6], "batch_size": 1}}),
    );
    let done = wait_job(&s, "picky", &id, "status_completed_with_failures");
    assert_eq!(done["batch_metrics"]["succeeded"], 3);
    assert_eq!(done["batch_metrics"]["failed"], 3);
    let dead = done["dead_letters"].as_array().unwrap();
    let batches: Vec<u64> = dead.iter().map(|d| d["batch"].as_u64().unwrap()).collect();
    assert_eq!(batches, [0, 2, 4]);
    assert_eq!(
        dead[0]["receive_count"], 1,
        "one delivery without dead_letter"
    );
    let error = dead[0]["error"].as_str().unwrap();
    assert!(error.contains("ValueError: odd batch [1]"), "{error}");
    // The CLI lists them.
    let text = s.ok(&p, &["get", "picky", &id]);
    assert!(text.contains("status: completed with failures"), "{text}");
    assert!(text.contains("failed batches"), "{text}");
    assert!(text.contains(&format!("{id}-2")), "{text}");

    // With dead_letter, a batch that fails once is delivered again and succeeds.
    let results = p.join("results");
    std::fs::create_dir_all(&results).unwrap();
    let id = submit(
        &s,
        "picky",
        json!({
            "workers": 1,
            "item_list": {"items": [1, 2, 3], "batch_size": 1},
            "config": {"flaky": true, "results": results},
            "dead_letter": {"max_receive_count": 2}
        }),
    );
    let done = wait_job(&s, "picky", &id, "status_succeeded");
    assert_eq!(done["batch_metrics"]["succeeded"], 3);
    assert_eq!(done["dead_letters"], json!([]));
}

/// Waits in predict until `results/go` exists (or 60 s), then succeeds.
pub(crate) const GATED: &str = r#"
import os, time

class PythonPredictor:
    def __init__(self, config, job_spec):
        self.results = config["results"]
        with open(os.path.join(self.results, "token"), "w") as f:
            f.write(os.environ["CORTEX_JOB_TOKEN"])

    def predict(self, payload, batch_id):
        with open(os.path.join(self.results, "started-" + batch_id), "w") as f:
            f.write(str(os.getpid()))
        end = time.time() + 60
        while not os.path.exists(os.path.join(self.results, "go")) and time.time() < end:
            time.sleep(0.02)
        with open(os.path.join(self.results, "done-" + batch_id), "a") as f:
            f.write("done\n")
"#;

/// Waits until a gated worker started a batch of job `id`: which one, and the worker's pid.
pub(crate) fn wait_started(results: &Path, id: &str) -> (u32, i32) {
    wait_for("a batch to start", DEADLINE, || {
        (0..64).find_map(|seq| {
            let pid = read(&results.join(format!("started-{id}-{seq}")))
                .parse()
                .ok()?;
            Some((seq, pid))
        })
    })
}

pub(crate) fn gated(s: &Server, name: &str) -> PathBuf {
    let p = deploy_batch(s, name, GATED, "");
    std::fs::create_dir_all(p.join("results")).unwrap();
    p.join("results")
}

#[test]
fn a_job_past_its_timeout_is_timed_out_and_a_stopped_job_stays_stopped() {
    let s = Server::start();
    let results = gated(&s, "slow");
    let id = submit(
        &s,
        "slow",
        json!({"workers": 1, "item_list": {"items": [1, 2], "batch_size": 1}, "config": {"results": results}, "timeout": 1}),
    );
    let done = wait_job(&s, "slow", &id, "status_timed_out");
    assert!(
        done["message"].as_str().unwrap().contains("timeout of 1s"),
        "{done}"
    );

    let id = submit(
        &s,
        "slow",
        json!({"workers": 1, "item_list": {"items": [1, 2], "batch_size": 1}, "config": {"results": results}}),
    );
    let (_, pid) = wait_started(&results, &id);
    let out = s.ok(s.dir.path(), &["delete", "slow", &id]);
    assert_eq!(out, format!("stopped job {id}\n"));
    let stopped = job(&s, "slow", &id);
    assert_eq!(stopped["status"], "status_stopped");
    assert!(stopped["end_time"].is_string());
    // Its worker is gone: the batch it held never finishes.
    wait_for("the worker to exit", DEADLINE, || {
        (unsafe { libc::kill(pid, 0) } != 0).then_some(())
    });
    // Stopping it again is a conflict; an unknown job is 404.
    let resp = http()
        .delete(format!("{}/slow/{id}", s.url))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 409);
    let v: Value = resp.json().unwrap();
    assert!(
        v["message"].as_str().unwrap().contains("already ended"),
        "{v}"
    );
    let resp = http()
        .delete(format!("{}/slow/7fffffffffffffff", s.url))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[test]
fn a_worker_whose_init_fails_ends_the_job_with_worker_error() {
    let s = Server::start();
    deploy_batch(
        &s,
        "broken",
        "class PythonPredictor:\n    def __init__(self, config):\n        raise RuntimeError('no model file')\n\n    def predict(self, payload):\n        pass\n",
        "",
    );
    let id = submit(
        &s,
        "broken",
        json!({"workers": 2, "item_list": {"items": [1, 2], "batch_size": 1}}),
    );
    let done = wait_job(&s, "broken", &id, "status_worker_error");
    let message = done["message"].as_str().unwrap();
    assert!(message.contains("no model file"), "{message}");
    assert!(
        done["worker_stats"]["failed"].as_u64().unwrap() >= 1,
        "{done}"
    );
}

#[test]
fn a_worker_killed_mid_batch_gives_the_batch_back_and_the_job_succeeds() {
    let s = Server::start();
    let results = gated(&s, "sturdy");
    let id = submit(
        &s,
        "sturdy",
        json!({"workers": 1, "item_list": {"items": [1, 2, 3], "batch_size": 1}, "config": {"results": results}}),
    );
    let (seq, pid) = wait_started(&results, &id);
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    std::fs::write(results.join("go"), "").unwrap();
    let done = wait_job(&s, "sturdy", &id, "status_succeeded");
    assert_eq!(done["batch_metrics"]["succeeded"], 3);
    assert_eq!(done["batch_metrics"]["failed"], 0);
    // The killed delivery never finished; the next one did, once.
    assert_eq!(read(&results.join(format!("done-{id}-{seq}"))), "done\n");
}

#[test]
fn a_server_killed_mid_job_resumes_it_and_counts_every_batch_once() {
    let mut s = Server::start();
    let results = gated(&s, "durable");
    let id = submit(
        &s,
        "durable",
        json!({"workers": 2, "item_list": {"items": [1, 2, 3, 4, 5], "batch_size": 1}, "config": {"results": results}}),
    );
    wait_for("a batch on each worker to start", DEADLINE, || {
        let started = (0..5)
            .filter(|seq| results.join(format!("started-{id}-{seq}")).exists())
            .count();
        (started >= 2).then_some(())
    });
    s.kill();
    std::fs::write(results.join("go"), "").unwrap();
    s.restart_after_kill();
    let done = wait_job(&s, "durable", &id, "status_succeeded");
    assert_eq!(done["batch_metrics"]["succeeded"], 5);
    assert_eq!(done["batch_metrics"]["failed"], 0);
    assert_eq!(done["batch_metrics"]["total"], 5);
    for seq in 0..5 {
        assert!(
            results.join(format!("done-{id}-{seq}")).exists(),
            "batch {seq} was processed"
        );
    }
    let log = s.ok(s.dir.path(), &["logs", "durable", &id]);
    assert!(log.contains("the server restarted; resuming job"), "{log}");
    // The server's own log tells a crash from a clean stop.
    let server_log = std::fs::read_to_string(s.dir.path().join("server.log")).unwrap();
    assert!(
        server_log.contains("did not stop cleanly")
            && !server_log.contains("cortex server stopped"),
        "{server_log}"
    );
    assert!(s.stop());
    let server_log = std::fs::read_to_string(s.dir.path().join("server.log")).unwrap();
    assert!(
        server_log.contains("cortex server stopping (SIGTERM)")
            && server_log.contains("cortex server stopped\n"),
        "{server_log}"
    );
}

#[test]
fn the_queue_behind_sqs_url_serves_remote_workers_with_the_job_token() {
    let s = Server::start();
    let results = gated(&s, "remote");
    let items: Vec<u32> = (1..=6).collect();
    let answer: Value = {
        let (status, v) = submit_raw(
            &s,
            "remote",
            &json!({"workers": 1, "item_list": {"items": items, "batch_size": 1}, "config": {"results": results}})
                .to_string(),
        );
        assert_eq!(status, 200);
        v
    };
    let id = answer["job_id"].as_str().unwrap().to_string();
    let sqs = answer["sqs_url"].as_str().unwrap().to_string();
    // The local worker holds the first batches (gated); the job's token is what it was given.
    wait_started(&results, &id);
    let token = read(&results.join("token"));
    let post = |path: &str, token: &str, body: Value| {
        http()
            .post(format!("{sqs}/{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .unwrap()
    };
    assert_eq!(
        post("receive", &s.token, json!({})).status(),
        401,
        "a user token"
    );
    assert_eq!(post("receive", "nonsense", json!({})).status(), 401);
    let got = post("receive?wait_seconds=5", &token, json!({}));
    assert_eq!(got.status(), 200);
    let batch: Value = got.json().unwrap();
    let batch_id = batch["batch_id"].as_str().unwrap().to_string();
    let seq: u32 = batch_id.rsplit_once('-').unwrap().1.parse().unwrap();
    assert_eq!(batch["body"], format!("[{}]", seq + 1), "{batch}");
    assert_eq!(batch["receive_count"], 1);
    let receipt = json!({"batch_id": batch_id, "receipt": batch["receipt"], "duration_ms": 3});
    assert_eq!(post("extend", &token, receipt.clone()).status(), 200);
    assert_eq!(post("ack", &token, receipt.clone()).status(), 200);
    assert_eq!(post("ack", &token, receipt).status(), 409, "acked once");
    let bad = post("ack", &token, json!({"batch_id": "nope", "receipt": "x"}));
    assert_eq!(bad.status(), 400);
    std::fs::write(results.join("go"), "").unwrap();
    let done = wait_job(&s, "remote", &id, "status_succeeded");
    assert_eq!(done["batch_metrics"]["succeeded"], 6);
    assert!(
        !results.join(format!("done-{batch_id}")).exists(),
        "the batch the remote worker acked was not delivered again"
    );
    // Once the job ended its token no longer works.
    assert_eq!(post("receive", &token, json!({})).status(), 401);
}

#[test]
fn a_command_worker_gets_batches_on_post_with_the_job_id() {
    let s = Server::start();
    let p = s.project("cmd-batch");
    write(
        &p,
        "worker.py",
        r#"
import http.server, json, os

OUT = os.environ["RESULTS"]

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/on-job-complete":
            open(os.path.join(OUT, "complete"), "a").write("done\n")
        else:
            job = self.headers["X-Cortex-Job-ID"]
            with open(os.path.join(OUT, job + "-" + str(sum(json.loads(body)))), "w") as f:
                f.write(body.decode())
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(os.environ["CORTEX_PORT"])), H).serve_forever()
"#,
    );
    let results = p.join("results");
    std::fs::create_dir_all(&results).unwrap();
    write(
        &p,
        "cortex.yaml",
        &format!(
            "- name: cmd-batch\n  kind: BatchAPI\n  predictor:\n    type: command\n    command: [python3, worker.py]\n    env:\n      RESULTS: {}\n",
            results.display()
        ),
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("cmd-batch", "live");
    let id = submit(
        &s,
        "cmd-batch",
        json!({"workers": 2, "item_list": {"items": [1, 2, 3, 4], "batch_size": 2}}),
    );
    wait_job(&s, "cmd-batch", &id, "status_succeeded");
    assert_eq!(read(&results.join(format!("{id}-3"))), "[1,2]");
    assert_eq!(read(&results.join(format!("{id}-7"))), "[3,4]");
    let log = s.logs_with(&p, &["cmd-batch", &id], "on_job_complete ran on worker");
    assert_eq!(read(&results.join("complete")), "done\n", "{log}");
}

/// Serves `body` to every GET on a loopback port (one thread per connection); the URL.
fn serve_file(body: String) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/items.jsonl", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let body = body.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let head = if buf.starts_with(b"GET /missing") {
                    "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        .to_string()
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    )
                };
                let _ = conn.write_all(head.as_bytes());
                if head.starts_with("HTTP/1.1 200") {
                    let _ = conn.write_all(body.as_bytes());
                }
            });
        }
    });
    url
}

#[test]
fn delimited_files_stream_from_urls_and_the_data_root_and_nothing_else() {
    let root = tempfile::tempdir().unwrap();
    // The files are served on loopback, which the operator has to allow.
    let s = Server::start_with_args(
        "127.0.0.1:0",
        &[("CORTEX_DATA_ROOT", root.path().to_str().unwrap())],
        &["--allow-fetch", "127.0.0.1/32"],
    );
    let p = deploy_batch(&s, "files", SUMMER, "");
    let results = p.join("results");
    std::fs::create_dir_all(&results).unwrap();
    // 1..=10 over HTTP (with a blank line), 11..=15 from a file under the data root.
    let url = serve_file((1..=10).map(|i| format!("{i}\n")).collect::<String>() + "\n");
    std::fs::create_dir(root.path().join("in")).unwrap();
    write(
        root.path(),
        "in/more.jsonl",
        &(11..=15).map(|i| format!("{i}\n")).collect::<String>(),
    );
    let (status, answer) = submit_raw(
        &s,
        "files",
        &json!({
            "workers": 2,
            "delimited_files": {"paths": [url, "in/more.jsonl"], "batch_size": 4},
            "config": {"results": results}
        })
        .to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    let id = answer["job_id"].as_str().unwrap();
    let done = wait_job(&s, "files", id, "status_succeeded");
    assert_eq!(
        done["batch_metrics"]["total"], 4,
        "15 items in batches of 4"
    );
    let mut total = 0;
    for seq in 0..4 {
        let batch: Value =
            serde_json::from_str(&read(&results.join(format!("{id}-{seq}")))).unwrap();
        total += batch["sum"].as_u64().unwrap();
    }
    assert_eq!(total, (1..=15).sum::<u64>());
    let log = s.ok(&p, &["logs", "files", id]);
    assert!(
        log.contains("partitioning 15 items found in 2 file(s) into 4 batches of size 4"),
        "{log}"
    );

    // Outside the data root, or escaping it: 403, and no job.
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret.jsonl", "1\n");
    for path in [
        outside.path().join("secret.jsonl").display().to_string(),
        "../secret.jsonl".to_string(),
        "in/../../secret.jsonl".to_string(),
    ] {
        let (status, v) = submit_raw(
            &s,
            "files",
            &json!({"workers": 1, "delimited_files": {"paths": [path], "batch_size": 1}})
                .to_string(),
        );
        assert_eq!(status, 403, "{path}: {v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("outside the server's data root"),
            "{v}"
        );
    }
    let (status, v) = submit_raw(
        &s,
        "files",
        &json!({"workers": 1, "delimited_files": {"paths": ["s3://bucket/a"], "batch_size": 1}})
            .to_string(),
    );
    assert_eq!(status, 400, "{v}");

    // A source that cannot be read ends the job as status_enqueue_failed, saying which.
    let missing = url.replace("/items.jsonl", "/missing.jsonl");
    let id = submit(
        &s,
        "files",
        json!({"workers": 1, "delimited_files": {"paths": [missing], "batch_size": 1}}),
    );
    let failed = wait_job(&s, "files", &id, "status_enqueue_failed");
    assert!(
        failed["message"].as_str().unwrap().contains("answered 404"),
        "{failed}"
    );
    write(root.path(), "in/bad.jsonl", "1\n{oops\n");
    let id = submit(
        &s,
        "files",
        json!({"workers": 1, "delimited_files": {"paths": ["in/bad.jsonl"], "batch_size": 1}}),
    );
    let failed = wait_job(&s, "files", &id, "status_enqueue_failed");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("bad.jsonl line 2: not a JSON value"),
        "{failed}"
    );
}

#[test]
fn a_server_without_a_data_root_reads_no_local_files() {
    let s = Server::start();
    deploy_batch(&s, "urls-only", SUMMER, "");
    let (status, v) = submit_raw(
        &s,
        "urls-only",
        &json!({"workers": 1, "delimited_files": {"paths": ["/etc/passwd"], "batch_size": 1}})
            .to_string(),
    );
    assert_eq!(status, 403, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("--data-root"),
        "{v}"
    );
}

#[test]
fn a_submission_on_a_nearly_full_disk_is_507_and_stores_nothing() {
    let mut s = Server::start();
    deploy_batch(&s, "tight", SUMMER, "");
    s.set_env("CORTEX_MIN_FREE_DISK_MB", "999999999999");
    s.restart();
    s.wait_status("tight", "live");
    let (status, v) = submit_raw(
        &s,
        "tight",
        &json!({"workers": 1, "item_list": {"items": [1, 2], "batch_size": 1}}).to_string(),
    );
    assert_eq!(status, 507, "{v}");
    assert_eq!(v["kind"], "insufficient_storage");
    assert!(
        v["message"].as_str().unwrap().contains("free some space"),
        "{v}"
    );
    let list: Value = http()
        .get(format!("{}/tight", s.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list["jobs"], json!([]), "no half job");
}

#[test]
fn the_cli_shows_batch_apis_their_jobs_and_one_job_as_cortex_does() {
    let s = Server::start();
    let p = deploy_batch(&s, "tables", PICKY, "");
    let empty = s.ok(&p, &["get", "tables"]);
    assert!(
        empty.starts_with("no submitted jobs\n\nendpoint: "),
        "{empty}"
    );
    let id = submit(
        &s,
        "tables",
        json!({"workers": 1, "item_list": {"items": [1, 2, 4, 6], "batch_size": 1}}),
    );
    wait_job(&s, "tables", &id, "status_completed_with_failures");
    let filters = vec![
        (r"127\.0\.0\.1:\d+", "[HOST]"),
        (r"\b[0-9a-f]{16}\b", "[JOB_ID]"),
        (r"\d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} UTC", "[TIME]"),
        (r"\d{4}-\d{2}-\d{2}T[\d:.]+Z", "[RFC3339]"),
        (
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "[MODEL_ID]",
        ),
        (r"\b\d+(\.\d+)?m?s\b", "[DURATION]"),
        (
            r"submitted \d+[smhd] ago\)\s+\d+[smhd]",
            "submitted [AGE] ago)   [AGE]",
        ),
        (r"line \d+, in", "line [N], in"),
        // A table's columns are as wide as what they hold, times and ages included.
        (r"(\S) {2,}", "$1   "),
    ];
    let list = s.ok(&p, &["get"]);
    let api = s.ok(&p, &["get", "tables"]);
    let one = s.ok(&p, &["get", "tables", &id]);
    insta::with_settings!({filters => filters}, {
        insta::assert_snapshot!("batch_list", list);
        insta::assert_snapshot!("batch_api", api);
        insta::assert_snapshot!("batch_job", one);
    });
    // -o json is the seed's object.
    let json: Value =
        serde_json::from_str(&s.ok(&p, &["get", "tables", &id, "-o", "json"])).unwrap();
    assert_eq!(json["job_status"]["job_id"], id.as_str());
    assert_eq!(json["job_status"]["batch_metrics"]["failed"], 1);
    let yaml = s.ok(&p, &["get", "tables", &id, "-o", "yaml"]);
    assert!(
        yaml.contains("status: status_completed_with_failures"),
        "{yaml}"
    );
}

#[test]
fn logs_follow_a_job_until_it_ends_and_deleting_an_api_with_running_jobs_asks_first() {
    let s = Server::start();
    let results = gated(&s, "followed");
    let id = submit(
        &s,
        "followed",
        json!({"workers": 2, "item_list": {"items": [1, 2, 3], "batch_size": 1}, "config": {"results": results}}),
    );
    let mut follower = crate::harness::KillOnDrop(
        s.cortex()
            .args(["logs", "followed", &id, "-f"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = crate::harness::line_channel(follower.0.stdout.take().unwrap());
    let mut seen = crate::harness::wait_line(
        &lines,
        "partitioning 3 items found in job submission into 3 batches of size 1",
    );
    seen.extend(crate::harness::wait_line(&lines, "[w1] "));
    // Deleting the API while the job runs is asked first; -y goes ahead and stops it.
    let out = s.run(s.dir.path(), &["delete", "followed"]);
    crate::harness::assert_refused(&out, "followed has 1 running job; deleting it stops it");
    std::fs::write(results.join("go"), "").unwrap();
    seen.extend(crate::harness::wait_line(
        &lines,
        &format!("job {id} succeeded"),
    ));
    assert!(seen.iter().any(|l| l.starts_with("[w0] ")), "{seen:?}");
    // The follower ends with the job.
    wait_for("logs -f to end with the job", DEADLINE, || {
        follower.0.try_wait().unwrap()
    });
    let out = s.ok(s.dir.path(), &["delete", "followed"]);
    assert_eq!(out, "deleting followed\n", "no running job: no question");

    let results = gated(&s, "stopped-by-delete");
    let id = submit(
        &s,
        "stopped-by-delete",
        json!({"workers": 1, "item_list": {"items": [1], "batch_size": 1}, "config": {"results": results}}),
    );
    let (_, pid) = wait_started(&results, &id);
    let mut follower = s
        .cortex()
        .args(["logs", "stopped-by-delete", &id, "-f"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Deleted once the follower streams (not before its request reaches the server).
    let lines = crate::harness::line_channel(follower.stdout.take().unwrap());
    crate::harness::wait_line(&lines, "partitioning");
    let out = s.ok(s.dir.path(), &["delete", "stopped-by-delete", "-y"]);
    assert_eq!(out, "deleting stopped-by-delete\n");
    // A follower of its job hears why its stream ended.
    let followed = follower.wait_with_output().unwrap();
    assert!(
        crate::harness::stderr(&followed)
            .contains("stopped-by-delete was deleted: no more logs will come"),
        "{}",
        crate::harness::stderr(&followed)
    );
    wait_for("the job's worker to be stopped", DEADLINE, || {
        (unsafe { libc::kill(pid, 0) } != 0).then_some(())
    });
}

#[test]
fn logs_of_a_job_with_tail_give_the_last_lines_of_each_source() {
    let s = Server::start();
    deploy_batch(
        &s,
        "tailed",
        "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload, batch_id):\n        for i in range(5):\n            print('batch', payload, 'line', i)\n",
        "",
    );
    let id = submit(
        &s,
        "tailed",
        json!({"workers": 1, "item_list": {"items": [1, 2, 3], "batch_size": 1}}),
    );
    wait_job(&s, "tailed", &id, "status_succeeded");
    let split = |log: &str| -> (Vec<String>, Vec<String>) {
        let (worker, server): (Vec<&str>, Vec<&str>) =
            log.lines().partition(|l| l.starts_with("[w0] "));
        let owned = |v: Vec<&str>| v.into_iter().map(str::to_string).collect();
        (owned(server), owned(worker))
    };
    let last = |v: &[String], n: usize| v[v.len().saturating_sub(n)..].to_vec();
    // The worker may still be writing its last lines as it stops: compared until it is quiet.
    wait_for("the last 2 lines of each source", DEADLINE, || {
        let full = s.ok(s.dir.path(), &["logs", "tailed", &id]);
        let tail = s.ok(s.dir.path(), &["logs", "tailed", &id, "--tail", "2"]);
        let (server, worker) = split(&full);
        assert!(server.len() > 2 && worker.len() > 2, "{full}");
        let (tail_server, tail_worker) = split(&tail);
        (tail_server == last(&server, 2) && tail_worker == last(&worker, 2)).then_some(())
    });
    let tail = s.ok(s.dir.path(), &["logs", "tailed", &id, "--tail", "2"]);
    assert!(!tail.contains("batch 1 line 0"), "{tail}");
}

#[test]
fn beyond_loopback_anyone_may_submit_to_a_public_batch_api_but_only_writers_stop_jobs() {
    let s = Server::start_on("0.0.0.0:0");
    let p = deploy_batch(&s, "open", GATED, "");
    let results = p.join("results");
    std::fs::create_dir_all(&results).unwrap();
    let body = json!({"workers": 1, "item_list": {"items": [1], "batch_size": 1}, "config": {"results": results}});
    let (status, _) = submit_raw(&s, "open", &body.to_string());
    assert_eq!(status, 401, "private: a caller is needed");
    s.ok(&p, &["access", "open", "--access", "public"]);
    let (status, v) = submit_raw(&s, "open", &body.to_string());
    assert_eq!(status, 200, "{v}");
    let id = v["job_id"].as_str().unwrap();
    let stop = |token: Option<&str>| {
        let mut req = http().delete(format!("{}/open/{id}", s.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().unwrap().status().as_u16()
    };
    assert_eq!(stop(None), 401, "stopping needs a caller");
    assert_eq!(stop(Some(&s.token)), 200, "the owner stops it");
}

#[test]
fn on_loopback_a_token_sent_is_checked_and_require_tokens_lets_no_one_in_without_one() {
    let s = Server::start();
    let p = deploy_batch(&s, "summer", GATED, "");
    let results = p.join("results");
    std::fs::create_dir_all(&results).unwrap();
    let bob = crate::permissions::user(&s, "bob");
    let body = json!({"workers": 1, "item_list": {"items": [1], "batch_size": 1}, "config": {"results": results}});
    // Without a token, on loopback, as cortex's local mode: the job is submitted.
    let id = submit(&s, "summer", body.clone());
    let call = |method: reqwest::Method, path: &str, token: Option<&str>| {
        let mut req = http().request(method, format!("{}{path}", s.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().unwrap().status().as_u16()
    };
    // A token sent is never ignored: a wrong one is 401, and bob (no access to the
    // admin's private API) is 403, wherever he calls it.
    let stop = format!("/summer/{id}");
    let by_query = format!("/summer?jobID={id}");
    for (method, path) in [
        (reqwest::Method::DELETE, stop.as_str()),
        (reqwest::Method::DELETE, by_query.as_str()),
        (reqwest::Method::GET, stop.as_str()),
        (reqwest::Method::GET, "/summer"),
        (reqwest::Method::POST, "/summer"),
    ] {
        assert_eq!(
            call(method.clone(), path, Some("ctx_u_made_up")),
            401,
            "{method} {path}"
        );
        assert_eq!(
            call(method.clone(), path, Some(&bob)),
            403,
            "{method} {path}"
        );
    }
    assert_eq!(job(&s, "summer", &id)["status"], "status_running");
    assert_eq!(call(reqwest::Method::DELETE, &stop, Some(&s.token)), 200);
    assert_eq!(job(&s, "summer", &id)["status"], "status_stopped");
    assert_eq!(
        call(reqwest::Method::GET, "/metrics", Some("ctx_u_made_up")),
        401
    );
    assert_eq!(call(reqwest::Method::GET, "/metrics", Some(&bob)), 403);
    assert_eq!(call(reqwest::Method::GET, "/metrics", None), 200);

    // With --require-tokens, a loopback server lets no one in without a token.
    let strict = Server::start_with_args("127.0.0.1:0", &[], &["--require-tokens"]);
    let p = deploy_batch(&strict, "summer", GATED, "");
    let results = p.join("results");
    std::fs::create_dir_all(&results).unwrap();
    let body = json!({"workers": 1, "item_list": {"items": [1], "batch_size": 1}, "config": {"results": results}});
    let (status, v) = submit_raw(&strict, "summer", &body.to_string());
    assert_eq!(status, 401, "{v}");
    for path in ["/summer", "/metrics"] {
        let resp = http().get(format!("{}{path}", strict.url)).send().unwrap();
        assert_eq!(resp.status(), 401, "GET {path}");
    }
}

#[test]
fn a_worker_that_keeps_crashing_ends_the_job_with_worker_error() {
    let s = Server::start();
    deploy_batch(
        &s,
        "crashy",
        "import os\n\nclass PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload, batch_id):\n        os._exit(7)\n",
        "",
    );
    let id = submit(
        &s,
        "crashy",
        json!({"workers": 1, "item_list": {"items": [1, 2, 3], "batch_size": 1}}),
    );
    let done = wait_job(&s, "crashy", &id, "status_worker_error");
    let message = done["message"].as_str().unwrap();
    assert!(message.contains("exited with status 7"), "{message}");
    assert_eq!(done["batch_metrics"]["succeeded"], 0);
}

#[test]
fn a_worker_killed_for_memory_ends_the_job_with_worker_oom() {
    let s = Server::start();
    let p = s.python_project(
        "hog",
        "BatchAPI",
        "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload, batch_id):\n        self.blob = b'x' * (400 << 20)\n",
        "  compute:\n    mem: 100Mi\n",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("hog", "live");
    let id = submit(
        &s,
        "hog",
        json!({"workers": 1, "item_list": {"items": [1, 2], "batch_size": 1}}),
    );
    let done = wait_job(&s, "hog", &id, "status_worker_oom");
    let message = done["message"].as_str().unwrap();
    assert!(
        message.contains("out of memory") && message.contains("compute.mem allows 100MiB"),
        "{message}"
    );
    assert_eq!(done["batch_metrics"]["succeeded"], 0);
    assert_eq!(done["worker_stats"]["failed"], 1, "{done:#}");
    let text = s.ok(&p, &["get", "hog", &id]);
    assert!(text.contains("out of memory"), "{text}");
}
