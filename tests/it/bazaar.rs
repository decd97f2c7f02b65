//! The Model Bazaar v2 deployment API: the seed's requests and answers, parameters, job tokens
//! per deployment, and the deployment lifecycle against the real engine.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::harness::*;

/// A command predictor that writes its job token to `$TOKEN_FILE`, refuses to start (exit 3,
/// as a failed `__init__` does) while `$FAIL_FILE` exists, prints a line to stdout and one to
/// stderr, and echoes predictions.
const WORKER: &str = r#"
import http.server, json, os, sys

if os.path.exists(os.environ["FAIL_FILE"]):
    print("cortex: error: the model file is corrupt", file=sys.stderr, flush=True)
    sys.exit(3)
with open(os.environ["TOKEN_FILE"], "w") as f:
    f.write(os.environ["CORTEX_JOB_TOKEN"])
print("hello from stdout", flush=True)
print("hello from stderr", file=sys.stderr, flush=True)

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def reply(self, body):
        body = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self.reply({"ok": True})
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.reply({"echo": json.loads(self.rfile.read(n) or b"null"), "api": os.environ["CORTEX_API_NAME"]})

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["CORTEX_PORT"])), H).serve_forever()
"#;

/// A project with one worker API named `name`; its token and fail files live in the project.
pub struct Worker {
    pub dir: PathBuf,
    pub name: String,
}

impl Worker {
    pub fn new(s: &Server, name: &str) -> Worker {
        let dir = s.project(name);
        write(&dir, "worker.py", WORKER);
        let (token, fail) = (dir.join("token"), dir.join("fail"));
        write(
            &dir,
            "cortex.yaml",
            &format!(
                "- name: {name}\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: python3 worker.py\n    env:\n      TOKEN_FILE: {}\n      FAIL_FILE: {}\n",
                token.display(),
                fail.display()
            ),
        );
        Worker {
            dir,
            name: name.to_string(),
        }
    }

    fn token_file(&self) -> PathBuf {
        self.dir.join("token")
    }

    fn fail_file(&self) -> PathBuf {
        self.dir.join("fail")
    }

    /// Deploys with the CLI, waits until it is live, and returns its model id.
    pub fn deploy(&self, s: &Server) -> String {
        s.ok(&self.dir, &["deploy", "-y"]);
        let api = s.wait_status(&self.name, "live");
        api["model_id"].as_str().unwrap().to_string()
    }

    /// The job token its current replica was given (waits until a replica wrote one that
    /// differs from `not`).
    pub fn job_token(&self, not: Option<&str>) -> String {
        wait_for("the replica's job token", DEADLINE, || {
            let t = std::fs::read_to_string(self.token_file()).ok()?;
            (!t.is_empty() && Some(t.as_str()) != not).then_some(t)
        })
    }
}

/// `curl -s -X METHOD URL [-H Authorization] [-d BODY]`: status code and JSON body, the way
/// the seed document shows its requests.
pub fn curl(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> (u16, Value) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, url]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "-d", b]);
    }
    let out = cmd.output().expect("curl runs");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or(Value::String(body.to_string()))
    };
    (code.parse().unwrap(), value)
}

pub fn deploy_url(s: &Server, id: &str, rest: &str) -> String {
    format!("{}/api/v2/deploy/{id}{rest}", s.url)
}

/// Waits until the Model Bazaar status of `id` is `status`; returns the whole answer.
pub fn wait_deploy_status(s: &Server, id: &str, status: &str) -> Value {
    wait_for(&format!("model {id} to be {status}"), DEADLINE, || {
        let (code, v) = curl("GET", &deploy_url(s, id, "/status"), Some(&s.token), None);
        (code == 200 && v["status"] == status).then_some(v)
    })
}

#[test]
fn the_seeds_example_requests_get_the_seeds_answers() {
    let s = Server::start();
    let w = Worker::new(&s, "seeded");
    let id = w.deploy(&s);
    let t = Some(s.token.as_str());

    let seed_body = r#"{"deployment_name": "my-app", "autoscaling_enabled": true, "autoscaling_min": 1, "autoscaling_max": 4, "memory": 800}"#;
    assert_eq!(
        curl("POST", &deploy_url(&s, &id, ""), t, Some(seed_body)),
        (200, json!({}))
    );
    let status = wait_deploy_status(&s, &id, "complete");
    assert_eq!(
        status,
        json!({"status": "complete", "errors": [], "warnings": []})
    );
    // The same parameters again: nothing changes.
    let before = s.api_json("seeded").unwrap();
    assert_eq!(
        curl("POST", &deploy_url(&s, &id, ""), t, Some(seed_body)),
        (200, json!({}))
    );
    assert_eq!(
        s.api_json("seeded").unwrap()["deployment"]["number"],
        before["deployment"]["number"]
    );

    // The deployment name is a route; the overrides show in `cortex get`.
    let resp = s.predict("my-app", r#"{"x": 1}"#);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().unwrap()["api"], "seeded");
    let api = s.api_json("seeded").unwrap();
    assert_eq!(api["spec"]["autoscaling"]["min_replicas"], 1, "{api}");
    assert_eq!(api["spec"]["autoscaling"]["max_replicas"], 4, "{api}");
    assert_eq!(api["spec"]["compute"]["mem"], "800M", "{api}");
    assert_eq!(api["deployment"]["deployment_name"], "my-app", "{api}");
    let text = s.ok(s.dir.path(), &["get", "seeded"]);
    assert!(text.contains("max_replicas: 4"), "{text}");

    // Logs: one entry per replica, stdout and stderr apart.
    let (code, logs) = curl("GET", &deploy_url(&s, &id, "/logs"), t, None);
    assert_eq!(code, 200);
    let entries = logs.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{logs}");
    let (stdout, stderr) = (
        entries[0]["stdout"].as_str().unwrap(),
        entries[0]["stderr"].as_str().unwrap(),
    );
    assert!(
        stdout.contains("hello from stdout") && !stdout.contains("hello from stderr"),
        "{logs}"
    );
    assert!(
        stderr.contains("hello from stderr") && !stderr.contains("hello from stdout"),
        "{logs}"
    );

    // Undeploy: `{}`, stopped, no route; the model stays.
    assert_eq!(
        curl("DELETE", &deploy_url(&s, &id, ""), t, None),
        (200, json!({}))
    );
    assert_eq!(
        curl("GET", &deploy_url(&s, &id, "/status"), t, None),
        (
            200,
            json!({"status": "stopped", "errors": [], "warnings": []})
        )
    );
    assert_eq!(s.predict("my-app", "{}").status(), 404);
    assert_eq!(s.api_json("seeded").unwrap()["status"], "stopped");
    // Undeploying again is fine.
    assert_eq!(
        curl("DELETE", &deploy_url(&s, &id, ""), t, None),
        (200, json!({}))
    );
}

#[test]
fn a_deployment_reports_through_its_job_token_and_its_status_follows_reality() {
    let s = Server::start();
    let w = Worker::new(&s, "lifecycle");
    let other = Worker::new(&s, "other");
    let id = w.deploy(&s);
    let other_id = other.deploy(&s);
    let t = Some(s.token.as_str());
    let job = w.job_token(None);
    let other_job = other.job_token(None);

    // Warnings and errors through /log (POST, and GET as the seed writes it).
    let log = format!("{}/api/v2/deploy/log", s.url);
    assert_eq!(
        curl(
            "POST",
            &log,
            Some(&job),
            Some(r#"{"level": "warning", "message": "probably fine"}"#)
        ),
        (200, json!({}))
    );
    assert_eq!(
        curl(
            "GET",
            &log,
            Some(&job),
            Some(r#"{"level": "error", "message": "uh oh"}"#)
        ),
        (200, json!({}))
    );
    let (code, v) = curl(
        "POST",
        &log,
        Some(&job),
        Some(r#"{"level": "info", "message": "x"}"#),
    );
    assert_eq!(
        (code, v["kind"].as_str()),
        (422, Some("unprocessable")),
        "{v}"
    );

    // update-status in_progress, with metadata; status-internal equals status.
    let update = format!("{}/api/v2/deploy/update-status", s.url);
    assert_eq!(
        curl(
            "POST",
            &update,
            Some(&job),
            Some(r#"{"status": "in_progress", "metadata": {"key": "value"}}"#)
        ),
        (200, json!({}))
    );
    let expected =
        json!({"status": "in_progress", "errors": ["uh oh"], "warnings": ["probably fine"]});
    assert_eq!(
        curl("GET", &deploy_url(&s, &id, "/status"), t, None),
        (200, expected.clone())
    );
    let internal = format!("{}/api/v2/deploy/status-internal", s.url);
    assert_eq!(
        curl("GET", &internal, Some(&job), None),
        (200, expected.clone())
    );
    assert_eq!(
        curl(
            "GET",
            &deploy_url(&s, &id, "/status-internal"),
            Some(&job),
            None
        ),
        (200, expected.clone())
    );
    let api = s.api_json("lifecycle").unwrap();
    assert_eq!(
        api["deployment"]["metadata"],
        json!({"key": "value"}),
        "{api}"
    );
    assert_eq!(api["deployment"]["status"], "in_progress", "{api}");
    let (code, _) = curl("POST", &update, Some(&job), Some(r#"{"status": "done"}"#));
    assert_eq!(code, 422);

    // Tokens stay in their lane.
    assert_eq!(
        curl(
            "GET",
            &deploy_url(&s, &id, "/status-internal"),
            Some(&other_job),
            None
        )
        .0,
        403
    );
    assert_eq!(
        curl(
            "GET",
            &deploy_url(&s, &other_id, "/status-internal"),
            Some(&job),
            None
        )
        .0,
        403
    );
    assert_eq!(
        curl("GET", &internal, t, None).0,
        401,
        "a user token on a job route"
    );
    assert_eq!(
        curl("GET", &format!("{}/api/v2/apis", s.url), Some(&job), None).0,
        401
    );
    assert_eq!(
        curl("GET", &deploy_url(&s, &id, "/status"), Some(&job), None).0,
        401
    );

    // The replica dies and cannot start again: failed, with why.
    write(&w.dir, "fail", "");
    let pid = s.api_json("lifecycle").unwrap()["replicas"][0]["pid"]
        .as_i64()
        .unwrap();
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    // A deployment that reports owns its errors (as upstream's TestDeploy expects); why the
    // replica failed is in its logs.
    let failed = wait_deploy_status(&s, &id, "failed");
    assert_eq!(
        failed,
        json!({"status": "failed", "errors": ["uh oh"], "warnings": ["probably fine"]})
    );
    let text = s.ok(s.dir.path(), &["logs", "lifecycle"]);
    assert!(text.contains("the model file is corrupt"), "{text}");
    assert_eq!(
        curl("GET", &internal, Some(&job), None),
        (200, failed.clone())
    );
    assert_eq!(s.api_json("lifecycle").unwrap()["status"], "error");

    // Undeploy: stopped; the deployment's token still reads its status for a grace, but its
    // writes are refused.
    assert_eq!(
        curl("DELETE", &deploy_url(&s, &id, ""), t, None),
        (200, json!({}))
    );
    assert_eq!(wait_deploy_status(&s, &id, "stopped")["status"], "stopped");
    assert_eq!(
        curl(
            "POST",
            &update,
            Some(&job),
            Some(r#"{"status": "complete"}"#)
        )
        .0,
        409
    );
    assert_eq!(
        curl("GET", &internal, Some(&job), None).1["status"],
        "stopped"
    );

    // Redeploy once fixed: complete, with clean lists and a new token; earlier messages stay
    // readable with their deployment and time.
    std::fs::remove_file(w.fail_file()).unwrap();
    assert_eq!(
        curl("POST", &deploy_url(&s, &id, ""), t, None),
        (200, json!({}))
    );
    assert_eq!(
        wait_deploy_status(&s, &id, "complete"),
        json!({"status": "complete", "errors": [], "warnings": []})
    );
    let new_job = w.job_token(Some(&job));
    assert_eq!(
        curl("GET", &internal, Some(&new_job), None).1["status"],
        "complete"
    );
    let api = s.api_json("lifecycle").unwrap();
    let history = api["deployment"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{api}");
    assert!(
        history
            .iter()
            .all(|m| m["time"].as_i64().unwrap() > 0 && m["deployment"] == 1),
        "{api}"
    );
    assert!(api["deployment"]["number"].as_i64().unwrap() > 1, "{api}");
    let text = s.ok(s.dir.path(), &["get", "lifecycle"]);
    assert!(
        text.contains(&format!(
            "deployment {}: complete",
            api["deployment"]["number"]
        )),
        "{text}"
    );
    assert!(
        text.contains("warning (deployment 1, ") && text.contains("): probably fine"),
        "{text}"
    );
    assert!(
        text.contains("error (deployment 1, ") && text.contains("): uh oh"),
        "{text}"
    );
    assert!(text.contains(r#"metadata: {"key":"value"}"#), "{text}");
}

#[test]
fn a_superseded_deployment_cannot_report_complete() {
    let s = Server::start();
    let w = Worker::new(&s, "superseded");
    let id = w.deploy(&s);
    let old_job = w.job_token(None);
    // A new version that never starts: the old one keeps serving with its (valid) token.
    write(&w.dir, "fail", "");
    write(&w.dir, "changed.txt", "a new bundle");
    s.ok(&w.dir, &["deploy", "-y"]);
    wait_for("the new version to fail", DEADLINE, || {
        let api = s.api_json("superseded")?;
        (api["status"] == "error").then_some(())
    });
    assert_eq!(
        s.predict("superseded", "{}").status(),
        200,
        "the old version serves"
    );
    let update = format!("{}/api/v2/deploy/update-status", s.url);
    let (code, v) = curl(
        "POST",
        &update,
        Some(&old_job),
        Some(r#"{"status": "complete"}"#),
    );
    assert_eq!(code, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("superseded"), "{v}");
    wait_deploy_status(&s, &id, "failed");

    // Trying the failed version again keeps the old one serving while it fails again...
    let t = Some(s.token.as_str());
    assert_eq!(
        curl("POST", &deploy_url(&s, &id, ""), t, Some("{}")),
        (200, json!({}))
    );
    wait_deploy_status(&s, &id, "failed");
    assert_eq!(
        s.predict("superseded", "{}").status(),
        200,
        "the old version still serves"
    );
    // ...and once it is fixed, the new version takes over.
    std::fs::remove_file(w.fail_file()).unwrap();
    assert_eq!(
        curl("POST", &deploy_url(&s, &id, ""), t, Some("{}")),
        (200, json!({}))
    );
    wait_deploy_status(&s, &id, "complete");
    assert_eq!(s.predict("superseded", "{}").status(), 200);
    let new_job = w.job_token(Some(&old_job));
    assert_ne!(new_job, old_job);
}

#[test]
fn deploy_parameters_are_checked_and_deployment_names_are_unique() {
    let s = Server::start();
    let a = Worker::new(&s, "alpha");
    let b = Worker::new(&s, "beta");
    let a_id = a.deploy(&s);
    let b_id = b.deploy(&s);
    let t = Some(s.token.as_str());
    let post = |id: &str, body: Option<&str>| curl("POST", &deploy_url(&s, id, ""), t, body);

    assert_eq!(
        post(&a_id, Some(r#"{"deployment_name": "shared"}"#)),
        (200, json!({}))
    );
    for (body, code, needle) in [
        (r#"{"deployment_name": "shared"}"#, 409, "shared"),
        (r#"{"deployment_name": "alpha"}"#, 409, "alpha"),
        (
            r#"{"deployment_name": "Not A Name"}"#,
            422,
            "deployment_name",
        ),
        (
            r#"{"autoscaling_min": 3, "autoscaling_max": 2}"#,
            422,
            "autoscaling_min (3)",
        ),
        (r#"{"autoscaling_min": -1}"#, 422, "autoscaling_min"),
        (r#"{"memory": 0}"#, 422, "memory"),
        (r#"{"memory": "lots"}"#, 400, "memory"),
        ("{not json", 400, "not valid"),
    ] {
        let (got, v) = post(&b_id, Some(body));
        assert_eq!(got, code, "{body}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(needle),
            "{body}: {v}"
        );
    }
    // Nothing of the refused deploys stuck.
    assert_eq!(
        s.api_json("beta").unwrap()["deployment"]["deployment_name"],
        Value::Null
    );
    assert_eq!(
        s.predict("shared", "{}").json::<Value>().unwrap()["api"],
        "alpha"
    );

    let (code, v) = post("not-a-uuid", None);
    assert_eq!(
        (code, v["kind"].as_str()),
        (400, Some("bad_request")),
        "{v}"
    );
    let (code, v) = post("00000000-0000-4000-8000-000000000000", None);
    assert_eq!((code, v["kind"].as_str()), (404, Some("not_found")), "{v}");
    assert_eq!(curl("POST", &deploy_url(&s, &a_id, ""), None, None).0, 401);
    assert_eq!(
        curl("POST", &deploy_url(&s, &a_id, ""), Some("ctx_u_nope"), None).0,
        401
    );
}

#[test]
fn a_nearly_full_disk_refuses_deploys_with_507() {
    let mut s = Server::start();
    let w = Worker::new(&s, "full");
    let out = s.run(&w.dir, &["deploy", "-y"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Uploads and deploys are refused on a nearly full disk too: fill it after this one.
    s.set_env("CORTEX_MIN_FREE_DISK_MB", "999999999999");
    s.restart();
    let id = s.api_json("full").unwrap()["model_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, v) = curl("POST", &deploy_url(&s, &id, ""), Some(&s.token), None);
    assert_eq!(
        (code, v["kind"].as_str()),
        (507, Some("insufficient_storage")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("--min-free-disk-mb"),
        "{v}"
    );
}

#[test]
fn unknown_control_routes_say_so() {
    let s = Server::start();
    for path in ["/api/v2/nope", "/api/v2/deploy", "/api/v3/apis"] {
        let (code, v) = curl("GET", &format!("{}{path}", s.url), Some(&s.token), None);
        assert_eq!(
            (code, v["kind"].as_str()),
            (404, Some("not_found")),
            "{path}: {v}"
        );
        let message = v["message"].as_str().unwrap();
        assert!(
            message.contains(path) && message.contains("not a route"),
            "{v}"
        );
    }
}

#[test]
fn python_predictors_report_warnings_and_init_failures_through_the_shim() {
    let s = Server::start();
    let dir = s.project("reporting");
    write(
        &dir,
        "predictor.py",
        "import os\nimport cortex_runtime\n\nclass PythonPredictor:\n    def __init__(self, config):\n        cortex_runtime.warn('the model is a little stale')\n        if os.path.exists(config['fail_file']):\n            raise ValueError('bad weights')\n\n    def predict(self, payload):\n        return payload\n",
    );
    let fail = dir.join("fail");
    write(
        &dir,
        "cortex.yaml",
        &format!(
            "- name: reporting\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    config:\n      fail_file: {}\n",
            fail.display()
        ),
    );
    s.ok(&dir, &["deploy", "-y"]);
    let id = s.wait_status("reporting", "live")["model_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ok = wait_deploy_status(&s, &id, "complete");
    assert_eq!(
        ok["warnings"],
        json!(["the model is a little stale"]),
        "{ok}"
    );
    assert_eq!(ok["errors"], json!([]), "{ok}");

    // A new deployment whose __init__ raises: failed, with the error in the new lists.
    write(&dir, "fail", "");
    let t = Some(s.token.as_str());
    assert_eq!(
        curl(
            "POST",
            &deploy_url(&s, &id, ""),
            t,
            Some(r#"{"memory": 500}"#)
        ),
        (200, json!({}))
    );
    let failed = wait_deploy_status(&s, &id, "failed");
    let errors = failed["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e.as_str().unwrap()
            == "failed to initialise the predictor: ValueError: bad weights"),
        "{failed}"
    );
    assert_eq!(
        failed["warnings"],
        json!(["the model is a little stale"]),
        "{failed}"
    );
}

#[test]
fn a_predictor_saves_a_new_model_that_deploys_with_its_files() {
    let s = Server::start();
    let dir = s.project("trainer");
    write(&dir, "weights.txt", "v1\n");
    write(
        &dir,
        "predictor.py",
        r#"import os, tempfile
import cortex_runtime

class PythonPredictor:
    def __init__(self, config):
        with open(os.path.join(os.environ["CORTEX_PROJECT_DIR"], "weights.txt")) as f:
            self.weights = f.read().strip()

    def predict(self, payload):
        if "save_as" in payload:
            d = tempfile.mkdtemp()
            with open(os.path.join(d, "weights.txt"), "w") as f:
                f.write(payload["weights"])
            return {"model_id": cortex_runtime.save_model(payload["save_as"], d)}
        return {"weights": self.weights}
"#,
    );
    write(
        &dir,
        "cortex.yaml",
        "- name: trainer\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n",
    );
    s.ok(&dir, &["deploy", "-y"]);
    let base = s.wait_status("trainer", "live")["model_id"]
        .as_str()
        .unwrap()
        .to_string();
    let t = Some(s.token.as_str());
    let resp = s.predict("trainer", r#"{"save_as": "trainer-v2", "weights": "v2"}"#);
    assert_eq!(resp.status(), 200);
    let saved = resp.json::<Value>().unwrap()["model_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        curl("GET", &deploy_url(&s, &saved, "/status"), t, None),
        (
            200,
            json!({"status": "not_started", "errors": [], "warnings": []})
        )
    );
    assert_eq!(
        curl("POST", &deploy_url(&s, &saved, ""), t, None),
        (200, json!({}))
    );
    wait_deploy_status(&s, &saved, "complete");
    let answer = s.predict("trainer-v2", "{}").json::<Value>().unwrap();
    assert_eq!(
        answer,
        json!({"weights": "v2"}),
        "the saved files over the base's"
    );
    assert_eq!(
        s.predict("trainer", "{}").json::<Value>().unwrap(),
        json!({"weights": "v1"})
    );

    // A name that would pass for another one in a listing is refused, saying why.
    for (name, why) in [
        ("trainer\u{202e}\u{200b}", "invisible or text-direction"),
        ("trainer ", "space at either end"),
    ] {
        let body = json!({ "model_name": name }).to_string();
        let (code, v) = curl("POST", &deploy_url(&s, &base, "/save"), t, Some(&body));
        assert_eq!(code, 422, "{v}");
        assert!(v["message"].as_str().unwrap().contains(why), "{v}");
    }

    // The same through the API as a user: not deployable until its update token completes it,
    // and the update token touches nothing else.
    let (code, v) = curl(
        "POST",
        &deploy_url(&s, &base, "/save"),
        t,
        Some(r#"{"model_name": "trainer-v3"}"#),
    );
    assert_eq!(code, 200, "{v}");
    let (v3, update) = (
        v["model_id"].as_str().unwrap().to_string(),
        v["update_token"].as_str().unwrap().to_string(),
    );
    let (code, v) = curl("POST", &deploy_url(&s, &v3, ""), t, None);
    assert_eq!(code, 422, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("still being saved"),
        "{v}"
    );
    assert_eq!(
        curl(
            "PUT",
            &deploy_url(&s, &base, "/files"),
            Some(&update),
            Some("x")
        )
        .0,
        403
    );
    assert_eq!(
        curl(
            "GET",
            &deploy_url(&s, &base, "/status-internal"),
            Some(&update),
            None
        )
        .0,
        403
    );
    assert_eq!(
        curl(
            "GET",
            &deploy_url(&s, &base, "/status"),
            Some(&update),
            None
        )
        .0,
        401
    );
    let (code, v) = curl(
        "POST",
        &deploy_url(&s, &base, "/save"),
        t,
        Some(r#"{"model_name": "trainer-v3"}"#),
    );
    assert_eq!(code, 409, "{v}");
    let update_status = format!("{}/api/v2/deploy/update-status", s.url);
    assert_eq!(
        curl(
            "POST",
            &update_status,
            Some(&update),
            Some(r#"{"status": "complete"}"#)
        ),
        (200, json!({}))
    );
    assert_eq!(
        curl("POST", &deploy_url(&s, &v3, ""), t, None),
        (200, json!({}))
    );
    wait_deploy_status(&s, &v3, "complete");
    assert_eq!(
        s.predict("trainer-v3", "{}").json::<Value>().unwrap(),
        json!({"weights": "v1"})
    );
}

#[test]
fn a_restart_keeps_the_deployment_and_what_its_job_reported() {
    let mut s = Server::start();
    let w = Worker::new(&s, "kept");
    let id = w.deploy(&s);
    let number = s.api_json("kept").unwrap()["deployment"]["number"].clone();
    let job = w.job_token(None);
    let log = format!("{}/api/v2/deploy/log", s.url);
    let body = r#"{"level": "warning", "message": "the weights are a day old"}"#;
    assert_eq!(curl("POST", &log, Some(&job), Some(body)).0, 200);
    let update = format!("{}/api/v2/deploy/update-status", s.url);
    let body = r#"{"status": "in_progress", "metadata": {"stage": "warming"}}"#;
    assert_eq!(curl("POST", &update, Some(&job), Some(body)).0, 200);
    let expected =
        json!({"status": "in_progress", "errors": [], "warnings": ["the weights are a day old"]});
    assert_eq!(wait_deploy_status(&s, &id, "in_progress"), expected);

    // The replicas start again with the server: the same deployment, its job's last word
    // standing, and a new token for it (the old one went with the replicas).
    s.restart();
    let (log, update) = (
        format!("{}/api/v2/deploy/log", s.url),
        format!("{}/api/v2/deploy/update-status", s.url),
    );
    let again = w.job_token(Some(&job));
    assert_eq!(s.api_json("kept").unwrap()["deployment"]["number"], number);
    let (code, v) = curl("GET", &deploy_url(&s, &id, "/status"), Some(&s.token), None);
    assert_eq!((code, v), (200, expected));
    assert_eq!(
        curl(
            "POST",
            &log,
            Some(&job),
            Some(r#"{"level": "warning", "message": "x"}"#)
        )
        .0,
        401
    );
    assert_eq!(
        curl(
            "POST",
            &update,
            Some(&again),
            Some(r#"{"status": "complete"}"#)
        )
        .0,
        200
    );
    wait_deploy_status(&s, &id, "complete");
    assert_eq!(s.api_json("kept").unwrap()["deployment"]["number"], number);
}

#[test]
fn a_field_the_file_changes_after_a_model_bazaar_deploy_is_the_files_again() {
    let s = Server::start();
    let w = Worker::new(&s, "params");
    // The worker writes its token into the project: left out, the project stays as deployed.
    write(&w.dir, ".cortexignore", "token\n");
    let id = w.deploy(&s);
    let t = Some(s.token.as_str());
    let body = r#"{"deployment_name": "params-app", "autoscaling_enabled": true, "autoscaling_min": 1, "autoscaling_max": 3, "memory": 300}"#;
    assert_eq!(curl("POST", &deploy_url(&s, &id, ""), t, Some(body)).0, 200);
    wait_deploy_status(&s, &id, "complete");
    let api = s.api_json("params").unwrap();
    assert_eq!(api["spec"]["compute"]["mem"], "300M", "{api}");

    // The file now sets compute.mem: the later word is the file's. What it did not change
    // (the replica range, the extra route) stays as the Model Bazaar deploy set it.
    let yaml = std::fs::read_to_string(w.dir.join("cortex.yaml")).unwrap();
    write(
        &w.dir,
        "cortex.yaml",
        &format!("{yaml}  compute:\n    mem: 200M\n"),
    );
    let out = s.ok(&w.dir, &["deploy", "-y"]);
    assert!(out.starts_with("updating params (RealtimeAPI)"), "{out}");
    let api = s.wait_status("params", "live");
    assert_eq!(api["spec"]["compute"]["mem"], "200M", "{api}");
    assert_eq!(api["spec"]["autoscaling"]["max_replicas"], 3, "{api}");
    assert_eq!(api["deployment"]["deployment_name"], "params-app", "{api}");
    let out = s.ok(&w.dir, &["deploy", "-y"]);
    assert!(
        out.starts_with("params (RealtimeAPI) is up to date"),
        "{out}"
    );
    // A Model Bazaar deploy that says nothing of memory leaves the file's.
    assert_eq!(curl("POST", &deploy_url(&s, &id, ""), t, Some("{}")).0, 200);
    wait_deploy_status(&s, &id, "complete");
    assert_eq!(
        s.api_json("params").unwrap()["spec"]["compute"]["mem"],
        "200M"
    );
    // The file catching up with a parameter (250M both) changes nothing that runs, but is
    // the newest word: going back to 200M in the file is 200M again.
    let body = r#"{"deployment_name": "params-app", "memory": 250}"#;
    assert_eq!(curl("POST", &deploy_url(&s, &id, ""), t, Some(body)).0, 200);
    wait_deploy_status(&s, &id, "complete");
    let with_mem = |mem: &str| format!("{yaml}  compute:\n    mem: {mem}\n");
    write(&w.dir, "cortex.yaml", &with_mem("250M"));
    let out = s.ok(&w.dir, &["deploy", "-y"]);
    assert!(
        out.starts_with("params (RealtimeAPI) is up to date"),
        "{out}"
    );
    write(&w.dir, "cortex.yaml", &with_mem("200M"));
    let out = s.ok(&w.dir, &["deploy", "-y"]);
    assert!(out.starts_with("updating params (RealtimeAPI)"), "{out}");
    let api = s.wait_status("params", "live");
    assert_eq!(api["spec"]["compute"]["mem"], "200M", "{api}");
}
