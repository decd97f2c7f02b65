//! Server restarts, deletes and logs.

use std::net::TcpStream;
use std::process::Stdio;

use crate::harness::*;

fn port_of(api: &serde_json::Value) -> u16 {
    api["replicas"][0]["port"].as_u64().unwrap() as u16
}

/// Whether a process runs (a zombie does not: an orphan may wait long for init to reap it).
fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

#[test]
fn apis_come_back_live_after_a_server_restart() {
    let mut s = Server::start();
    let project = s.example_project("python-realtime");
    s.ok(&project, &["deploy"]);
    s.wait_status("iris-classifier", "live");
    s.restart();
    let api = s.wait_status("iris-classifier", "live");
    assert_eq!(api["endpoint"], format!("{}/iris-classifier", s.url));
    let sample = std::fs::read_to_string(project.join("sample.json")).unwrap();
    assert_eq!(
        s.predict("iris-classifier", &sample).text().unwrap(),
        "setosa"
    );
    // Nothing changed, so a deploy after the restart is a no-op.
    assert!(s.ok(&project, &["deploy"]).contains("is up to date"));
}

#[test]
fn replicas_die_with_a_sigkilled_server_and_come_back_with_it() {
    let mut s = Server::start();
    let project = s.example_project("command-realtime");
    s.ok(&project, &["deploy"]);
    let api = s.wait_status("reverser", "live");
    let pid = api["replicas"][0]["pid"].as_u64().unwrap() as i32;
    s.kill();
    wait_for("the replica to die with the server", DEADLINE, || {
        (!pid_alive(pid)).then_some(())
    });
    s.restart();
    s.wait_status("reverser", "live");
    assert_eq!(s.predict("reverser", r#"{"text": "ab"}"#).status(), 200);
}

#[test]
fn delete_stops_the_replica_frees_its_port_and_forgets_the_api() {
    let s = Server::start();
    let project = s.example_project("command-realtime");
    s.ok(&project, &["deploy"]);
    let api = s.wait_status("reverser", "live");
    let port = port_of(&api);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());

    let out = s.ok(&project, &["delete", "reverser"]);
    assert_eq!(out, "deleting reverser\n");
    // The process is gone once delete returns: nothing listens on the port any more.
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still open"
    );
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());

    let gone = s.run(&project, &["get", "reverser"]);
    assert_refused(&gone, "api reverser is not deployed");
    assert_eq!(s.ok(&project, &["get"]), "no apis are deployed\n");
    assert_eq!(s.predict("reverser", "{}").status(), 404);
    // Deleting again is an honest error.
    let again = s.run(&project, &["delete", "reverser"]);
    assert_eq!(again.status.code(), Some(1));
    // And a new deploy creates it afresh.
    assert!(s.ok(&project, &["deploy"]).starts_with("creating reverser"));
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&project, &["delete", "reverser", "-o", "json"])).unwrap();
    assert_eq!(json, serde_json::json!({"message": "deleting reverser"}));
}

/// A replica that takes a moment to finish after SIGTERM (it closes its listener last, as a
/// server draining its requests does) is gone when `cortex delete` returns, on every engine.
#[test]
fn delete_returns_once_a_replica_slow_to_stop_has_stopped() {
    let s = Server::start();
    let p = s.project("lingerer");
    write(
        &p,
        "server.py",
        "import http.server, os, signal, sys, time\n\nclass H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        self.send_response(200)\n        self.send_header('Content-Length', '0')\n        self.end_headers()\n    do_POST = do_GET\n\nserver = http.server.HTTPServer(('127.0.0.1', int(os.environ['CORTEX_PORT'])), H)\n\ndef drain(*_):\n    time.sleep(1.5)\n    os._exit(0)\n\nsignal.signal(signal.SIGTERM, drain)\nserver.serve_forever()\n",
    );
    write(
        &p,
        "cortex.yaml",
        "- name: lingerer\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: python3 server.py\n",
    );
    s.ok(&p, &["deploy"]);
    let port = port_of(&s.wait_status("lingerer", "live"));
    s.ok(&p, &["delete", "lingerer", "-y"]);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still open after the delete returned"
    );
}

/// Each new version of an API logs to files of its own: those of versions it no longer runs
/// are removed when another version is deployed, so redeploying cannot fill the disk.
#[test]
fn the_logs_of_versions_an_api_no_longer_runs_are_removed() {
    let s = Server::start();
    let p = s.project("chatty");
    write(
        &p,
        "predictor.py",
        "class PythonPredictor:\n    def __init__(self, config):\n        print('version', config['v'], 'x' * 4096, flush=True)\n\n    def predict(self, payload):\n        return 'ok'\n",
    );
    let logs = s.data_dir().join("logs").join("chatty");
    let files_of = |set: &str| -> usize {
        std::fs::read_dir(&logs)
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with(&format!("{set}-"))
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    let mut sets = Vec::new();
    for v in 1..=3 {
        write(
            &p,
            "cortex.yaml",
            &format!("- name: chatty\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    config:\n      v: {v}\n"),
        );
        s.ok(&p, &["deploy"]);
        let api = wait_for(&format!("version {v} alone"), DEADLINE, || {
            s.api_json("chatty").filter(|a| {
                a["status"] == "live" && a["replicas"].as_array().is_some_and(|r| r.len() == 1)
            })
        });
        let id = api["replicas"][0]["id"].as_str().unwrap().to_string();
        let set = id.rsplit_once('-').unwrap().0.to_string();
        wait_for(&format!("version {v}'s log"), DEADLINE, || {
            (files_of(&set) > 0).then_some(())
        });
        sets.push(set);
    }
    // Version 1 went when version 3 was deployed (version 2 still served then); `cortex logs`
    // shows what runs.
    assert_eq!(files_of(&sets[0]), 0, "{:?}", std::fs::read_dir(&logs));
    assert!(files_of(&sets[2]) > 0);
    let out = s.ok(&p, &["logs", "chatty"]);
    assert!(out.contains("version 3"), "{out}");
}

#[test]
fn logs_print_the_replica_output_and_follow_new_lines() {
    // The follower must see the stream end cleanly, not the server give up on it: a grace
    // that a loaded machine cannot run out of.
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_SHUTDOWN_GRACE_SECS", "10")]);
    let p = s.project("talker");
    write(
        &p,
        "predictor.py",
        "class PythonPredictor:\n    def __init__(self, config):\n        print('loading the model', flush=True)\n\n    def predict(self, payload):\n        print('predicting', payload['n'], flush=True)\n        return 'ok'\n",
    );
    write(
        &p,
        "cortex.yaml",
        "- name: talker\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("talker", "live");
    s.logs_with(&p, &["talker"], "loading the model");
    let tail = s.ok(&p, &["logs", "talker", "--tail", "1"]);
    assert_eq!(tail.lines().count(), 1, "{tail}");
    assert_eq!(s.ok(&p, &["logs", "talker", "--tail", "0"]), "");
    let all = s.ok(&p, &["logs", "talker", "--tail", &usize::MAX.to_string()]);
    assert!(all.contains("loading the model"), "{all}");

    let mut follow = s
        .cortex()
        .args(["logs", "talker", "-f"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = line_channel(follow.stdout.take().unwrap());
    // The history comes first...
    wait_line(&lines, "loading the model");
    // ...then lines written after the command started.
    assert_eq!(s.predict("talker", r#"{"n": 7}"#).status(), 200);
    wait_line(&lines, "predicting 7");
    // A redeploy does not end the stream: it moves on to the new replica.
    write(
        &p,
        "predictor.py",
        "class PythonPredictor:\n    def __init__(self, config):\n        print('loading version 2', flush=True)\n\n    def predict(self, payload):\n        return 'ok'\n",
    );
    s.ok(&p, &["deploy"]);
    wait_line(&lines, "was redeployed; following its new replica");
    wait_line(&lines, "loading version 2");
    // A follower does not keep the server from stopping; the stream just ends.
    let mut s = s;
    assert!(
        s.stop(),
        "the server did not stop cleanly with a follower attached"
    );
    let status = follow.wait().unwrap();
    assert!(
        status.success(),
        "logs -f ends quietly when the server stops"
    );
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    let s = Server::start();
    let out = std::process::Command::new(cortex_bin())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("another cortex server is already using"),
        "{err}"
    );
    assert!(err.contains(&s.url), "{err}");
    // The running server is untouched.
    assert!(s
        .ok(s.dir.path(), &["get"])
        .contains("no apis are deployed"));
}

fn read_pid(path: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The unpacked project of the (single) deployed API, where its replica runs.
#[test]
fn what_a_replica_started_dies_with_it() {
    let s = Server::start();
    let p = s.project("spawner");
    // Replicas write their pids where the test reads them (their project is read-only).
    let dir = s.project("pids");
    write(
        &p,
        "cortex.yaml",
        &format!(
            "- name: spawner\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: [sh, -c, 'sleep 300 & echo $! > \"$PIDS/sleeper-$$.pid\"; exit 1']\n    env:\n      PIDS: {}\n",
            dir.display()
        ),
    );
    s.ok(&p, &["deploy"]);
    let sleeper = wait_for("a sleeper pid file", DEADLINE, || {
        let f = std::fs::read_dir(&dir)
            .ok()?
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("sleeper-"))?;
        read_pid(&f.path())
    });
    wait_for("the sleeper to die with its replica", DEADLINE, || {
        (!pid_alive(sleeper)).then_some(())
    });
}

#[test]
fn grandchildren_left_by_a_sigkilled_server_are_reaped_by_the_next() {
    let mut s = Server::start();
    let p = s.example_project("command-realtime");
    let dir = s.project("pids");
    write(
        &p,
        "cortex.yaml",
        &format!(
            "- name: wrapped\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: [sh, -c, 'echo $$ > $PIDS/wrapper.pid; python3 server.py & echo $! > $PIDS/server.pid; wait']\n    env:\n      PIDS: {}\n",
            dir.display()
        ),
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("wrapped", "live");
    // sh writes the pids right after forking: poll, it may not have been scheduled yet.
    let python = wait_for("server.pid", DEADLINE, || read_pid(&dir.join("server.pid")));
    let wrapper = wait_for("wrapper.pid", DEADLINE, || {
        read_pid(&dir.join("wrapper.pid"))
    });
    s.kill();
    // The direct child (sh) dies with the server; its python child is orphaned...
    wait_for("the wrapper to die", DEADLINE, || {
        (!pid_alive(wrapper)).then_some(())
    });
    // ...until the next server starts and reaps it.
    s.restart();
    wait_for("the orphan to be reaped", DEADLINE, || {
        (!pid_alive(python)).then_some(())
    });
    s.wait_status("wrapped", "live");
}

#[test]
fn a_prediction_that_never_ends_does_not_keep_the_server_from_stopping() {
    let mut s = Server::start();
    let p = s.project("stuck");
    let marker = s.project("out").join("in-flight");
    write(
        &p,
        "predictor.py",
        "import threading\n\nclass PythonPredictor:\n    def __init__(self, config):\n        self.marker = config['marker']\n\n    def predict(self, payload):\n        open(self.marker, 'w').close()\n        threading.Event().wait()\n",
    );
    write(
        &p,
        "cortex.yaml",
        &format!(
            "- name: stuck\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    config:\n      marker: {}\n",
            marker.display()
        ),
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("stuck", "live");
    let url = format!("{}/stuck", s.url);
    let (tx, answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = http()
            .post(url)
            .body("{}")
            .send()
            .map(|r| r.status().as_u16());
        let _ = tx.send(result);
    });
    wait_for("the request to be in flight", DEADLINE, || {
        marker.exists().then_some(())
    });
    assert!(
        s.stop(),
        "the server did not stop cleanly with a request in flight"
    );
    // The request is cut off: an error, or the gateway's 502 once the replica is stopped.
    if let Ok(status) = answer
        .recv_timeout(DEADLINE)
        .expect("the caller never returned")
    {
        assert_eq!(status, 502);
    }
}

#[test]
fn an_api_whose_bundle_vanished_shows_why_and_a_deploy_brings_it_back() {
    let mut s = Server::start();
    let p = s.example_project("command-realtime");
    s.ok(&p, &["deploy"]);
    s.wait_status("reverser", "live");
    assert!(s.stop());
    for dir in [
        s.data_dir().join("bundles"),
        s.replica_tree().join("projects"),
    ] {
        std::fs::remove_dir_all(dir).unwrap();
    }
    s.restart();
    let api = s.wait_status("reverser", "error");
    let why = api["errors"][0].as_str().unwrap();
    assert!(
        why.contains("run `cortex deploy` again to upload it"),
        "{why}"
    );
    // The reconcile loop records what the restart found: the deployment failed, and why.
    let status_url = format!(
        "{}/api/v2/deploy/{}/status",
        s.url,
        api["model_id"].as_str().unwrap()
    );
    let deploy_status = |s: &Server| -> serde_json::Value {
        http()
            .get(&status_url)
            .bearer_auth(&s.token)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let failed = wait_for("the reconcile loop to record the failure", DEADLINE, || {
        Some(deploy_status(&s)).filter(|v| v["status"] == "failed")
    });
    assert!(
        failed["errors"][0]
            .as_str()
            .unwrap()
            .contains("could not be unpacked"),
        "{failed}"
    );
    // The stored spec is unchanged but does not run: the deploy starts it, and says so.
    let out = s.ok(&p, &["deploy"]);
    assert!(out.starts_with("updating reverser (RealtimeAPI)"), "{out}");
    s.wait_status("reverser", "live");
    assert_eq!(s.predict("reverser", r#"{"text": "ok"}"#).status(), 200);
    wait_for("the deployment to be complete again", DEADLINE, || {
        Some(deploy_status(&s))
            .filter(|v| v["status"] == "complete" && v["errors"] == serde_json::json!([]))
    });
}

#[test]
fn a_replica_that_never_answers_healthz_says_so() {
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_READY_WARN_SECS", "1")]);
    let p = s.project("deaf");
    write(
        &p,
        "cortex.yaml",
        "- name: deaf\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: [sleep, '300']\n",
    );
    s.ok(&p, &["deploy"]);
    let api = wait_for("the readiness warning", DEADLINE, || {
        s.api_json("deaf").filter(|v| {
            v["errors"][0]
                .as_str()
                .is_some_and(|e| e.contains("has not answered GET /healthz"))
        })
    });
    assert_eq!(api["status"], "updating", "it keeps its chance: {api}");
    let text = s.ok(&p, &["get", "deaf"]);
    assert!(text.contains("does not serve on $CORTEX_PORT"), "{text}");
}

/// Another program on the replica's port (it took the port between the engine's lease and the
/// replica's `bind`) may answer `/healthz` too: that must not make the API live, or
/// predictions would go to a stranger. Here the listener runs in its own session, outside the
/// replica's process group.
#[test]
fn a_healthz_answer_from_outside_the_replica_does_not_make_it_live() {
    // Declared before the server, so it is dropped after it: no new stranger can be started
    // once the guard reads the pid file, pass or fail.
    let pids = crate::harness::shared_tempdir();
    std::fs::create_dir(pids.path().join("out")).unwrap();
    let pid_file = pids.path().join("out").join("stranger.pid");
    struct KillPidsOnDrop(std::path::PathBuf);
    impl Drop for KillPidsOnDrop {
        fn drop(&mut self) {
            let pids = std::fs::read_to_string(&self.0).unwrap_or_default();
            for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: kill(2) sends a signal; it touches no memory.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let _strangers = KillPidsOnDrop(pid_file.clone());
    let s = Server::start();
    let p = s.project("impostor");
    write(
        &p,
        "server.py",
        r#"import http.server, os, threading, time
if os.fork() == 0:
    os.setsid()  # a new session and process group: not the replica's
    with open(os.environ["STRANGER_PID"], "a") as f:
        f.write("%d\n" % os.getpid())
    threading.Timer(300, os._exit, [0]).start()  # never outlive a crashed test for long
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
    http.server.HTTPServer(("127.0.0.1", int(os.environ["CORTEX_PORT"])), H).serve_forever()
else:
    while True:
        time.sleep(60)
"#,
    );
    write(
        &p,
        "cortex.yaml",
        &format!(
            "- name: impostor\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: python3 server.py\n    env:\n      STRANGER_PID: '{}'\n",
            pid_file.display()
        ),
    );
    s.ok(&p, &["deploy"]);
    wait_for("the stranger to listen", DEADLINE, || {
        pid_file.exists().then_some(())
    });
    // Each start gives the port up after a few seconds of stranger answers; two in a row are a
    // crash loop.
    let api = s.wait_status("impostor", "error");
    let error = api["errors"][0].as_str().unwrap_or_default();
    assert!(
        error.contains("from a process outside the replica's process group"),
        "{api}"
    );
    assert_eq!(s.predict("impostor", "{}").status(), 503);
    let logs = s.ok(&p, &["logs", "impostor"]);
    assert!(logs.contains("starting again on another port"), "{logs}");
}

/// A python replica's port is bound by the server and handed to the shim: while `__init__`
/// runs, no other program can take it, and nothing answers on it yet.
#[test]
fn a_python_replicas_port_is_held_for_it_while_it_initialises() {
    let s = Server::start();
    let gate = s.dir.path().join("gate");
    let p = s.project("held");
    write(
        &p,
        "predictor.py",
        "import os, time\n\nclass PythonPredictor:\n    def __init__(self, config):\n        while not os.path.exists(config['gate']):\n            time.sleep(0.02)\n\n    def predict(self, payload):\n        return 'served'\n",
    );
    write(
        &p,
        "cortex.yaml",
        &format!(
            "- name: held\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    config:\n      gate: {}\n",
            gate.display()
        ),
    );
    s.ok(&p, &["deploy"]);
    let api = wait_for("the replica to have a port", DEADLINE, || {
        s.api_json("held")
            .filter(|v| v["replicas"][0]["port"].is_u64())
    });
    let port = port_of(&api);
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_err(),
        "port {port} could be taken while the replica initialised"
    );
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert_eq!(s.api_json("held").unwrap()["status"], "updating");
    std::fs::write(&gate, "").unwrap();
    s.wait_status("held", "live");
    assert_eq!(s.predict("held", "{}").text().unwrap(), "served");
}

/// A is live, B fails in `__init__`: A keeps answering. A restart must bring back that same
/// picture, not only B (which would leave the API answering 503 until someone redeploys A).
#[test]
fn a_restart_keeps_the_generation_that_served_next_to_a_failed_update() {
    let mut s = Server::start();
    let p = s.project("keeper");
    write(
        &p,
        "predictor.py",
        "class PythonPredictor:\n    def __init__(self, config):\n        if config['version'] == 2:\n            raise RuntimeError('version 2 cannot load its model')\n        self.version = config['version']\n\n    def predict(self, payload):\n        return {'version': self.version}\n",
    );
    let config = |v: u32| {
        format!("- name: keeper\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    config:\n      version: {v}\n")
    };
    write(&p, "cortex.yaml", &config(1));
    s.ok(&p, &["deploy"]);
    s.wait_status("keeper", "live");
    write(&p, "cortex.yaml", &config(2));
    s.ok(&p, &["deploy"]);
    let before = s.wait_status("keeper", "error");
    let version = |s: &Server| -> Option<u64> {
        let v: serde_json::Value = s.predict("keeper", "{}").json().ok()?;
        v["version"].as_u64()
    };
    assert_eq!(
        version(&s),
        Some(1),
        "version 1 serves during the failed update"
    );

    s.restart();
    wait_for("version 1 to answer again", DEADLINE, || {
        (version(&s) == Some(1)).then_some(())
    });
    let after = s.wait_status("keeper", "error");
    assert!(
        after["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("version 2 cannot load its model")),
        "{after}"
    );
    assert_eq!(
        after["replicas"].as_array().map(Vec::len),
        before["replicas"].as_array().map(Vec::len),
        "before: {before}\nafter: {after}"
    );

    // Fixing the spec rolls out as usual, and the old generation goes.
    write(&p, "cortex.yaml", &config(3));
    s.ok(&p, &["deploy"]);
    wait_for("version 3 to serve alone", DEADLINE, || {
        let api = s.api_json("keeper")?;
        (api["status"] == "live"
            && api["replicas"].as_array()?.len() == 1
            && version(&s) == Some(3))
        .then_some(())
    });
    // And after another restart, only version 3 comes back.
    s.restart();
    let api = s.wait_status("keeper", "live");
    assert_eq!(api["replicas"].as_array().map(Vec::len), Some(1), "{api}");
    assert_eq!(version(&s), Some(3));
}

/// A serves, B and C fail to start: after a restart A comes back as the deployment it was
/// (not as the one before C, which is B's), so going back to A shows A's number.
#[test]
fn a_restart_brings_back_the_serving_generation_as_its_own_deployment() {
    let mut s = Server::start();
    let p = s.project("returner");
    write(
        &p,
        "predictor.py",
        "class PythonPredictor:\n    def __init__(self, config):\n        if config['version'] > 1:\n            raise RuntimeError(f\"version {config['version']} cannot load its model\")\n\n    def predict(self, payload):\n        return 'one'\n",
    );
    let config = |v: u32| {
        format!("- name: returner\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    config:\n      version: {v}\n")
    };
    write(&p, "cortex.yaml", &config(1));
    s.ok(&p, &["deploy"]);
    let first = s.wait_status("returner", "live")["deployment"]["number"].clone();
    for v in [2, 3] {
        write(&p, "cortex.yaml", &config(v));
        s.ok(&p, &["deploy"]);
        let reason = format!("version {v} cannot load");
        wait_for(&format!("version {v} to fail"), DEADLINE, || {
            let api = s.api_json("returner")?;
            (api["status"] == "error" && api["errors"].to_string().contains(&reason)).then_some(())
        });
    }

    s.restart();
    wait_for("version 1 to answer again", DEADLINE, || {
        (s.predict("returner", "{}").text().ok()? == "one").then_some(())
    });
    // Version 3 starts again with the server: an update in progress until it fails again.
    s.wait_status("returner", "error");
    write(&p, "cortex.yaml", &config(1));
    s.ok(&p, &["deploy"]);
    let api = wait_for("version 1 to be the api again", DEADLINE, || {
        s.api_json("returner").filter(|v| {
            v["status"] == "live" && v["replicas"].as_array().is_some_and(|r| r.len() == 1)
        })
    });
    assert_eq!(api["deployment"]["number"], first, "{api}");
    assert_eq!(api["deployment"]["status"], "complete", "{api}");
}

/// Deploys `name`, a python API that prints `up`, and follows its log (`cortex logs -f`) until
/// that line shows: its project, the follower, and the lines that come next (kept, so the
/// follower's output has a reader).
fn following(
    s: &Server,
    name: &str,
) -> (
    std::path::PathBuf,
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
) {
    let p = s.python_project(
        name,
        "RealtimeAPI",
        "class PythonPredictor:\n    def __init__(self, config):\n        print('up', flush=True)\n\n    def predict(self, payload):\n        return 'ok'\n",
        "",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status(name, "live");
    let mut follow = s
        .cortex()
        .args(["logs", name, "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = line_channel(follow.stdout.take().unwrap());
    wait_line(&lines, "up");
    (p, follow, lines)
}

#[test]
fn logs_follow_says_the_connection_broke_when_the_server_is_killed() {
    let mut s = Server::start();
    let (_, follow, _lines) = following(&s, "orphaned");
    s.kill();
    let out = follow.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("broke while following the log")
            && err.contains("run the command again once the server is back"),
        "{err}"
    );
    assert!(!err.contains("decoding"), "{err}");
}

#[test]
fn logs_follow_says_when_its_api_is_deleted() {
    let s = Server::start();
    let (p, follow, _lines) = following(&s, "brief");
    s.ok(&p, &["delete", "brief", "-y"]);
    let out = follow.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("brief was deleted: no more logs will come"),
        "{}",
        stderr(&out)
    );
}
