//! Spare interpreters: a python replica the server starts from a spare sees the same world,
//! and is held in as tightly, as one it starts anew; the server keeps a spare ready, and says
//! so in `/metrics`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::harness::{http, wait_for, Server, DEADLINE};

/// What a replica can tell about where it runs, in terms that do not change from one run (or
/// server) to the next; `made_from_spare` comes from its command line.
const FACTS: &str = r#"
import json, os, sys, tempfile, time

def attempt(f):
    try:
        f()
        return "ok"
    except Exception as e:
        return type(e).__name__

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return line.split()[1]

class PythonPredictor:
    def __init__(self, config):
        self.config = config

    def predict(self, payload):
        env = dict(os.environ)
        project, scratch = env["CORTEX_PROJECT_DIR"], env["TMPDIR"]
        runtime = os.path.dirname(os.path.dirname(sys.modules["cortex_runtime"].__file__))
        def rel(p):
            return p.replace(project, "<project>").replace(scratch, "<scratch>").replace(runtime, "<runtime>")
        return {
            "made_from_spare": "--spare" in open("/proc/self/cmdline").read().split("\0"),
            "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups()],
            "no_new_privs": status("NoNewPrivs"),
            "cwd": rel(os.getcwd()),
            "argv": [os.path.basename(a) for a in sys.argv],
            "path": [rel(p) for p in sys.path[:3]],
            "pycache_prefix": rel(getattr(sys, "pycache_prefix", None) or ""),
            "dont_write_bytecode": sys.dont_write_bytecode,
            "flags": [sys.flags.no_user_site, sys.flags.utf8_mode, sys.flags.dont_write_bytecode],
            "tzname": list(time.tzname),
            "proc_is_mine": os.stat("/proc/self/environ").st_uid == os.getuid(),
            "tempdir": rel(tempfile.gettempdir()),
            "home": rel(os.path.expanduser("~")),
            "env": sorted(k for k in env if k not in ("CORTEX_SPARE_FD",)),
            "spare_fd": env.get("CORTEX_SPARE_FD"),
            "read the admin token": attempt(lambda: open(self.config["token"]).read(1)),
            "read another api's project": attempt(lambda: open(self.config["other"]).read(1)),
            "list the data dir": attempt(lambda: os.listdir(self.config["data"])),
            "write the project": attempt(lambda: open(os.path.join(project, "planted"), "w").write("x")),
            "write the scratch": attempt(lambda: open(os.path.join(scratch, "mine"), "w").write("x")),
        }
"#;

/// The spares `/metrics` says are in `state` (`None`: the server keeps none).
fn spares(s: &Server, state: &str) -> Option<u64> {
    let text = http()
        .get(format!("{}/metrics", s.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let prefix = format!("cortex_spare_interpreters{{state=\"{state}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

/// A world-readable file of another API's unpacked project: only Landlock keeps a replica
/// from it (its directories are open to the replicas' user).
fn other_apis_file(s: &Server) -> PathBuf {
    let p = s.python_project(
        "other",
        "RealtimeAPI",
        "# other-api-marker\nclass PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return {}\n",
        "",
    );
    s.ok(&p, &["deploy", "-y"]);
    s.wait_status("other", "live");
    let projects = s.replica_tree().join("projects");
    let found = std::fs::read_dir(&projects)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("predictor.py"))
        .find(|f| std::fs::read_to_string(f).is_ok_and(|t| t.contains("other-api-marker")));
    found.expect("the other api's unpacked predictor")
}

/// Deploys the facts predictor as `api` (with `env` as its `predictor.env`) and asks it.
fn facts(s: &Server, api: &str, other: &Path, env: &str) -> Value {
    let data = s.data_dir();
    let p = s.python_project(
        api,
        "RealtimeAPI",
        FACTS,
        &format!(
            "    config:\n      token: {}\n      data: {}\n      other: {}\n{env}",
            data.join("admin.token").display(),
            data.display(),
            other.display()
        ),
    );
    s.ok(&p, &["deploy", "-y"]);
    s.wait_status(api, "live");
    let resp = s.predict(api, "{}");
    assert_eq!(resp.status(), 200);
    resp.json().unwrap()
}

/// Waits until `s` has a spare ready.
fn wait_for_a_spare(s: &Server) {
    wait_for("a ready spare", DEADLINE, || {
        (spares(s, "ready") == Some(1)).then_some(())
    });
}

// The servers' environment says nothing of bytecode (this machine's shell may say not to
// write any): a spare must take that from the replica's, as a new process would.
const NO_BYTECODE_SETTING: &[(&str, &str)] = &[("PYTHONDONTWRITEBYTECODE", "")];

#[test]
fn a_replica_made_from_a_spare_sees_and_reaches_what_one_started_anew_does() {
    let with = Server::start_with("127.0.0.1:0", NO_BYTECODE_SETTING);
    let other = other_apis_file(&with);
    wait_for_a_spare(&with);
    let from_spare = facts(&with, "facts", &other, "");

    let without = Server::start_with_args(
        "127.0.0.1:0",
        NO_BYTECODE_SETTING,
        &["--spare-interpreters", "0"],
    );
    assert_eq!(spares(&without, "ready"), None, "no spares: no such metric");
    let other = other_apis_file(&without);
    let anew = facts(&without, "facts", &other, "");

    assert_eq!(from_spare["made_from_spare"], json!(true), "{from_spare:#}");
    assert_eq!(anew["made_from_spare"], json!(false), "{anew:#}");
    let mut expected = anew.clone();
    expected["made_from_spare"] = json!(true);
    assert_eq!(from_spare, expected);
    // Both are held in: what the sandbox hides is hidden from each, and no socket to the
    // server is left to the predictor.
    for got in [&from_spare, &anew] {
        assert_eq!(got["no_new_privs"], json!("1"), "{got:#}");
        assert_ne!(got["read the admin token"], json!("ok"), "{got:#}");
        assert_eq!(
            got["read another api's project"],
            json!("PermissionError"),
            "{got:#}"
        );
        assert_eq!(got["dont_write_bytecode"], json!(false), "{got:#}");
        assert_eq!(got["proc_is_mine"], json!(true), "{got:#}");
        assert_ne!(got["list the data dir"], json!("ok"), "{got:#}");
        assert_eq!(got["write the scratch"], json!("ok"), "{got:#}");
        assert_eq!(got["spare_fd"], Value::Null, "{got:#}");
    }

    // The spare taken is replaced.
    wait_for("a spare ready again", DEADLINE, || {
        (spares(&with, "ready") == Some(1)).then_some(())
    });
}

/// A setting read when a process starts (the time zone, the locale, the loader's, the
/// interpreter's) that the replica's environment gives differently from the spare's cannot
/// be taken on by a spare: that replica starts anew, and sees it.
#[test]
fn a_replica_whose_environment_changes_what_a_process_reads_at_start_starts_anew() {
    let s = Server::start();
    let other = other_apis_file(&s);
    wait_for_a_spare(&s);
    let got = facts(&s, "eastern", &other, "    env:\n      TZ: EST5EDT\n");
    assert_eq!(got["made_from_spare"], json!(false), "{got:#}");
    assert_eq!(got["tzname"], json!(["EST", "EDT"]), "{got:#}");
    assert_eq!(spares(&s, "ready"), Some(1), "the spare is still there");
}

#[test]
fn replicas_starting_at_once_all_serve_the_first_from_the_ready_spare() {
    let s = Server::start();
    wait_for_a_spare(&s);
    let p = s.python_project(
        "three",
        "RealtimeAPI",
        "import os\n\nclass PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    \
         def predict(self, payload):\n        return {'pid': os.getpid(), \
         'spare': '--spare' in open('/proc/self/cmdline').read().split('\\0')}\n",
        "  autoscaling:\n    min_replicas: 3\n    max_replicas: 3\n",
    );
    s.ok(&p, &["deploy", "-y"]);
    s.wait_status("three", "live");
    let mut pids = std::collections::BTreeMap::new();
    wait_for("answers from all three replicas", DEADLINE, || {
        let got: Value = s.predict("three", "{}").json().unwrap();
        pids.insert(
            got["pid"].as_u64().unwrap(),
            got["spare"].as_bool().unwrap(),
        );
        (pids.len() == 3).then_some(())
    });
    let from_spares = pids.values().filter(|s| **s).count();
    assert!(
        (1..=3).contains(&from_spares),
        "at least the first replica starts from the ready spare: {pids:?}"
    );
}
