//! `cortex deploy --wait` and `cortex wait API [JOB_ID]`: live is 0; a broken `__init__`, a
//! memory kill, a timeout or a failed job is 1 with the reason on stderr; a redeploy is waited
//! for as the new version; `-o json` prints the final document; and the README's CI script
//! runs as written.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

use crate::batch::{deploy_batch, submit, SUMMER};
use crate::harness::{stderr, stdout, write, Server, DEADLINE};

const LEAN: &str = "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return 'lean'\n";
const BROKEN: &str = "class PythonPredictor:\n    def __init__(self, config):\n        raise RuntimeError('the model file is missing')\n\n    def predict(self, payload):\n        return 1\n";

/// Runs `cmd` to its end, which must come within the tests' deadline: far less than the
/// default `--timeout` (10m), so a wait that ends here did not end by timing out.
fn finish(mut cmd: Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on the pid of a child that has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("the command did not end within {DEADLINE:?}");
        }
    }
}

/// `cortex args...` in `cwd`, run to its end within the deadline.
fn run(s: &Server, cwd: &Path, args: &[&str]) -> Output {
    let mut cmd = s.cortex();
    cmd.current_dir(cwd).args(args);
    finish(cmd)
}

#[track_caller]
fn failed_with(out: &Output, needles: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{}\nstderr:\n{err}",
        stdout(out)
    );
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} not in:\n{err}");
    }
    err
}

#[test]
fn deploy_wait_returns_once_the_api_is_live() {
    let s = Server::start();
    let p = s.python_project("lean", "RealtimeAPI", LEAN, "");
    let out = run(&s, &p, &["deploy", "--wait"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("creating lean (RealtimeAPI)"), "{text}");
    assert!(
        text.contains(&format!("lean is live: {}/lean", s.url)),
        "{text}"
    );
    // Piped, the wait wrote one line per change, and the api is live right after.
    assert_eq!(s.api_json("lean").unwrap()["status"], "live");
    assert_eq!(s.predict("lean", "{}").status(), 200);
    // `cortex wait` on a live api returns at once; --timeout needs --wait on deploy.
    assert!(run(&s, &p, &["wait", "lean"]).status.success());
    let usage = run(&s, &p, &["deploy", "--timeout", "2s"]);
    assert_eq!(usage.status.code(), Some(2), "{}", stderr(&usage));
}

#[test]
fn a_python_init_failure_fails_the_wait_with_the_exception() {
    let s = Server::start();
    let p = s.python_project("broken", "RealtimeAPI", BROKEN, "");
    let out = run(&s, &p, &["deploy", "--wait"]);
    let err = failed_with(
        &out,
        &[
            "error: broken is error (deployment 1): failed to initialise the predictor: RuntimeError: the model file is missing",
            "log lines (cortex logs broken):",
            "Traceback",
        ],
    );
    assert!(!err.contains("timed out"), "{err}");
}

#[test]
fn a_command_exiting_3_fails_the_wait_and_one_that_never_listens_times_out() {
    let s = Server::start();
    let p = s.project("exit3");
    write(
        &p,
        "cortex.yaml",
        "- name: exit3\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: [sh, -c, 'echo cannot load weights.bin >&2; exit 3']\n",
    );
    let out = run(&s, &p, &["deploy", "--wait"]);
    failed_with(&out, &["error: exit3 is error", "cannot load weights.bin"]);

    let p = s.project("sleeper");
    write(
        &p,
        "cortex.yaml",
        "- name: sleeper\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: [sh, -c, 'echo loading forever; exec sleep 600']\n",
    );
    let out = run(&s, &p, &["deploy", "--wait", "--timeout", "2s"]);
    failed_with(
        &out,
        &[
            "error: timed out after 2s waiting for sleeper to be live",
            "sleeper (deployment 1) is updating: 0 of 1 replicas ready",
            "loading forever",
            "--timeout",
        ],
    );
    let out = run(&s, &p, &["wait", "sleeper", "--timeout", "1s"]);
    failed_with(&out, &["timed out after 1s waiting for sleeper to be live"]);
}

#[test]
fn a_replica_killed_for_memory_fails_the_wait() {
    let s = Server::start();
    let hog = "class PythonPredictor:\n    def __init__(self, config):\n        self.blob = b'x' * (400 << 20)\n\n    def predict(self, payload):\n        return 'ok'\n";
    let p = s.python_project("hog", "RealtimeAPI", hog, "  compute:\n    mem: 100Mi\n");
    let out = run(&s, &p, &["deploy", "--wait"]);
    failed_with(
        &out,
        &["error: hog is error (out of memory)", "out of memory"],
    );
}

#[test]
fn compute_the_machine_can_never_give_fails_the_wait_at_once() {
    // A machine without GPUs, whatever this one has.
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_ENGINE_GPUS", "0")]);
    let p = s.python_project("gpu-only", "RealtimeAPI", LEAN, "  compute:\n    gpu: 1\n");
    // Far within the default --timeout (10m): `run` gives up after the tests' deadline.
    let out = run(&s, &p, &["deploy", "--wait"]);
    let err = failed_with(
        &out,
        &[
            "error: gpu-only is compute unavailable (deployment 1)",
            "it needs 1 gpu (compute.gpu) while 0 of this machine's 0 are free",
            "it can never start here; lower compute in cortex.yaml",
        ],
    );
    assert!(!err.contains("timed out"), "{err}");
    let out = run(&s, &p, &["wait", "gpu-only", "-o", "json"]);
    failed_with(&out, &["error: gpu-only is compute unavailable"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["status"], "compute_unavailable", "{doc:#}");
}

#[test]
fn a_broken_redeploy_fails_the_wait_while_the_old_version_still_serves() {
    let s = Server::start();
    let p = s.python_project("greeter", "RealtimeAPI", LEAN, "");
    assert!(run(&s, &p, &["deploy", "--wait"]).status.success());
    write(&p, "predictor.py", BROKEN);
    let out = run(&s, &p, &["deploy", "--wait"]);
    failed_with(
        &out,
        &[
            "error: greeter is error (deployment 2)",
            "RuntimeError: the model file is missing",
        ],
    );
    // The old version answers all along; the wait was for the new one.
    assert_eq!(s.predict("greeter", "{}").status(), 200);
    let out = run(&s, &p, &["wait", "greeter"]);
    failed_with(&out, &["greeter is error (deployment 2)"]);
}

#[test]
fn going_back_to_the_serving_version_during_an_update_is_waited_for_as_live() {
    use crate::realtime::{versioned_config, versioned_project};
    let s = Server::start();
    let gate = s.dir.path().join("gate-never");
    let p = versioned_project(&s, "aba");
    write(&p, "cortex.yaml", &versioned_config("aba", 1, &gate));
    assert!(run(&s, &p, &["deploy", "--wait"]).status.success());
    // Version 2 never finishes `__init__`: the update hangs half-way.
    write(&p, "cortex.yaml", &versioned_config("aba", 2, &gate));
    s.ok(&p, &["deploy"]);
    // Going back makes version 1's deployment number current again: a change, and live.
    write(&p, "cortex.yaml", &versioned_config("aba", 1, &gate));
    let out = run(&s, &p, &["deploy", "--force", "--wait", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let docs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(docs[0]["deployment"]["number"], 1, "{docs:#}");
    assert_eq!(docs[0]["status"], "live");
}

#[test]
fn json_output_is_the_final_document() {
    let s = Server::start();
    let p = s.python_project("doc", "RealtimeAPI", LEAN, "");
    let out = run(&s, &p, &["deploy", "--wait", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let docs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(docs[0]["name"], "doc", "{docs:#}");
    assert_eq!(docs[0]["status"], "live");
    assert_eq!(docs[0]["deployment"]["number"], 1);
    let out = run(&s, &p, &["wait", "doc", "-o", "json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["endpoint"], format!("{}/doc", s.url));
    // A failure prints its document too (the reason goes to stderr).
    write(&p, "predictor.py", BROKEN);
    let out = run(&s, &p, &["deploy", "--wait", "-o", "json"]);
    failed_with(&out, &["doc is error"]);
    let docs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(docs[0]["status"], "error", "{docs:#}");
    let out = run(&s, &p, &["wait", "doc", "-o", "json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["status"], "error", "{doc:#}");
    // A wait that cannot begin prints the error document every command prints.
    for (args, kind) in [
        (&["wait", "nosuch", "-o", "json"][..], "not_found"),
        (
            &["wait", "doc", "7fffffffffffffff", "-o", "json"],
            "invalid_request",
        ),
    ] {
        let out = run(&s, &p, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {:?}", stdout(&out)));
        assert_eq!(doc["error"]["kind"], kind, "{args:?}: {doc}");
    }
}

/// Raises on batches whose first item is odd.
const ODD_FAILS: &str = "class PythonPredictor:\n    def __init__(self, config, job_spec):\n        pass\n\n    def predict(self, payload, batch_id):\n        if payload[0] % 2 == 1:\n            raise ValueError('odd batch ' + str(payload))\n";

#[test]
fn waiting_for_a_job_is_0_when_it_succeeds_and_1_with_its_counts_otherwise() {
    let s = Server::start();
    let p = deploy_batch(&s, "summer", SUMMER, "");
    let results = p.join("results");
    std::fs::create_dir_all(&results).unwrap();
    let body = json!({"workers": 1, "item_list": {"items": [1, 2, 3], "batch_size": 1}, "config": {"results": results}});
    let id = submit(&s, "summer", body);
    let out = run(&s, &p, &["wait", "summer", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("job {id} of summer succeeded")),
        "{text}"
    );
    assert!(
        text.contains("batches: 3 succeeded, 0 failed, 3 in all"),
        "{text}"
    );
    let out = run(&s, &p, &["wait", "summer", &id, "-o", "json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["job_status"]["status"], "status_succeeded");

    let p = deploy_batch(&s, "odd", ODD_FAILS, "");
    let body = json!({"workers": 1, "item_list": {"items": [1, 2, 3, 4], "batch_size": 1}});
    let id = submit(&s, "odd", body);
    let out = run(&s, &p, &["wait", "odd", &id]);
    failed_with(
        &out,
        &[
            &format!("error: job {id} of odd ended: completed with failures"),
            "batches: 2 succeeded, 2 failed, 4 in all",
            &format!("{id}-0 (delivered once): predict raised ValueError: odd batch [1]"),
        ],
    );
}

/// The fenced bash block under the README's `## CI` heading.
fn readme_ci_script() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("\n## CI\n")
        .nth(1)
        .expect("README.md has a `## CI` section");
    let block = section
        .split("```bash\n")
        .nth(1)
        .expect("the CI section has a ```bash block");
    block.split("\n```").next().unwrap().to_string()
}

#[test]
fn the_readme_ci_script_deploys_predicts_and_deletes() {
    for tool in ["jq", "curl", "bash"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        assert!(
            found.status.success(),
            "the README's CI script needs {tool}"
        );
    }
    let s = Server::start();
    let p = s.example_project("python-realtime");
    let script = readme_ci_script();
    // `cortex` on the PATH is the binary under test; the server is the CI's, through
    // CORTEX_ENDPOINT and CORTEX_TOKEN as the README says.
    let bin_dir = crate::harness::cortex_bin().parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let mut cmd = Command::new("bash");
    cmd.args(["-e", "-c", &script])
        .current_dir(&p)
        .env("PATH", path)
        .env("CORTEX_CLI_CONFIG_DIR", s.cli_dir())
        .env("CORTEX_ENDPOINT", &s.url)
        .env("CORTEX_TOKEN", &s.token)
        .env_remove("CORTEX_ENV")
        .stdin(Stdio::null());
    let out = finish(cmd);
    let (text, err) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "stdout:\n{text}\nstderr:\n{err}");
    assert!(text.contains("setosa"), "{text}");
    assert!(s.api_json("iris-classifier").is_none(), "deleted: {text}");
}

/// Reports an error to its deployment with its job token, then exits 3.
const REPORTS_AND_EXITS: &str = r#"import json, os, sys, urllib.request
req = urllib.request.Request(
    os.environ["CORTEX_SERVER_URL"] + "/api/v2/deploy/log",
    data=json.dumps({"level": "error", "message": "model file missing"}).encode(),
    headers={"Authorization": "Bearer " + os.environ["CORTEX_JOB_TOKEN"], "Content-Type": "application/json"},
)
urllib.request.urlopen(req).read()
sys.exit(3)
"#;

#[test]
fn a_failed_wait_says_the_errors_its_deployment_reported() {
    let s = Server::start();
    let p = s.project("reported");
    write(&p, "worker.py", REPORTS_AND_EXITS);
    write(
        &p,
        "cortex.yaml",
        "- name: reported\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: python3 worker.py\n",
    );
    let out = run(&s, &p, &["deploy", "--wait"]);
    failed_with(&out, &["model file missing", "exited with status 3"]);
    let out = run(&s, &p, &["wait", "reported"]);
    failed_with(&out, &["model file missing"]);
}

#[test]
fn a_wait_whose_deploy_another_one_undid_fails_at_once() {
    let s = Server::start();
    let gate = s.dir.path().join("gate");
    // Version b waits for a gate that never opens; version a starts at once.
    let slow = format!(
        "import os, time\n\nclass PythonPredictor:\n    def __init__(self, config):\n        while not os.path.exists({gate:?}):\n            time.sleep(0.05)\n\n    def predict(self, payload):\n        return 'b'\n",
        gate = gate.display().to_string()
    );
    let p = s.python_project("flip", "RealtimeAPI", LEAN, "");
    let out = run(&s, &p, &["deploy", "--wait"]);
    assert!(out.status.success(), "{}", stderr(&out));
    write(&p, "predictor.py", &slow);
    let mut first = s.cortex();
    first
        .current_dir(&p)
        .args(["deploy", "--wait", "-y"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut first = first.spawn().unwrap();
    // Once its wait saw version b updating, a second deploy puts version a back.
    let progress = crate::harness::line_channel(first.stderr.take().unwrap());
    let seen = crate::harness::wait_line(&progress, "updating");
    write(&p, "predictor.py", LEAN);
    let out = run(&s, &p, &["deploy", "--force", "-y"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = crate::harness::wait_for("the first wait to end", DEADLINE, || {
        first.try_wait().ok().flatten()
    });
    let rest: Vec<String> = progress.iter().collect();
    let err = [seen, rest].concat().join("\n");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("is replaced by another deploy"), "{err}");
}
