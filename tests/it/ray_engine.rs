//! The Ray engine's own behaviour, against the two-node cluster `.ci/ray/run.sh` starts
//! (`bash .ci/ray/engine-tests.sh`): placement over both nodes, the loss of a node, the loss
//! of a driver, and what `cortex get` and `/healthz` say about the engine. The tests every
//! engine passes are the other modules', run with `CORTEX_TEST_ENGINE=ray`.
//!
//! Ignored in a plain `cargo test` (no cluster there); run with `--ignored` they fail, never
//! skip, without one.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{http, wait_for, Server, DEADLINE};

fn cluster_var(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run these tests through .ci/ray/run.sh"))
}

/// A server on the Ray engine (whatever `CORTEX_TEST_ENGINE` says).
fn ray_server() -> Server {
    let _ = cluster_var("CORTEX_TEST_RAY_ADDRESS");
    assert_eq!(
        std::env::var("CORTEX_TEST_ENGINE").as_deref(),
        Ok("ray"),
        "run these tests with CORTEX_TEST_ENGINE=ray (bash .ci/ray/engine-tests.sh)"
    );
    Server::start()
}

const ECHO: &str = "import os\n\nclass PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return {'pid': os.getpid()}\n";

/// Deploys `name` with `replicas` replicas (no autoscaling) and waits until they are ready.
fn deploy_fixed(s: &Server, name: &str, replicas: u32) -> Value {
    let p = s.python_project(
        name,
        "RealtimeAPI",
        ECHO,
        &format!("  autoscaling:\n    min_replicas: {replicas}\n    max_replicas: {replicas}\n"),
    );
    s.ok(&p, &["deploy"]);
    ready_replicas(s, name, replicas as usize, |_| true)
}

/// Waits until `name` is live with `n` ready replicas that all satisfy `ok`.
fn ready_replicas(s: &Server, name: &str, n: usize, ok: impl Fn(&Value) -> bool) -> Value {
    wait_for(
        &format!("{n} ready replicas of {name}"),
        Duration::from_secs(180),
        || {
            let v = s.api_json(name)?;
            let replicas = v["replicas"].as_array()?;
            let ready: Vec<&Value> = replicas.iter().filter(|r| r["phase"] == "ready").collect();
            (v["status"] == "live"
                && ready.len() == n
                && replicas.len() == n
                && ready.iter().all(|r| ok(r)))
            .then_some(v)
        },
    )
}

/// Clients sending predictions until stopped, counting answers and remembering failures.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU32>,
    failed: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(s: &Server, api: &str, clients: usize) -> Load {
        let (stop, ok, failed) = (Arc::default(), Arc::default(), Arc::default());
        let mut threads = Vec::new();
        for _ in 0..clients {
            let (stop, ok, failed): (Arc<AtomicBool>, Arc<AtomicU32>, Arc<Mutex<Vec<String>>>) =
                (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
            let url = format!("{}/{api}", s.url);
            threads.push(std::thread::spawn(move || {
                let client = http();
                while !stop.load(Ordering::Relaxed) {
                    match client.post(&url).json(&serde_json::json!({})).send() {
                        Ok(r) if r.status().is_success() => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            let status = r.status();
                            let body = r.text().unwrap_or_default();
                            failed.lock().unwrap().push(format!("{status}: {body}"));
                        }
                        Err(e) => failed.lock().unwrap().push(e.to_string()),
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }));
        }
        Load {
            stop,
            ok,
            failed,
            threads,
        }
    }

    /// Stops the clients; returns (answered, failures).
    fn finish(self) -> (u32, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let failed = self.failed.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failed)
    }
}

/// The pids of the processes whose command line is `python -m cortex_ray` (the drivers).
fn driver_pids() -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args
            .windows(2)
            .any(|w| w[0] == b"-m" && w[1] == b"cortex_ray")
        {
            pids.push(pid);
        }
    }
    pids
}

#[test]
#[ignore = "needs the Ray cluster of .ci/ray/run.sh: bash .ci/ray/engine-tests.sh"]
fn replicas_spread_over_both_nodes_and_get_and_healthz_say_where() {
    let s = ray_server();
    let head = cluster_var("CORTEX_TEST_RAY_HEAD_NODE_ID");
    let node2 = cluster_var("CORTEX_TEST_RAY_NODE2_NODE_ID");
    let api = deploy_fixed(&s, "spread", 2);
    let mut nodes: Vec<String> = api["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node"].as_str().unwrap().to_string())
        .collect();
    nodes.sort();
    let mut both = vec![head.clone(), node2.clone()];
    both.sort();
    assert_eq!(nodes, both, "one replica on each node: {api}");
    let text = s.ok(s.dir.path(), &["get", "spread"]);
    assert!(text.contains("engine: ray"), "{text}");
    assert!(
        text.contains(&head[..12]) && text.contains(&node2[..12]),
        "{text}"
    );
    let health: Value = s.health();
    assert_eq!(health["engine"]["kind"], "ray", "{health}");
    assert_eq!(
        health["engine"]["cluster"],
        cluster_var("CORTEX_TEST_RAY_ADDRESS")
    );
    let alive = wait_for("both nodes listed", DEADLINE, || {
        let h: Value = http()
            .get(format!("{}/healthz", s.url))
            .send()
            .ok()?
            .json()
            .ok()?;
        let nodes = h["engine"]["nodes"].as_array()?.clone();
        (nodes.iter().filter(|n| n["alive"] == true).count() == 2).then_some(nodes)
    });
    assert_eq!(alive.len(), 2);
    // Both answer through the gateway.
    let pids: std::collections::HashSet<u64> = (0..20)
        .map(|_| {
            s.predict("spread", "{}").json::<Value>().unwrap()["pid"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(pids.len(), 2, "both replicas answer: {pids:?}");
    s.ok(s.dir.path(), &["delete", "spread", "-y"]);
}

#[test]
#[ignore = "needs the Ray cluster of .ci/ray/run.sh: bash .ci/ray/engine-tests.sh"]
fn a_killed_driver_is_replaced_and_its_replicas_keep_serving() {
    let s = ray_server();
    let before = deploy_fixed(&s, "steady", 1);
    let pid_before = before["replicas"][0]["pid"].as_u64().unwrap();
    let drivers = wait_for("the driver's process", DEADLINE, || {
        let p = driver_pids();
        (p.len() == 1).then_some(p)
    });
    let load = Load::start(&s, "steady", 2);
    wait_for("answers", DEADLINE, || {
        (load.ok.load(Ordering::Relaxed) > 5).then_some(())
    });
    // SAFETY: kill(2) sends a signal; it touches no memory.
    unsafe {
        libc::kill(drivers[0], libc::SIGKILL);
    }
    let replaced = wait_for("another driver", Duration::from_secs(120), || {
        let p = driver_pids();
        (p.len() == 1 && p[0] != drivers[0]).then(|| p[0])
    });
    // The new driver has adopted the actor: syncs go on, and the replica was not restarted.
    let answered_before = load.ok.load(Ordering::Relaxed);
    wait_for("answers after the new driver", DEADLINE, || {
        (load.ok.load(Ordering::Relaxed) > answered_before + 20).then_some(())
    });
    let (ok, failed) = load.finish();
    eprintln!(
        "driver {} replaced by {replaced}: {ok} answers, {} failures: {failed:?}",
        drivers[0],
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "a driver's loss must not fail a request: {failed:?}"
    );
    let after = ready_replicas(&s, "steady", 1, |_| true);
    assert_eq!(
        after["replicas"][0]["pid"].as_u64().unwrap(),
        pid_before,
        "adopted, not restarted: {after}"
    );
    assert_eq!(after["replicas"][0]["restarts"], 0, "{after}");
    // The new driver still obeys: a delete removes the replica's process.
    s.ok(s.dir.path(), &["delete", "steady", "-y"]);
    wait_for("the replica's process to end", DEADLINE, || {
        (!std::path::Path::new(&format!("/proc/{pid_before}")).exists()).then_some(())
    });
}

#[test]
#[ignore = "needs the Ray cluster of .ci/ray/run.sh; kills its second node: bash .ci/ray/engine-tests.sh --node-loss"]
fn node_loss_losing_the_second_node_moves_its_replicas_to_the_head_and_the_api_keeps_answering() {
    let s = ray_server();
    let head = cluster_var("CORTEX_TEST_RAY_HEAD_NODE_ID");
    let node2 = cluster_var("CORTEX_TEST_RAY_NODE2_NODE_ID");
    let raylet: i32 = cluster_var("CORTEX_TEST_RAY_NODE2_RAYLET_PID")
        .parse()
        .unwrap();
    let api = deploy_fixed(&s, "survivor", 2);
    let on_node2 = api["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["node"] == node2.as_str())
        .count();
    assert_eq!(
        on_node2, 1,
        "one replica on the second node before it is lost: {api}"
    );
    let load = Load::start(&s, "survivor", 2);
    wait_for("answers", DEADLINE, || {
        (load.ok.load(Ordering::Relaxed) > 5).then_some(())
    });
    let lost_at = Instant::now();
    // SAFETY: kill(2) sends a signal; it touches no memory.
    unsafe {
        libc::kill(raylet, libc::SIGKILL);
    }
    let after = ready_replicas(&s, "survivor", 2, |r| r["node"] == head.as_str());
    let switched = lost_at.elapsed();
    // Once both replicas are on the head, every request is answered.
    let answered = load.ok.load(Ordering::Relaxed);
    let failures_at_switch = load.failed.lock().unwrap().len();
    wait_for("answers after the switch", DEADLINE, || {
        (load.ok.load(Ordering::Relaxed) > answered + 40).then_some(())
    });
    let (ok, failed) = load.finish();
    eprintln!(
        "node lost: both replicas on the head after {switched:?}; {ok} answers, {} failures during the switch, {} after: {:?}",
        failures_at_switch,
        failed.len() - failures_at_switch,
        &failed[..failed.len().min(10)]
    );
    assert_eq!(
        failed.len(),
        failures_at_switch,
        "no failure once the replicas moved: {failed:?}"
    );
    assert!(after["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["up_to_date"] == true));
}

#[test]
#[ignore = "needs the Ray cluster of .ci/ray/run.sh: bash .ci/ray/engine-tests.sh"]
fn a_replica_over_its_memory_limit_is_killed_and_says_so() {
    let s = ray_server();
    let p = s.python_project(
        "hog",
        "RealtimeAPI",
        "import time\n\nclass PythonPredictor:\n    def __init__(self, config):\n        self.blob = b'x' * (300 << 20)\n        time.sleep(30)\n\n    def predict(self, payload):\n        return 'never'\n",
        "  compute:\n    mem: 100Mi\n",
    );
    s.ok(&p, &["deploy"]);
    let api = wait_for("the memory error", Duration::from_secs(120), || {
        s.api_json("hog").filter(|v| {
            v["errors"].as_array().is_some_and(|e| {
                e.iter()
                    .any(|e| e.as_str().unwrap_or("").contains("out of memory"))
            })
        })
    });
    let error = api["errors"][0].as_str().unwrap();
    assert!(error.contains("compute.mem allows 100MiB"), "{error}");
    let logs = s.ok(&p, &["logs", "hog"]);
    assert!(logs.contains("cortex: error: out of memory"), "{logs}");
}

#[test]
#[ignore = "needs the Ray cluster of .ci/ray/run.sh: bash .ci/ray/engine-tests.sh"]
fn server_status_names_the_engine_and_its_cluster() {
    let _ = cluster_var("CORTEX_TEST_RAY_ADDRESS");
    let dir = crate::harness::shared_tempdir();
    let cli = dir.path().join("cli");
    // The local server (no --data-dir), run in the foreground on the Ray engine.
    let mut server = std::process::Command::new(crate::harness::cortex_bin())
        .args(["server", "--listen", "127.0.0.1:0"])
        .args(crate::harness::engine_args())
        .env("CORTEX_CLI_CONFIG_DIR", &cli)
        .env("CORTEX_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_for("cortex server status", DEADLINE, || {
        let out = std::process::Command::new(crate::harness::cortex_bin())
            .args(["server", "status"])
            .env("CORTEX_CLI_CONFIG_DIR", &cli)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.contains("2 of 2 nodes alive").then_some(text)
    });
    let _ = server.kill();
    let _ = server.wait();
    let address = cluster_var("CORTEX_TEST_RAY_ADDRESS");
    assert!(
        status.contains(&format!("engine:   ray at {address}: 2 of 2 nodes alive")),
        "{status}"
    );
}
