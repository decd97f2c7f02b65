//! RealtimeAPIs at production grade: autoscaling up and down under load, scale to zero and
//! the cold start that answers the next request, rolling updates under load without a failed
//! request, and admission control (503 when over capacity, 413, 504).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use crate::harness::{http, wait_for, write, Server, DEADLINE};

/// A python RealtimeAPI named `name` with this predictor and extra YAML for the API.
fn python_api(s: &Server, name: &str, predictor: &str, extra_yaml: &str) -> PathBuf {
    s.python_project(name, "RealtimeAPI", predictor, extra_yaml)
}

/// Answers `<version>` after `delay` seconds.
fn slow_predictor(version: u32, delay: f64) -> String {
    format!(
        "import time\n\nclass PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        time.sleep({delay})\n        return 'v{version}'\n"
    )
}

/// `threads` clients sending predictions in a loop until told to stop; counts the answers
/// by status and remembers the bodies of successful ones.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU32>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    last_body: Arc<std::sync::Mutex<String>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU32::new(0));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let last_body = Arc::new(std::sync::Mutex::new(String::new()));
        let threads = (0..threads)
            .map(|_| {
                let (url, stop, ok, failed, last_body) = (
                    url.clone(),
                    stop.clone(),
                    ok.clone(),
                    failed.clone(),
                    last_body.clone(),
                );
                thread::spawn(move || {
                    let client = http();
                    while !stop.load(Ordering::Relaxed) {
                        match client.post(&url).body("{}").send() {
                            Ok(r) if r.status() == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                *last_body.lock().unwrap() = r.text().unwrap_or_default();
                            }
                            Ok(r) => failed.lock().unwrap().push(format!(
                                "{}: {}",
                                r.status(),
                                r.text().unwrap_or_default()
                            )),
                            Err(e) => failed.lock().unwrap().push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            last_body,
            threads,
        }
    }

    fn last_body(&self) -> String {
        self.last_body.lock().unwrap().clone()
    }

    /// Stops the clients; the failures they saw.
    fn finish(self) -> (u32, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let failed = self.failed.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failed)
    }

    /// Stops the clients, asserting that none of their requests failed.
    fn finish_without_failures(self) {
        let (ok, failed) = self.finish();
        assert!(
            failed.is_empty(),
            "{} failed of {}: {failed:?}",
            failed.len(),
            ok
        );
    }
}

fn replicas(v: &serde_json::Value) -> usize {
    v["replicas"].as_array().map_or(0, Vec::len)
}

#[test]
fn an_api_scales_up_under_load_and_back_down_once_it_stops() {
    let s = Server::start();
    let p = python_api(
        &s,
        "elastic",
        &slow_predictor(1, 0.05),
        "  autoscaling:\n    min_replicas: 1\n    max_replicas: 2\n    window: 10s\n    upscale_stabilization_period: 0s\n    downscale_stabilization_period: 3s\n",
    );
    let out = s.ok(&p, &["deploy"]);
    let first: Vec<&str> = out.lines().take(2).collect();
    assert_eq!(
        first,
        [
            "creating elastic (RealtimeAPI)",
            &format!("endpoint: {}/elastic", s.url)
        ],
        "deploy says where the api answers: {out}"
    );
    s.wait_status("elastic", "live");
    assert_eq!(s.api_json("elastic").unwrap()["requested"], 1);

    // A follower of its logs takes in the replica that starts.
    let mut follow = s
        .cortex()
        .args(["logs", "elastic", "-f"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = crate::harness::line_channel(follow.stdout.take().unwrap());
    crate::harness::wait_line(&lines, "loading the predictor");

    let load = Load::start(format!("{}/elastic", s.url), 4);
    let api = wait_for("a second replica, ready", DEADLINE, || {
        let v = s.api_json("elastic")?;
        (v["requested"] == 2 && v["up_to_date"] == 2).then_some(v)
    });
    let second = api["replicas"][1]["id"].as_str().unwrap().to_string();
    let short = second.strip_prefix("elastic-").unwrap();
    crate::harness::wait_line(
        &lines,
        &format!("cortex: elastic started a replica; following its new replica [{short}]"),
    );
    crate::harness::wait_line(&lines, &format!("[{short}] "));
    let _ = follow.kill();
    let _ = follow.wait();
    let (ok, failed) = load.finish();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(ok > 0);

    wait_for("back to one replica", DEADLINE, || {
        let v = s.api_json("elastic")?;
        (v["requested"] == 1 && replicas(&v) == 1 && v["status"] == "live").then_some(())
    });
    assert_eq!(s.predict("elastic", "{}").text().unwrap(), "v1");
}

#[test]
fn an_api_with_min_replicas_0_scales_to_zero_and_its_next_request_is_answered() {
    let s = Server::start();
    let p = python_api(
        &s,
        "sleepy",
        &slow_predictor(1, 0.0),
        "  autoscaling:\n    min_replicas: 0\n    max_replicas: 1\n    window: 10s\n    downscale_stabilization_period: 2s\n",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("sleepy", "live");
    assert_eq!(s.predict("sleepy", "{}").text().unwrap(), "v1");

    let idle = wait_for("no replica", DEADLINE, || {
        let v = s.api_json("sleepy")?;
        (v["requested"] == 0 && replicas(&v) == 0).then_some(v)
    });
    assert_eq!(
        idle["status"], "live",
        "zero replicas is not an error: {idle}"
    );
    let table = s.ok(&p, &["get", "sleepy"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], &["live", "0", "0"], "{table}");

    // The next request waits for a replica to start, then is answered.
    let resp = s.predict("sleepy", "{}");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().unwrap(), "v1");
    let v = s.api_json("sleepy").unwrap();
    assert_eq!(v["requested"], 1, "{v}");
}

#[test]
fn a_redeploy_under_steady_load_fails_no_request_and_ends_on_the_new_version() {
    let s = Server::start();
    let p = python_api(
        &s,
        "steady",
        &slow_predictor(1, 0.01),
        "  autoscaling:\n    min_replicas: 2\n    max_replicas: 2\n",
    );
    s.ok(&p, &["deploy"]);
    wait_for("two ready replicas", DEADLINE, || {
        let v = s.api_json("steady")?;
        (v["up_to_date"] == 2).then_some(())
    });
    let load = Load::start(format!("{}/steady", s.url), 4);
    wait_for("load flowing", DEADLINE, || {
        (load.ok.load(Ordering::Relaxed) > 20).then_some(())
    });

    write(&p, "predictor.py", &slow_predictor(2, 0.01));
    s.ok(&p, &["deploy"]);
    wait_for("only version 2 serving", DEADLINE, || {
        let v = s.api_json("steady")?;
        let all_new = v["replicas"]
            .as_array()?
            .iter()
            .all(|r| r["up_to_date"] == true);
        (v["status"] == "live" && replicas(&v) == 2 && all_new && load.last_body() == "v2")
            .then_some(())
    });
    load.finish_without_failures();
    assert_eq!(s.predict("steady", "{}").text().unwrap(), "v2");
}

#[test]
fn a_new_version_that_cannot_start_leaves_the_old_one_serving_and_says_why() {
    let s = Server::start();
    let p = python_api(&s, "sturdy", &slow_predictor(1, 0.0), "");
    s.ok(&p, &["deploy"]);
    s.wait_status("sturdy", "live");
    write(
        &p,
        "predictor.py",
        "class PythonPredictor:\n    def __init__(self, config):\n        raise RuntimeError('weights missing')\n\n    def predict(self, payload):\n        return 'v2'\n",
    );
    s.ok(&p, &["deploy"]);
    let api = s.wait_status("sturdy", "error");
    assert!(
        api["errors"].to_string().contains("weights missing"),
        "{api}"
    );
    for _ in 0..5 {
        assert_eq!(s.predict("sturdy", "{}").text().unwrap(), "v1");
    }
}

/// Blocks in `predict` until `gate` exists; writes `started-<n>` files as requests begin.
fn gated_predictor(dir: &std::path::Path) -> String {
    format!(
        "import os, time, uuid\n\nclass PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        open(os.path.join({dir:?}, 'started-' + uuid.uuid4().hex), 'w').close()\n        while not os.path.exists(os.path.join({dir:?}, 'gate')):\n            time.sleep(0.02)\n        return 'done'\n",
        dir = dir.display().to_string()
    )
}

#[test]
fn over_capacity_requests_are_refused_at_once_with_503_overloaded() {
    let s = Server::start();
    let dir = s.dir.path().join("gated");
    std::fs::create_dir_all(&dir).unwrap();
    let p = python_api(
        &s,
        "narrow",
        &gated_predictor(&dir),
        "  autoscaling:\n    min_replicas: 1\n    max_replicas: 1\n    max_replica_concurrency: 1\n    target_replica_concurrency: 1\n    max_queue_length: 1\n",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("narrow", "live");
    let url = format!("{}/narrow", s.url);
    let send = |tx: mpsc::Sender<(u16, String)>| {
        let url = url.clone();
        thread::spawn(move || {
            let r = http().post(&url).body("{}").send().unwrap();
            let status = r.status().as_u16();
            tx.send((status, r.text().unwrap_or_default())).unwrap();
        })
    };
    let (tx, rx) = mpsc::channel();
    let first = send(tx.clone());
    wait_for("the first request in predict", DEADLINE, || {
        (std::fs::read_dir(&dir).ok()?.count() == 1).then_some(())
    });
    // One more may wait in the queue; of two more, one is refused at once.
    let second = send(tx.clone());
    let third = send(tx.clone());
    let (status, body) = rx.recv_timeout(DEADLINE).unwrap();
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["kind"], "overloaded");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("max_replica_concurrency"));
    std::fs::write(dir.join("gate"), "").unwrap();
    for _ in 0..2 {
        let (status, body) = rx.recv_timeout(DEADLINE).unwrap();
        assert_eq!((status, body.as_str()), (200, "done"));
    }
    for t in [first, second, third] {
        t.join().unwrap();
    }
}

#[test]
fn a_body_over_the_limit_is_413_and_a_slow_answer_504() {
    let s = Server::start();
    let p = python_api(
        &s,
        "bounded",
        &slow_predictor(1, 3.0),
        "  networking:\n    timeout: 1s\n    max_request_size: 1Ki\n",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("bounded", "live");
    let resp = s.predict("bounded", &format!("\"{}\"", "x".repeat(2048)));
    assert_eq!(resp.status(), 413);
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["kind"], "payload_too_large");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("networking.max_request_size"),
        "{body}"
    );

    let resp = s.predict("bounded", "{}");
    assert_eq!(resp.status(), 504);
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["kind"], "timed_out");
    assert!(
        body["message"].as_str().unwrap().contains("timeout of 1s"),
        "{body}"
    );
}

#[test]
fn logs_of_several_replicas_come_merged_each_line_naming_its_replica() {
    let s = Server::start();
    let p = python_api(
        &s,
        "pair",
        "import os\n\nclass PythonPredictor:\n    def __init__(self, config):\n        print('loaded in', os.getpid(), flush=True)\n\n    def predict(self, payload):\n        return 'ok'\n",
        "  autoscaling:\n    min_replicas: 2\n    max_replicas: 2\n",
    );
    s.ok(&p, &["deploy"]);
    let api = wait_for("two ready replicas", DEADLINE, || {
        let v = s.api_json("pair")?;
        (v["up_to_date"] == 2).then_some(v)
    });
    for replica in api["replicas"].as_array().unwrap() {
        let id = replica["id"].as_str().unwrap();
        let prefix = format!("[{}] ", id.strip_prefix("pair-").unwrap());
        wait_for(&format!("{prefix} loaded in the logs"), DEADLINE, || {
            let logs = s.ok(&p, &["logs", "pair"]);
            logs.lines()
                .any(|l| l.starts_with(&prefix) && l.contains("loaded in"))
                .then_some(())
        });
    }
    let tail = s.ok(&p, &["logs", "pair", "--tail", "1"]);
    assert_eq!(tail.lines().count(), 2, "one line of each: {tail}");
}

/// A command worker that answers `GET /healthz`, and to a `POST` sends its status line, its
/// headers and the start of its body, then stalls.
const STALLING_WORKER: &str = r#"
import http.server, os, threading

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "100")
        self.end_headers()
        self.wfile.write(b'{"partial": ')
        self.wfile.flush()
        threading.Event().wait()

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["CORTEX_PORT"])), H).serve_forever()
"#;

#[test]
fn a_replica_that_stalls_mid_answer_is_cut_off_at_the_timeout_and_frees_its_slot() {
    let s = Server::start();
    let dir = s.project("stall");
    write(&dir, "worker.py", STALLING_WORKER);
    write(
        &dir,
        "cortex.yaml",
        "- name: stall\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: python3 worker.py\n  autoscaling:\n    max_replica_concurrency: 1\n    max_queue_length: 0\n  networking:\n    timeout: 1s\n",
    );
    s.ok(&dir, &["deploy"]);
    s.wait_status("stall", "live");
    // The head arrives, the rest never does: the gateway ends the answer at the deadline
    // (the client sees its body fail) instead of holding the caller forever.
    // (A client timeout far past the api's, so that without the cut this fails, not hangs.)
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    for _ in 0..2 {
        let resp = client
            .post(format!("{}/stall", s.url))
            .body("{}")
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
        let err = resp.bytes().expect_err("the body should be cut off");
        assert!(!err.is_timeout(), "the client gave up first: {err}");
    }
    // The second request was admitted, so the first one's slot (the only one, with no
    // queue) was given back when its body was cut off.
}

/// Answers `v<version>`; its `__init__` waits until `gate` exists (or, with `only_one`, lets
/// the first replica through and holds every other one).
fn gated_version(version: u32, gate: &std::path::Path, only_one: bool) -> String {
    let wait = if only_one {
        format!(
            "        try:\n            os.close(os.open({gate:?}, os.O_CREAT | os.O_EXCL))\n        except FileExistsError:\n            time.sleep(3600)\n"
        )
    } else {
        format!("        while not os.path.exists({gate:?}):\n            time.sleep(0.05)\n")
    };
    format!(
        "import os, time\n\nclass PythonPredictor:\n    def __init__(self, config):\n{wait}\n    def predict(self, payload):\n        time.sleep(0.01)\n        return 'v{version}'\n"
    )
}

/// Ready replicas of `v`: (up to date, stale).
fn ready_counts(v: &serde_json::Value) -> (usize, usize) {
    let ready: Vec<_> = v["replicas"]
        .as_array()
        .map(|r| r.iter().filter(|r| r["phase"] == "ready").collect())
        .unwrap_or_default();
    let new = ready.iter().filter(|r| r["up_to_date"] == true).count();
    (new, ready.len() - new)
}

#[test]
fn a_redeploy_in_the_middle_of_an_update_keeps_both_older_versions_serving_until_the_newest_is_ready(
) {
    let s = Server::start();
    let yaml = "  autoscaling:\n    min_replicas: 2\n    max_replicas: 2\n  update_strategy:\n    max_surge: 1\n    max_unavailable: 0\n";
    let p = python_api(&s, "midway", &slow_predictor(1, 0.01), yaml);
    s.ok(&p, &["deploy"]);
    wait_for("two ready replicas", DEADLINE, || {
        (ready_counts(&s.api_json("midway")?) == (2, 0)).then_some(())
    });
    let load = Load::start(format!("{}/midway", s.url), 4);
    wait_for("load flowing", DEADLINE, || {
        (load.ok.load(Ordering::Relaxed) > 20).then_some(())
    });

    // Version 2 gets one replica ready and no more: the update stops halfway, one replica of
    // each version serving.
    write(
        &p,
        "predictor.py",
        &gated_version(2, &p.join("claimed"), true),
    );
    s.ok(&p, &["deploy"]);
    wait_for("one replica of each version", DEADLINE, || {
        (ready_counts(&s.api_json("midway")?) == (1, 1)).then_some(())
    });

    // Version 3 waits for its gate: meanwhile both older versions keep serving.
    let gate = p.join("gate");
    write(&p, "predictor.py", &gated_version(3, &gate, false));
    s.ok(&p, &["deploy"]);
    wait_for("version 3 starting", DEADLINE, || {
        let v = s.api_json("midway")?;
        v["replicas"]
            .as_array()?
            .iter()
            .any(|r| r["up_to_date"] == true && r["phase"] == "initializing")
            .then_some(())
    });
    let v = s.api_json("midway").unwrap();
    assert_eq!(ready_counts(&v), (0, 2), "{v:#}");

    write(&p, "gate", "");
    wait_for("only version 3 serving", DEADLINE, || {
        let v = s.api_json("midway")?;
        (v["status"] == "live"
            && ready_counts(&v) == (2, 0)
            && replicas(&v) == 2
            && load.last_body() == "v3")
            .then_some(())
    });
    load.finish_without_failures();
}

#[test]
fn going_back_to_a_version_that_an_update_had_shrunk_gives_it_its_whole_size_again() {
    let s = Server::start();
    let claim = s.project("out").join("claimed");
    let p = s.project("shrunk");
    // Version 2: its first replica gets ready and dies at its first request; every other
    // start of it hangs in __init__.
    write(
        &p,
        "predictor.py",
        "import os, time\n\nclass PythonPredictor:\n    def __init__(self, config):\n        self.version = config['version']\n        if self.version == 2:\n            try:\n                os.close(os.open(config['claim'], os.O_CREAT | os.O_EXCL))\n            except FileExistsError:\n                time.sleep(3600)\n\n    def predict(self, payload):\n        if self.version == 2:\n            os._exit(1)\n        return 'v%d' % self.version\n",
    );
    let config = |version: u32| {
        format!(
            "- name: shrunk\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    config:\n      version: {version}\n      claim: {}\n  autoscaling:\n    min_replicas: 2\n    max_replicas: 2\n  update_strategy:\n    max_surge: 1\n    max_unavailable: 0\n",
            claim.display()
        )
    };
    write(&p, "cortex.yaml", &config(1));
    s.ok(&p, &["deploy"]);
    wait_for("two ready replicas", DEADLINE, || {
        (ready_counts(&s.api_json("shrunk")?) == (2, 0)).then_some(())
    });
    write(&p, "cortex.yaml", &config(2));
    s.ok(&p, &["deploy"]);
    wait_for("the update half-way", DEADLINE, || {
        (ready_counts(&s.api_json("shrunk")?) == (1, 1)).then_some(())
    });
    // The newest version takes the request and dies; it never gets ready again.
    let _ = s.predict("shrunk", "{}");
    wait_for("version 2 down", DEADLINE, || {
        (ready_counts(&s.api_json("shrunk")?) == (0, 1)).then_some(())
    });

    write(&p, "cortex.yaml", &config(1));
    s.ok(&p, &["deploy", "--force"]);
    wait_for("version 1 at its whole size", DEADLINE, || {
        let v = s.api_json("shrunk")?;
        (v["status"] == "live" && ready_counts(&v) == (2, 0) && replicas(&v) == 2).then_some(())
    });
    assert_eq!(s.predict("shrunk", "{}").text().unwrap(), "v1");
}
