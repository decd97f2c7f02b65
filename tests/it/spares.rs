//! Spare interpreters: a python replica the server starts from a spare sees the same world,
//! and is held in as tightly, as one it starts anew; the server keeps a spare ready, and says
//! so in `/metrics`.

use serde_json::{json, Value};

use crate::harness::{http, wait_for, Server, DEADLINE};

/// What a replica can tell about where it runs, in terms that do not change from one run (or
/// server) to the next; `made_from_spare` comes from its command line.
const FACTS: &str = r#"
import json, os, sys, tempfile

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
            "tempdir": rel(tempfile.gettempdir()),
            "home": rel(os.path.expanduser("~")),
            "env": sorted(k for k in env if k not in ("CORTEX_SPARE_FD",)),
            "spare_fd": env.get("CORTEX_SPARE_FD"),
            "read the admin token": attempt(lambda: open(self.config["token"]).read(1)),
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

/// Deploys the facts predictor as `api` and asks it.
fn facts(s: &Server, api: &str) -> Value {
    let data = s.data_dir();
    let p = s.python_project(
        api,
        "RealtimeAPI",
        FACTS,
        &format!(
            "    config:\n      token: {}\n      data: {}\n",
            data.join("admin.token").display(),
            data.display()
        ),
    );
    s.ok(&p, &["deploy", "-y"]);
    s.wait_status(api, "live");
    let resp = s.predict(api, "{}");
    assert_eq!(resp.status(), 200);
    resp.json().unwrap()
}

#[test]
fn a_replica_made_from_a_spare_sees_and_reaches_what_one_started_anew_does() {
    let with = Server::start();
    wait_for("a ready spare", DEADLINE, || {
        (spares(&with, "ready") == Some(1)).then_some(())
    });
    let from_spare = facts(&with, "facts");

    let without = Server::start_with_args("127.0.0.1:0", &[], &["--spare-interpreters", "0"]);
    assert_eq!(spares(&without, "ready"), None, "no spares: no such metric");
    let anew = facts(&without, "facts");

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
        assert_ne!(got["list the data dir"], json!("ok"), "{got:#}");
        assert_eq!(got["write the scratch"], json!("ok"), "{got:#}");
        assert_eq!(got["spare_fd"], Value::Null, "{got:#}");
    }

    // The spare taken is replaced.
    wait_for("a spare ready again", DEADLINE, || {
        (spares(&with, "ready") == Some(1)).then_some(())
    });
}

#[test]
fn replicas_starting_at_once_share_no_spare_and_all_serve() {
    let s = Server::start();
    wait_for("a ready spare", DEADLINE, || {
        (spares(&s, "ready") == Some(1)).then_some(())
    });
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
