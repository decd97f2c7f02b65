//! A ready replica that stops answering (stopped by a signal, wedged) is taken out of the
//! gateway's rotation, saying why, and back in when it answers again; one that stays silent is
//! restarted. Predictions meanwhile go to the replicas that answer instead of waiting for their
//! timeout.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// A server that checks ready replicas every second and restarts one silent for
/// `restart_secs`.
fn watching_server(restart_secs: u32) -> Server {
    let restart = restart_secs.to_string();
    Server::start_with_args(
        "127.0.0.1:0",
        &[
            ("CORTEX_HEALTH_CHECK_SECS", "1"),
            ("CORTEX_UNRESPONSIVE_RESTART_SECS", restart.as_str()),
        ],
        &[],
    )
}

/// Deploys the command example as `reverser` with `replicas` replicas; waits until live.
fn deploy(s: &Server, replicas: u32) -> Value {
    let p = s.example_project("command-realtime");
    write(
        &p,
        "cortex.yaml",
        &format!("- name: reverser\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: python3 server.py\n  autoscaling:\n    min_replicas: {replicas}\n    max_replicas: {replicas}\n"),
    );
    s.ok(&p, &["deploy", "-y"]);
    wait_for("every replica ready", DEADLINE, || {
        let v = s.api_json("reverser")?;
        let ready = v["replicas"]
            .as_array()?
            .iter()
            .filter(|r| r["phase"] == "ready")
            .count();
        (ready == replicas as usize).then_some(v)
    })
}

fn signal(pid: u64, signal: i32) {
    // SAFETY: kill(2) only sends a signal, to a replica process this test's server started.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

fn predict_quickly(s: &Server) -> u16 {
    http()
        .post(format!("{}/reverser", s.url))
        .header("content-type", "application/json")
        .body(r#"{"text": "abc"}"#)
        .timeout(Duration::from_secs(10))
        .send()
        .map_or(0, |r| r.status().as_u16())
}

/// The bug: a replica stopped with SIGSTOP stayed `ready`; every second prediction went to it
/// and waited for the 300 s timeout.
#[test]
fn a_replica_that_stops_answering_leaves_the_rotation_until_it_answers_again() {
    let s = watching_server(600);
    let api = deploy(&s, 2);
    let stopped = api["replicas"][0]["pid"].as_u64().unwrap();
    let stopped_id = api["replicas"][0]["id"].as_str().unwrap().to_string();
    signal(stopped, libc::SIGSTOP);
    let v = wait_for("the stopped replica out of rotation", DEADLINE, || {
        let v = s.api_json("reverser")?;
        let r = v["replicas"]
            .as_array()?
            .iter()
            .find(|r| r["id"] == stopped_id.as_str())?
            .clone();
        (r["phase"] != "ready").then_some(v)
    });
    let errors = v["errors"].to_string();
    assert!(errors.contains("stopped answering GET /healthz"), "{v}");
    for _ in 0..6 {
        assert_eq!(
            predict_quickly(&s),
            200,
            "a prediction went to the stopped replica"
        );
    }
    signal(stopped, libc::SIGCONT);
    deploy_ready_again(&s, &stopped_id, stopped);
}

/// Waits until replica `id` is ready again, the same process (`pid`): not restarted.
fn deploy_ready_again(s: &Server, id: &str, pid: u64) {
    let r = wait_for("the replica back in rotation", DEADLINE, || {
        let v = s.api_json("reverser")?;
        let r = v["replicas"]
            .as_array()?
            .iter()
            .find(|r| r["id"] == id)?
            .clone();
        (r["phase"] == "ready").then_some(r)
    });
    assert_eq!(r["pid"].as_u64(), Some(pid), "{r}");
    assert_eq!(r["restarts"], 0, "{r}");
}

/// One silent past the restart delay is stopped and started again, and serves.
#[test]
fn a_replica_silent_for_long_is_restarted() {
    let s = watching_server(4);
    let api = deploy(&s, 1);
    let stopped = api["replicas"][0]["pid"].as_u64().unwrap();
    signal(stopped, libc::SIGSTOP);
    let v = wait_for("the silent replica restarted and ready", DEADLINE, || {
        let v = s.api_json("reverser")?;
        let r = &v["replicas"][0];
        (r["phase"] == "ready" && r["pid"].as_u64() != Some(stopped)).then_some(v)
    });
    assert!(v["replicas"][0]["restarts"].as_u64() >= Some(1), "{v}");
    assert_eq!(predict_quickly(&s), 200);
    let logs = s.ok(&s.project("reverser-logs"), &["logs", "reverser"]);
    assert!(logs.contains("did not answer GET /healthz for"), "{logs}");
}
