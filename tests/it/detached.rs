//! What a replica or a batch worker starts dies with it, however it detached itself: a process
//! in a session of its own (`setsid`, forked again and orphaned) is stopped when its API is
//! deleted, when its replica restarts after a crash, when the server stops and when its job
//! ends, and a killed server's are stopped when it starts again. The server holds each run in
//! a cgroup of its own for that; where it cannot make one it says so at start and only the
//! run's process group is stopped: these tests are then skipped.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::harness::{http, wait_for, Server, DEADLINE};

/// `detach(pids, name, env)` starts `sleep 4242` in a session of its own (`setsid` forks once
/// more, so the sleeper is orphaned, as a daemon would be), with the replica's environment or
/// `env`, and writes its pid to `<pids>/<name>.pid`.
/// `made_from_spare()` says whether the process is a spare interpreter become the replica.
const DETACH: &str = r#"
import os, subprocess

def detach(pids, name, env=None):
    target = os.path.join(pids, name + ".pid")
    subprocess.Popen(
        ["setsid", "sh", "-c", 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 4242', target],
        start_new_session=True,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

def made_from_spare():
    return "--spare" in open("/proc/self/cmdline").read().split("\0")
"#;

/// A realtime predictor that detaches a sleeper in `__init__` (its pid file named after the
/// replica's pid and whether it came from a spare; with `bare` in its config, with an empty
/// environment) and exits when asked to predict `"crash"`.
const REALTIME: &str = r#"
class PythonPredictor:
    def __init__(self, config):
        how = "spare" if made_from_spare() else "new"
        env = {} if config.get("bare") else None
        detach(config["pids"], "%d-%s" % (os.getpid(), how), env)

    def predict(self, payload):
        if payload == "crash":
            os._exit(1)
        return "ok"
"#;

/// A batch predictor that detaches a sleeper in `__init__`; its batches wait for the test to
/// have seen the sleeper (a `go` file in the pid directory).
const BATCH: &str = r#"
import time

class PythonPredictor:
    def __init__(self, config, job_spec):
        self.go = os.path.join(config["pids"], "go")
        detach(config["pids"], "worker-%d" % os.getpid())

    def predict(self, payload, batch_id):
        while not os.path.exists(self.go):
            time.sleep(0.01)
"#;

/// The directory the replicas write their sleepers' pid files in (another OS user when the
/// tests run as root): every sleeper it names is killed at the end of the test, whatever
/// happened, so a failed test leaves nothing behind.
struct Sleepers(PathBuf);

impl Sleepers {
    fn of(s: &Server) -> Sleepers {
        Sleepers(s.project("pids"))
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        let pids = std::fs::read_dir(&self.0).into_iter().flatten().flatten();
        for pid in pids.filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
        {
            if sleeping(pid) {
                // SAFETY: kill(2) only sends a signal, to a `sleep 4242` this test's predictor ran.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// Whether `pid` is a live (not zombie) `sleep 4242`: a pid used again by another program
/// does not count.
fn sleeping(pid: i32) -> bool {
    let live = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    });
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    live && cmdline == b"sleep\x004242\x00"
}

/// A server (logging at `info`, with `args`), unless it says it cannot hold replicas in
/// cgroups here: then why the test is skipped is printed and there is none.
fn server(args: &[&str]) -> Option<Server> {
    let s = Server::start_with_args("127.0.0.1:0", &[("CORTEX_LOG", "info")], args);
    let log = std::fs::read_to_string(s.dir.path().join("server.log")).unwrap_or_default();
    if log.contains("replicas are held by their process group only") {
        eprintln!("skipped: the server cannot hold replicas in cgroups here (not root, or no memory cgroup to make)");
        return None;
    }
    Some(s)
}

/// The pid in the first `*.pid` file of `dir` whose name passes `wanted`, and that name.
fn pid_file(dir: &Path, wanted: impl Fn(&str) -> bool) -> Option<(String, i32)> {
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = std::fs::read_to_string(e.path())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        (name.ends_with(".pid") && wanted(&name)).then_some((name, pid))
    })
}

/// Waits for a pid file in `sleepers` whose name passes `wanted`, and for its process to be
/// the sleeper (the file is in place just before `sh` execs `sleep`).
fn wait_sleeper(sleepers: &Sleepers, wanted: impl Fn(&str) -> bool) -> (String, i32) {
    let (name, pid) = wait_for("a sleeper's pid file", DEADLINE, || {
        pid_file(&sleepers.0, &wanted)
    });
    wait_for(
        &format!("{name}: {pid} to run `sleep 4242`"),
        DEADLINE,
        || sleeping(pid).then_some(()),
    );
    (name, pid)
}

#[track_caller]
fn wait_gone(pid: i32, when: &str) {
    wait_for(
        &format!("the detached sleeper {pid} to be gone {when}"),
        DEADLINE,
        || (!sleeping(pid)).then_some(()),
    );
}

/// Deploys the realtime predictor as `name`, writing its pid files in `pids` (`more` config
/// after it); waits until live.
fn deploy_realtime(s: &Server, name: &str, pids: &Path, more: &str) {
    let predictor = format!("{DETACH}{REALTIME}");
    let config = format!("    config:\n      pids: {}\n{more}", pids.display());
    let p = s.python_project(name, "RealtimeAPI", &predictor, &config);
    s.ok(&p, &["deploy", "-y"]);
    s.wait_status(name, "live");
}

/// The bug a hostile tenant found: a process its `__init__` detached with `setsid` kept running
/// (as the replicas' user) after `cortex delete` on a server without `compute.mem`. The
/// replica is made from a spare interpreter, which the server moves into its cgroup.
#[test]
fn a_process_a_predictor_detached_with_setsid_dies_when_its_api_is_deleted() {
    let Some(s) = server(&[]) else { return };
    let sleepers = Sleepers::of(&s);
    wait_for("a ready spare interpreter", DEADLINE, || {
        let metrics = http()
            .get(format!("{}/metrics", s.url))
            .send()
            .ok()?
            .text()
            .ok()?;
        metrics
            .contains("cortex_spare_interpreters{state=\"ready\"} 1")
            .then_some(())
    });
    deploy_realtime(&s, "detacher", &sleepers.0, "");
    let (name, pid) = wait_sleeper(&sleepers, |_| true);
    assert!(
        name.ends_with("-spare.pid"),
        "{name}: the replica was meant to come from a spare"
    );
    s.ok(s.dir.path(), &["delete", "detacher", "-y"]);
    wait_gone(pid, "after `cortex delete`");
}

/// A replica started anew (no spares) that crashes: its run's detached process goes with the
/// run, the restarted replica's own with the server's shutdown.
#[test]
fn a_detached_process_dies_when_its_replica_restarts_and_when_the_server_stops() {
    let Some(mut s) = server(&["--spare-interpreters", "0"]) else {
        return;
    };
    let sleepers = Sleepers::of(&s);
    deploy_realtime(&s, "crasher", &sleepers.0, "");
    let (first_name, first) = wait_sleeper(&sleepers, |_| true);
    assert!(first_name.ends_with("-new.pid"), "{first_name}");
    // The replica exits mid-request: the answer is an error, the run is over.
    let _ = s.predict("crasher", "\"crash\"");
    wait_gone(first, "after its replica crashed");
    let (_, second) = wait_sleeper(&sleepers, |n| n != first_name);
    s.wait_status("crasher", "live");
    assert!(s.stop(), "the server did not stop cleanly");
    wait_gone(second, "after the server stopped");
}

/// A batch worker's detached process dies when the job ends and its workers are stopped.
#[test]
fn a_process_a_batch_worker_detached_dies_when_its_job_ends() {
    let Some(s) = server(&[]) else { return };
    let sleepers = Sleepers::of(&s);
    let predictor = format!("{DETACH}{BATCH}");
    let config = format!("    config:\n      pids: {}\n", sleepers.0.display());
    crate::batch::deploy_batch(&s, "detaching-batch", &predictor, &config);
    let job = json!({"workers": 1, "item_list": {"items": [1, 2], "batch_size": 1}});
    let id = crate::batch::submit(&s, "detaching-batch", job);
    let (_, pid) = wait_sleeper(&sleepers, |n| n.starts_with("worker-"));
    std::fs::write(sleepers.0.join("go"), "").unwrap();
    crate::batch::wait_job(&s, "detaching-batch", &id, "status_succeeded");
    wait_gone(pid, "after its job ended");
}

/// A server killed with SIGKILL leaves what its replicas detached running (only its direct
/// children get the parent-death signal). The next start kills it, even when it dropped
/// `CORTEX_ENGINE_OWNER` with the rest of its environment: it is in the killed server's
/// cgroups.
#[test]
fn a_detached_process_without_the_owner_mark_dies_when_a_killed_server_starts_again() {
    let Some(mut s) = server(&[]) else { return };
    let sleepers = Sleepers::of(&s);
    deploy_realtime(&s, "bare", &sleepers.0, "      bare: true\n");
    let (name, pid) = wait_sleeper(&sleepers, |_| true);
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        !environ.contains("CORTEX_ENGINE_OWNER"),
        "{name}: {environ:?}"
    );
    s.kill();
    s.restart_after_kill();
    wait_gone(pid, "after the killed server started again");
    s.wait_status("bare", "live");
}

/// Where no cgroup is made (`CORTEX_MEMORY_LIMITS=sample` stands for a machine without one), the
/// server says at start that replicas are held by their process group only.
#[test]
fn a_server_that_makes_no_cgroup_says_detached_processes_outlive_their_replica() {
    let s = Server::start_with_args(
        "127.0.0.1:0",
        &[("CORTEX_LOG", "info"), ("CORTEX_MEMORY_LIMITS", "sample")],
        &[],
    );
    let log = std::fs::read_to_string(s.dir.path().join("server.log")).unwrap();
    assert!(
        log.contains("replicas are held by their process group only")
            && log.contains("outlives the replica"),
        "{log}"
    );
}
