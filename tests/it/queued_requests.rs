//! Requests waiting in an API's queue (every replica at `max_replica_concurrency`, or the API
//! starting from zero) follow what serves their route: the version a redeploy or a refresh
//! brings answers them, and a delete answers them at once. They used to wait for the version
//! they came to, which was gone, until their timeout (504).

use std::path::Path;
use std::sync::mpsc;
use std::thread;

use crate::harness::{http, wait_for, Server, DEADLINE};

/// Waits for `gate` (in `dir`) before answering `<version>`; says when a prediction started.
fn gated(dir: &Path, version: u32) -> String {
    format!(
        "import os, time, uuid\n\nclass PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        open(os.path.join({dir:?}, 'started-' + uuid.uuid4().hex), 'w').close()\n        while not os.path.exists(os.path.join({dir:?}, 'gate')):\n            time.sleep(0.02)\n        return 'v{version}'\n",
        dir = dir.display().to_string()
    )
}

const ONE_AT_A_TIME: &str = "  autoscaling:\n    min_replicas: 1\n    max_replicas: 1\n    max_replica_concurrency: 1\n    target_replica_concurrency: 1\n  networking:\n    timeout: 30s\n";

/// Sends a prediction on a thread of its own; its status and body come on `tx`.
fn send(url: &str, tx: &mpsc::Sender<(u16, String)>) -> thread::JoinHandle<()> {
    let (url, tx) = (url.to_string(), tx.clone());
    thread::spawn(move || {
        let answer = http()
            .post(&url)
            .body("{}")
            .send()
            .map(|r| (r.status().as_u16(), r.text().unwrap_or_default()));
        tx.send(answer.unwrap_or((0, "no answer".into()))).unwrap();
    })
}

/// The API's `cortex_requests_queued` from `/metrics`.
fn queued(s: &Server, api: &str) -> u32 {
    let text = http()
        .get(format!("{}/metrics", s.url))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("cortex_requests_queued") && l.contains(&format!("api=\"{api}\"")))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map_or(0, |v| v as u32)
}

/// One request in predict on the only replica, two more waiting behind it.
fn one_busy_two_queued(
    s: &Server,
    dir: &Path,
    api: &str,
) -> (mpsc::Receiver<(u16, String)>, Vec<thread::JoinHandle<()>>) {
    let url = format!("{}/{api}", s.url);
    let (tx, rx) = mpsc::channel();
    let mut sent = vec![send(&url, &tx)];
    wait_for("the first request in predict", DEADLINE, || {
        (std::fs::read_dir(dir).ok()?.count() == 1).then_some(())
    });
    sent.push(send(&url, &tx));
    sent.push(send(&url, &tx));
    wait_for("two requests queued", DEADLINE, || {
        (queued(s, api) == 2).then_some(())
    });
    (rx, sent)
}

#[test]
fn queued_requests_are_answered_by_the_version_a_redeploy_brings() {
    let s = Server::start();
    let (dir1, dir2) = (s.dir.path().join("gate1"), s.dir.path().join("gate2"));
    std::fs::create_dir_all(&dir1).unwrap();
    std::fs::create_dir_all(&dir2).unwrap();
    std::fs::write(dir2.join("gate"), "").unwrap();
    let p = s.python_project("line", "RealtimeAPI", &gated(&dir1, 1), ONE_AT_A_TIME);
    s.ok(&p, &["deploy"]);
    s.wait_status("line", "live");
    let (rx, sent) = one_busy_two_queued(&s, &dir1, "line");
    // Version 2 answers at once: the two waiting get it while version 1 is still busy.
    std::fs::write(p.join("predictor.py"), gated(&dir2, 2)).unwrap();
    s.ok(&p, &["deploy"]);
    for _ in 0..2 {
        let answer = rx.recv_timeout(DEADLINE).unwrap();
        assert_eq!(answer, (200, "v2".to_string()));
    }
    std::fs::write(dir1.join("gate"), "").unwrap();
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), (200, "v1".to_string()));
    for t in sent {
        t.join().unwrap();
    }
}

#[test]
fn queued_requests_of_a_deleted_api_are_answered_404_at_once() {
    let s = Server::start();
    let dir = s.dir.path().join("gate");
    std::fs::create_dir_all(&dir).unwrap();
    let p = s.python_project("doomed", "RealtimeAPI", &gated(&dir, 1), ONE_AT_A_TIME);
    s.ok(&p, &["deploy"]);
    s.wait_status("doomed", "live");
    let (rx, sent) = one_busy_two_queued(&s, &dir, "doomed");
    let deleting = {
        let (p, cortex) = (p.clone(), s.cortex());
        thread::spawn(move || {
            let mut cortex = cortex;
            cortex
                .current_dir(p)
                .args(["delete", "doomed", "-y"])
                .output()
                .unwrap()
        })
    };
    // The two waiting hear that it is gone, while the one in predict still runs.
    for _ in 0..2 {
        let (status, body) = rx.recv_timeout(DEADLINE).unwrap();
        assert_eq!(status, 404, "{body}");
        assert!(body.contains("no api is deployed at /doomed"), "{body}");
    }
    std::fs::write(dir.join("gate"), "").unwrap();
    assert!(deleting.join().unwrap().status.success());
    let _ = rx.recv_timeout(DEADLINE).unwrap();
    for t in sent {
        t.join().unwrap();
    }
}

#[test]
fn requests_waiting_for_a_start_from_zero_are_answered_by_the_version_a_redeploy_brings() {
    let s = Server::start();
    let stuck = s.dir.path().join("stuck");
    // Version 1 starts at once, until `stuck` exists; version 2 always does.
    let v1 = format!(
        "import os, time\n\nclass PythonPredictor:\n    def __init__(self, config):\n        while os.path.exists({stuck:?}):\n            time.sleep(0.05)\n\n    def predict(self, payload):\n        return 'v1'\n",
        stuck = stuck.display().to_string()
    );
    let from_zero = "  autoscaling:\n    min_replicas: 0\n    max_replicas: 1\n    window: 10s\n    downscale_stabilization_period: 2s\n  networking:\n    timeout: 30s\n";
    let p = s.python_project("sleepy", "RealtimeAPI", &v1, from_zero);
    s.ok(&p, &["deploy"]);
    s.wait_status("sleepy", "live");
    wait_for("sleepy at zero replicas", DEADLINE, || {
        let v = s.api_json("sleepy")?;
        (v["requested"] == 0 && v["replicas"].as_array()?.is_empty()).then_some(())
    });
    std::fs::write(&stuck, "").unwrap();
    let url = format!("{}/sleepy", s.url);
    let (tx, rx) = mpsc::channel();
    let sent = vec![send(&url, &tx), send(&url, &tx)];
    wait_for("two requests waiting", DEADLINE, || {
        (queued(&s, "sleepy") == 2).then_some(())
    });
    let v2 = "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return 'v2'\n";
    std::fs::write(p.join("predictor.py"), v2).unwrap();
    s.ok(&p, &["deploy", "--force"]);
    for _ in 0..2 {
        assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), (200, "v2".to_string()));
    }
    for t in sent {
        t.join().unwrap();
    }
}
