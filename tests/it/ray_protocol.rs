//! The Ray engine's own port without a cluster: a fake Ray dashboard takes the driver's job,
//! and the test plays the driver. What a stranger on the network gets (410, 401), what the
//! driver gets (the desired replicas, the bundle), and a replica made ready by its report.
//! Also the flags' refusals. Runs in every `cargo test`; the real cluster is
//! `ray_engine.rs`'s.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::harness::{http, shared_tempdir, wait_for, write, Server, DEADLINE};

/// A stand-in for Ray's dashboard: every request is answered 200 with one JSON that has what
/// the engine reads of each call (version, submission, job status, nodes); bodies of
/// `POST /api/jobs/` are kept.
struct FakeDashboard {
    url: String,
    jobs: Arc<Mutex<Vec<Value>>>,
    /// What `GET /api/jobs/{id}` says of every job.
    status: Arc<Mutex<String>>,
}

impl FakeDashboard {
    fn start() -> FakeDashboard {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let jobs: Arc<Mutex<Vec<Value>>> = Arc::default();
        let status = Arc::new(Mutex::new("RUNNING".to_string()));
        let (kept, said) = (jobs.clone(), status.clone());
        serve(listener, move |line, body| {
            if line.starts_with("POST /api/jobs/ ") {
                kept.lock()
                    .unwrap()
                    .push(serde_json::from_slice(body).unwrap());
            }
            json!({
                "ray_version": "2.60.0", "submission_id": "fake-job",
                "status": *said.lock().unwrap(), "data": {"result": {"result": []}}
            })
            .to_string()
        });
        FakeDashboard { url, jobs, status }
    }
}

/// Serves HTTP/1.1 keep-alive on `listener` in the background: every request is answered 200
/// with what `answer` makes of its request line and body.
fn serve(listener: TcpListener, answer: impl Fn(&str, &[u8]) -> String + Send + Sync + 'static) {
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0usize;
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        if h.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let text = answer(&line, &body);
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    if reader.get_mut().write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// A server on the Ray engine of `dashboard`, and where its engine listens.
fn server_on(dashboard: &FakeDashboard) -> (Server, String) {
    let tokens = shared_tempdir();
    let token_file = tokens.path().join("ray.token");
    std::fs::write(&token_file, "cluster-secret\n").unwrap();
    let s = Server::start_with_args(
        "127.0.0.1:0",
        &[],
        &[
            "--engine",
            "ray",
            "--ray-address",
            &dashboard.url,
            "--ray-token-file",
            token_file.to_str().unwrap(),
        ],
    );
    std::mem::forget(tokens); // read once at start; removed with the machine's temp files
    let log = std::fs::read_to_string(s.dir.path().join("server.log")).unwrap();
    let engine = log
        .split("reach this server at ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the server did not say where its engine listens:\n{log}"))
        .to_string();
    (s, engine)
}

fn sync(engine: &str, group: &str, token: &str, body: Value) -> reqwest::blocking::Response {
    http()
        .post(format!("{engine}/api/v2/engine/ray/groups/{group}/sync"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .unwrap()
}

#[test]
fn the_engines_port_answers_only_its_drivers_and_the_clusters_nodes() {
    if !crate::harness::engine_args().is_empty() {
        return; // this test brings its own engine
    }
    let dashboard = FakeDashboard::start();
    let (s, engine) = server_on(&dashboard);
    // A stranger: no such group (a driver of a gone group removes its actors on 410).
    let r = sync(
        &engine,
        "made-up",
        "whatever",
        json!({"driver": "x", "replicas": []}),
    );
    assert_eq!(r.status(), 410);

    let p = s.python_project(
        "echo",
        "RealtimeAPI",
        "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return 'hi'\n",
        "  compute:\n    cpu: 500m\n    mem: 200Mi\n",
    );
    s.ok(&p, &["deploy"]);
    let job = wait_for("the driver's job", DEADLINE, || {
        dashboard.jobs.lock().unwrap().first().cloned()
    });
    assert_eq!(job["entrypoint"], "python3 -m cortex_ray", "{job}");
    let env = &job["runtime_env"]["env_vars"];
    let (group, token) = (
        env["CORTEX_RAY_GROUP"].as_str().unwrap(),
        env["CORTEX_RAY_TOKEN"].as_str().unwrap(),
    );
    assert_eq!(env["CORTEX_RAY_SERVER"], engine.as_str());
    assert!(group.starts_with("echo-"), "{group}");

    // Another group's token, or none: refused.
    assert_eq!(
        sync(
            &engine,
            group,
            "cluster-secret",
            json!({"driver": "x", "replicas": []})
        )
        .status(),
        401
    );
    let bad = http()
        .post(format!("{engine}/api/v2/engine/ray/groups/{group}/sync"))
        .bearer_auth(token)
        .body("not json")
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);

    // The driver: the desired replica, with compute as Ray resources and node paths.
    let r = sync(
        &engine,
        group,
        token,
        json!({"driver": "1@n", "replicas": []}),
    );
    assert_eq!(r.status(), 200);
    let desired: Value = r.json().unwrap();
    let replica = &desired["replicas"][0];
    assert_eq!(
        (
            replica["num_cpus"].as_f64(),
            replica["memory_limit"].as_u64()
        ),
        (Some(0.5), Some(200 << 20)),
        "{replica}"
    );
    assert_eq!(replica["generation"], 1);
    assert!(
        replica["cwd"]
            .as_str()
            .unwrap()
            .starts_with("@CORTEX_RAY_WORKING_DIR@"),
        "{replica}"
    );
    assert!(
        !replica["env"]
            .to_string()
            .contains(s.data_dir().to_str().unwrap()),
        "no server path: {replica}"
    );
    let bundle = replica["working_dir"].as_str().unwrap();
    assert!(
        bundle.starts_with(&engine) && bundle.ends_with(".tar.gz"),
        "{bundle}"
    );

    // The bundle: only with the cluster's token; nothing but bundle names.
    assert_eq!(http().get(bundle).send().unwrap().status(), 401);
    assert_eq!(
        http()
            .get(bundle)
            .bearer_auth(token)
            .send()
            .unwrap()
            .status(),
        401
    );
    let got = http()
        .get(bundle)
        .bearer_auth("cluster-secret")
        .send()
        .unwrap();
    assert_eq!(got.status(), 200);
    assert!(
        got.bytes().unwrap().starts_with(&[0x1f, 0x8b]),
        "a gzip archive"
    );
    for name in ["..%2Fadmin.token", "x.tar.gz", "cortex.db"] {
        let r = http()
            .get(format!("{engine}/api/v2/engine/ray/files/{name}"))
            .bearer_auth("cluster-secret")
            .send()
            .unwrap();
        assert_eq!(r.status(), 404, "{name}");
    }

    // A report that its program runs, where something answers /healthz: ready, and the
    // gateway sends predictions there.
    let fake_replica = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = fake_replica.local_addr().unwrap();
    serve(fake_replica, |_, _| "from the node".to_string());
    let id = replica["id"].as_str().unwrap();
    let report = json!({"driver": "1@n", "replicas": [{
        "id": id, "generation": 1, "state": "running", "address": addr.to_string(), "pid": 4242,
        "node": "node-one", "stdout": "hello from the node\n", "stderr": ""
    }]});
    assert_eq!(sync(&engine, group, token, report.clone()).status(), 200);
    let api = wait_for("the replica ready", DEADLINE, || {
        let _ = sync(&engine, group, token, report.clone());
        s.api_json("echo").filter(|v| v["status"] == "live")
    });
    assert_eq!(api["replicas"][0]["node"], "node-one", "{api}");
    assert_eq!(api["engine"], "ray");
    assert_eq!(s.predict("echo", "{}").text().unwrap(), "from the node");
    let logs = s.ok(&p, &["logs", "echo"]);
    assert!(logs.contains("hello from the node"), "{logs}");

    // Its exit: restarted by the server at a higher generation, after the back-off.
    let exited = json!({"driver": "1@n", "replicas": [{
        "id": id, "generation": 1, "state": "exited", "exit_code": 1, "stdout": "", "stderr": "boom\n"
    }]});
    let bumped = wait_for("the next generation", DEADLINE, || {
        let v: Value = sync(&engine, group, token, exited.clone()).json().ok()?;
        (v["replicas"][0]["generation"] == 2).then_some(v)
    });
    assert_eq!(bumped["replicas"][0]["id"], id);
    let api = s.api_json("echo").unwrap();
    assert_eq!(api["replicas"][0]["restarts"], 1, "{api}");

    // Deleted: the replica leaves the answer; the delete waits until the driver no longer
    // reports it, and the group, empty, is gone (410).
    let mut deleting = s.cortex();
    deleting
        .current_dir(&p)
        .args(["delete", "echo", "-y"])
        .stdout(std::process::Stdio::null());
    let mut deleting = deleting.spawn().unwrap();
    wait_for("the replica left out of the answer", DEADLINE, || {
        let v: Value = sync(&engine, group, token, exited.clone()).json().ok()?;
        (v["replicas"] == json!([])).then_some(())
    });
    let gone = sync(
        &engine,
        group,
        token,
        json!({"driver": "1@n", "replicas": []}),
    );
    assert_eq!(gone.status(), 410);
    assert!(deleting.wait().unwrap().success());
    assert!(s.api_json("echo").is_none(), "deleted");
}

/// A group whose driver is gone when its last replica is deleted still gets a driver, whose
/// first sync is answered 410: the actors the dead one left are removed, not left running.
#[test]
fn a_deleted_api_whose_driver_died_gets_a_driver_that_removes_its_actors() {
    if !crate::harness::engine_args().is_empty() {
        return; // this test brings its own engine
    }
    let dashboard = FakeDashboard::start();
    let (s, engine) = server_on(&dashboard);
    let p = s.python_project(
        "orphan",
        "RealtimeAPI",
        "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return 1\n",
        "",
    );
    s.ok(&p, &["deploy"]);
    let job = wait_for("the driver's job", DEADLINE, || {
        dashboard.jobs.lock().unwrap().first().cloned()
    });
    let env = &job["runtime_env"]["env_vars"];
    let (group, token) = (
        env["CORTEX_RAY_GROUP"].as_str().unwrap().to_string(),
        env["CORTEX_RAY_TOKEN"].as_str().unwrap().to_string(),
    );
    // The driver syncs once (its actor exists), then dies; the API is deleted meanwhile.
    let first: Value = sync(
        &engine,
        &group,
        &token,
        json!({"driver": "1@n", "replicas": []}),
    )
    .json()
    .unwrap();
    let id = first["replicas"][0]["id"].as_str().unwrap().to_string();
    *dashboard.status.lock().unwrap() = "FAILED".to_string();
    s.ok(&p, &["delete", "orphan", "-y"]);
    // Another driver of the same group is submitted, and told the group is gone.
    let second = wait_for("a driver to clean up", DEADLINE, || {
        let jobs = dashboard.jobs.lock().unwrap();
        jobs.iter()
            .skip(1)
            .find(|j| j["runtime_env"]["env_vars"]["CORTEX_RAY_GROUP"] == group.as_str())
            .cloned()
    });
    assert_eq!(
        second["runtime_env"]["env_vars"]["CORTEX_RAY_TOKEN"],
        token.as_str()
    );
    let report =
        json!({"driver": "2@n", "replicas": [{"id": id, "generation": 1, "state": "running"}]});
    assert_eq!(sync(&engine, &group, &token, report.clone()).status(), 410);
    assert_eq!(sync(&engine, &group, &token, report).status(), 410);
}

#[test]
fn ray_flags_that_cannot_work_are_refused_saying_what_to_give() {
    let dir = shared_tempdir();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(crate::harness::cortex_bin())
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(args)
            .env("CORTEX_CLI_CONFIG_DIR", dir.path().join("cli"))
            .env_remove("CORTEX_ENGINE")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = run(&["--engine", "ray"]);
    assert!(err.contains("--engine ray needs --ray-address"), "{err}");
    let err = run(&["--engine", "ray", "--ray-address", "ray-head:8265"]);
    assert!(err.contains("is not an http(s) URL"), "{err}");
    let err = run(&["--engine", "ray", "--ray-address", "http://127.0.0.1:9"]);
    assert!(
        err.contains("needs --ray-token-file") && err.contains("RAY_AUTH_MODE=token"),
        "{err}"
    );
    let with_token = |name: &str, text: &str| {
        write(dir.path(), name, text);
        let file = dir.path().join(name);
        // Nothing listens on port 9 of loopback.
        run(&[
            "--engine",
            "ray",
            "--ray-address",
            "http://127.0.0.1:9",
            "--ray-token-file",
            file.to_str().unwrap(),
        ])
    };
    let err = with_token("empty.token", "\n");
    assert!(err.contains("is empty"), "{err}");
    let err = with_token("t.token", "secret\n");
    assert!(
        err.contains("cannot reach the Ray cluster at http://127.0.0.1:9"),
        "{err}"
    );
}
