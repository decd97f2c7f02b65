//! `cortex predict API JSON_FILE`, as cortex had it through v0.25.

use crate::harness::*;

#[test]
fn predict_posts_the_file_and_prints_the_answer() {
    let s = Server::start();
    let p = s.python_project(
        "doubler",
        "RealtimeAPI",
        "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        if payload.get('x') is None:\n            raise ValueError('no x')\n        return {'double': payload['x'] * 2}\n",
        "",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("doubler", "live");
    write(&p, "sample.json", r#"{"x": 21}"#);
    assert_eq!(
        s.ok(&p, &["predict", "doubler", "sample.json"]),
        "{\"double\": 42}\n"
    );
    // The predictor's failure: exit 1, with the status and why.
    write(&p, "empty.json", "{}");
    let out = s.run(&p, &["predict", "doubler", "empty.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("doubler answered 500"),
        "{}",
        stderr(&out)
    );
    // A file that is not JSON, and an api that is not deployed.
    write(&p, "bad.json", "{x");
    assert_refused(
        &s.run(&p, &["predict", "doubler", "bad.json"]),
        "bad.json is not JSON",
    );
    assert_refused(
        &s.run(&p, &["predict", "nothing", "sample.json"]),
        "api nothing is not deployed",
    );
}

#[test]
fn refresh_replaces_every_replica_while_predictions_keep_succeeding() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    let s = Server::start();
    let p = s.python_project(
        "steady",
        "RealtimeAPI",
        "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return 'ok'\n",
        "  autoscaling:\n    min_replicas: 2\n    max_replicas: 2\n",
    );
    s.ok(&p, &["deploy"]);
    let ids = |api: &serde_json::Value| -> Vec<String> {
        api["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let before = wait_for("two ready replicas", DEADLINE, || {
        s.api_json("steady")
            .filter(|a| a["status"] == "live" && a["up_to_date"] == 2)
    });
    let old = ids(&before);
    let (stop, ok, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let load = {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), s.url.clone());
        std::thread::spawn(move || {
            let client = http();
            while !stop.load(Ordering::Relaxed) {
                let resp = client
                    .post(format!("{url}/steady"))
                    .header("content-type", "application/json")
                    .body("{}")
                    .send();
                match resp {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    let out = s.ok(&p, &["refresh", "steady"]);
    assert!(out.contains("refreshing steady"), "{out}");
    wait_for("every replica to be replaced", DEADLINE, || {
        s.api_json("steady").filter(|a| {
            let now = ids(a);
            a["status"] == "live"
                && a["up_to_date"] == 2
                && now.len() == 2
                && now.iter().all(|id| !old.contains(id))
        })
    });
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "a prediction failed during the refresh"
    );
    assert!(ok.load(Ordering::Relaxed) > 0);
    // A BatchAPI has no replicas to refresh.
    let b = s.python_project(
        "jobs",
        "BatchAPI",
        "class PythonPredictor:\n    def __init__(self, config, job_spec):\n        pass\n\n    def predict(self, payload, batch_id):\n        pass\n",
        "",
    );
    s.ok(&b, &["deploy"]);
    assert_refused(
        &s.run(&b, &["refresh", "jobs"]),
        "only a RealtimeAPI's replicas are refreshed",
    );
    // Nor logs of its own: each job has them.
    assert_refused(
        &s.run(&b, &["logs", "jobs"]),
        "`cortex logs jobs JOB_ID` shows one",
    );
}

/// An update still starting holds a refresh back (409, saying how to override it);
/// `--force` refreshes the spec anyway, the version that serves serving until it is ready, as
/// upstream's `cortex refresh -f` does.
#[test]
fn refresh_force_overrides_an_update_in_progress() {
    let s = Server::start();
    let p = s.project("gated");
    let gate = s.dir.path().join("gate");
    write(
        &p,
        "predictor.py",
        "import os, time\n\nclass PythonPredictor:\n    def __init__(self, config):\n        while config['v'] > 1 and not os.path.exists(config['gate']):\n            time.sleep(0.05)\n        self.v = config['v']\n\n    def predict(self, payload):\n        return {'v': self.v}\n",
    );
    let config = |v: u32| {
        format!(
            "- name: gated\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    config:\n      v: {v}\n      gate: {}\n",
            gate.display()
        )
    };
    write(&p, "cortex.yaml", &config(1));
    s.ok(&p, &["deploy"]);
    s.wait_status("gated", "live");
    write(&p, "cortex.yaml", &config(2));
    s.ok(&p, &["deploy"]);
    let updating = s.wait_status("gated", "updating");
    let stuck: Vec<String> = updating["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["up_to_date"] == true)
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stuck.len(), 1, "{updating}");
    assert_refused(
        &s.run(&p, &["refresh", "gated"]),
        "cortex refresh gated --force",
    );

    let out = s.ok(&p, &["refresh", "gated", "--force"]);
    assert!(out.contains("refreshing gated"), "{out}");
    assert_eq!(
        s.predict("gated", "{}")
            .json::<serde_json::Value>()
            .unwrap()["v"],
        1
    );
    std::fs::write(&gate, "").unwrap();
    let api = wait_for("the refreshed version to serve alone", DEADLINE, || {
        s.api_json("gated").filter(|a| {
            a["status"] == "live" && a["replicas"].as_array().is_some_and(|r| r.len() == 1)
        })
    });
    let id = api["replicas"][0]["id"].as_str().unwrap();
    assert!(!stuck.iter().any(|s| s == id), "{api}");
    assert_eq!(
        s.predict("gated", "{}")
            .json::<serde_json::Value>()
            .unwrap()["v"],
        2
    );
}
