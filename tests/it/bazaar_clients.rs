//! Model Bazaar's own clients, unchanged: the requests its Go SDK (`ModelClient.Deploy`,
//! `DeployWithName`, `AwaitDeploy`, `DeploymentHealthy`, `GetPermissions`, `UseApiKey`) and its
//! deployment job (`Reporter.update_deploy_status`, `get_deploy_status`, `save_model`,
//! `save_complete`, the permission check of its end users) send, byte for byte where the
//! server could tell, in the order they send them.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::bazaar::{curl, deploy_url, wait_deploy_status};
use crate::harness::*;
use crate::permissions::user;

/// What Go's `net/http` sends for the SDK's `c.Post(...).Json(body).Do(nil)`: the JSON as
/// `json.Encoder` writes it (with a newline), no Content-Type, `Go-http-client/1.1`, gzip.
fn go_sdk(method: &str, url: &str, token: &str, json: Option<&str>) -> (u16, Value) {
    let mut req = http()
        .request(method.parse().unwrap(), url)
        .header("User-Agent", "Go-http-client/1.1")
        .header("Authorization", format!("Bearer {token}"))
        .header("Accept-Encoding", "gzip");
    if let Some(body) = json {
        req = req.body(format!("{body}\n"));
    }
    let resp = req.send().unwrap();
    let code = resp.status().as_u16();
    let text = resp.text().unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The SDK's `AwaitDeploy`: polls `GET /api/v2/deploy/<id>/status`; `failed` or `stopped` end
/// it with an error, `complete` ends it once `GET /<deployment>/health` answers 200.
fn await_deploy(s: &Server, token: &str, model_id: &str, deployment: &str) -> Result<(), String> {
    wait_for("the SDK's AwaitDeploy", DEADLINE, || {
        let (code, status) = go_sdk("GET", &deploy_url(s, model_id, "/status"), token, None);
        if code != 200 {
            return Some(Err(format!("status answered {code}: {status}")));
        }
        match status["status"].as_str() {
            Some("failed" | "stopped") => Some(Err(format!("deploy has status: {status}"))),
            Some("complete") => {
                let url = format!("{}/{deployment}/health", s.url);
                (go_sdk("GET", &url, token, None).0 == 200).then_some(Ok(()))
            }
            _ => None,
        }
    })
}

const PREDICTOR: &str = r#"
class PythonPredictor:
    def __init__(self, config):
        pass

    def predict(self, payload):
        return {"echo": payload}
"#;

#[test]
fn the_go_sdk_deploys_and_awaits_by_model_id_and_by_deployment_name() {
    let s = Server::start();
    let t = s.token.clone();
    let p = s.python_project("ndb", "RealtimeAPI", PREDICTOR, "");
    s.ok(&p, &["deploy", "-y"]);
    let id = s.wait_status("ndb", "live")["model_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The SDK's Undeploy, then Deploy(false): `deployment_name` is "" when none is given.
    assert_eq!(
        go_sdk("DELETE", &deploy_url(&s, &id, ""), &t, None),
        (200, json!({}))
    );
    assert_eq!(
        go_sdk(
            "POST",
            &deploy_url(&s, &id, ""),
            &t,
            Some(r#"{"autoscaling_enabled":false,"deployment_name":""}"#)
        ),
        (200, json!({}))
    );
    await_deploy(&s, &t, &id, &id).unwrap();
    // The health probe is the replica's own `GET /health`.
    assert_eq!(
        go_sdk("GET", &format!("{}/{id}/health", s.url), &t, None),
        (200, json!({"status": "success"}))
    );
    assert_eq!(
        s.api_json("ndb").unwrap()["deployment"]["deployment_name"],
        Value::Null
    );

    // DeployWithName with upstream's own test name; ClientForDeployment probes through it.
    assert_eq!(
        go_sdk(
            "POST",
            &deploy_url(&s, &id, ""),
            &t,
            Some(r#"{"autoscaling_enabled":false,"deployment_name":"custom_deployment_name"}"#)
        ),
        (200, json!({}))
    );
    await_deploy(&s, &t, &id, "custom_deployment_name").unwrap();
    let resp = s.predict("custom_deployment_name", r#"{"q": 1}"#);
    assert_eq!(resp.json::<Value>().unwrap(), json!({"echo": {"q": 1}}));
    // `/<api>` keeps its meaning; a prediction through the prefix is the replica's `POST /`.
    let resp = http()
        .post(format!("{}/{id}/", s.url))
        .header("content-type", "application/json")
        .body(r#"{"q": 2}"#)
        .send()
        .unwrap();
    assert_eq!(resp.json::<Value>().unwrap(), json!({"echo": {"q": 2}}));
    assert_eq!(s.predict("ndb", r#"{"q": 3}"#).status(), 200);

    // Undeployed: the SDK's wait ends with the status, and the prefixes route nowhere.
    assert_eq!(
        go_sdk("DELETE", &deploy_url(&s, &id, ""), &t, None),
        (200, json!({}))
    );
    let err = await_deploy(&s, &t, &id, &id).unwrap_err();
    assert!(err.contains("stopped"), "{err}");
    let (code, v) = go_sdk("GET", &format!("{}/{id}/health", s.url), &t, None);
    assert_eq!((code, v["kind"].as_str()), (404, Some("not_found")), "{v}");
}

/// A command predictor that echoes what reached it: method, path (with the query) and body.
const ECHO: &str = r#"
import http.server, json, os

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode()
        out = json.dumps({"method": self.command, "path": self.path, "body": body,
                          "authorization": self.headers.get("Authorization"),
                          "api_key": self.headers.get("X-API-Key")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["CORTEX_PORT"])), H).serve_forever()
"#;

fn echo_project(s: &Server, name: &str) -> PathBuf {
    let dir = s.project(name);
    write(&dir, "echo.py", ECHO);
    write(
        &dir,
        "cortex.yaml",
        &format!("- name: {name}\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: python3 echo.py\n"),
    );
    dir
}

#[test]
fn prefix_routes_pass_any_method_and_the_query_under_the_same_access_rules() {
    let s = Server::start_on("0.0.0.0:0");
    let olive = user(&s, "olive");
    let sam = user(&s, "sam");
    let dir = echo_project(&s, "routed");
    crate::permissions::cortex_as(&s, &olive, &dir, &["deploy", "-y"]);
    let id = s.wait_status("routed", "live")["model_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        curl(
            "POST",
            &deploy_url(&s, &id, ""),
            Some(&olive),
            Some(r#"{"deployment_name": "my.app_v2"}"#)
        )
        .0,
        200
    );
    wait_deploy_status(&s, &id, "complete");
    for prefix in [id.as_str(), "my.app_v2"] {
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            let resp = http()
                .request(
                    method.parse().unwrap(),
                    format!("{}/{prefix}/search/v1?q=a%20b&top=5", s.url),
                )
                .bearer_auth(&olive)
                .body("payload")
                .send()
                .unwrap();
            assert_eq!(resp.status(), 200, "{method} {prefix}");
            let v: Value = resp.json().unwrap();
            assert_eq!(v["method"], method, "{v}");
            assert_eq!(v["path"], "/search/v1?q=a%20b&top=5", "{v}");
            assert_eq!(v["body"], "payload", "{v}");
            // The caller's token is the server's to check, not the replica's to keep.
            assert_eq!(v["authorization"], Value::Null, "{v}");
        }
        // An API key works as a bearer token does, and is not passed on either.
        let v: Value = http()
            .get(format!("{}/{prefix}/health", s.url))
            .header("X-API-Key", &olive)
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(
            (&v["path"], &v["api_key"]),
            (&json!("/health"), &Value::Null)
        );
        // Beyond loopback, a private model's routes need read access, as predictions do.
        let url = format!("{}/{prefix}/health", s.url);
        let resp = http().get(&url).send().unwrap();
        assert_eq!(resp.status(), 401);
        let resp = http().get(&url).bearer_auth(&sam).send().unwrap();
        assert_eq!(resp.status(), 403);
    }
    // An API may not take a path under another model's prefixes.
    let intruder = s.project("intruder");
    write(&intruder, "echo.py", ECHO);
    write(
        &intruder,
        "cortex.yaml",
        &format!("- name: intruder\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: python3 echo.py\n  networking:\n    endpoint: /{id}/health\n"),
    );
    let out = s.run(&intruder, &["deploy", "-y"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("where api routed serves every path"),
        "{}",
        stderr(&out)
    );
    // Names a URL segment cannot carry, and model ids, are refused with what to change.
    for (name, needle) in [
        ("has space", "not a URL path segment"),
        ("..", "not a name a URL can carry"),
        (id.as_str(), "is a model id"),
        (&"x".repeat(65), "not a URL path segment"),
    ] {
        let body = json!({ "deployment_name": name }).to_string();
        let (code, v) = curl("POST", &deploy_url(&s, &id, ""), Some(&olive), Some(&body));
        assert_eq!(code, 422, "{name}: {v}");
        assert!(v["message"].as_str().unwrap().contains(needle), "{v}");
    }
}

/// Upstream's deployment job, as its `main.py` and `Reporter` run it: reports `complete`
/// (here at once, before it listens, so before the gateway sees it ready), or `failed` and
/// exits on a bad start, or `failed` and serves on; asks `status-internal` from its shutdown
/// hook and records the answer.
const JOB: &str = r#"
import http.server, json, os, signal, sys, urllib.error, urllib.request

API = os.environ["CORTEX_SERVER_URL"].rstrip("/") + "/"
TOKEN = os.environ["CORTEX_JOB_TOKEN"]
OUT = os.environ["OUT_DIR"]

def request(method, suffix, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(API + suffix, data=data, method=method)
    req.add_header("User-Agent", "NDB Deployment job")
    req.add_header("Authorization", "Bearer " + TOKEN)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return [r.status, json.loads(r.read() or b"null")]
    except urllib.error.HTTPError as e:
        return [e.code, json.loads(e.read() or b"null")]

def mode():
    try:
        with open(os.path.join(OUT, "mode")) as f:
            return f.read().strip()
    except FileNotFoundError:
        return "ok"

with open(os.path.join(OUT, "token"), "w") as f:
    f.write(TOKEN)
if mode() == "bad-start":
    request("POST", "api/v2/deploy/update-status", {"status": "failed"})
    sys.exit(1)
said = "failed" if mode() == "say-failed" else "complete"
with open(os.path.join(OUT, "reported"), "w") as f:
    json.dump(request("POST", "api/v2/deploy/update-status", {"status": said}), f)

def shutdown(*_):
    answer = request("GET", "api/v2/deploy/status-internal")
    with open(os.path.join(OUT, "shutdown"), "a") as f:
        f.write(json.dumps({"token": TOKEN, "answer": answer}) + "\n")
    os._exit(0)

signal.signal(signal.SIGTERM, shutdown)

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def do_GET(self):
        out = json.dumps({"status": "success"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_POST = do_GET

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["CORTEX_PORT"])), H).serve_forever()
"#;

struct Job {
    dir: PathBuf,
    out: PathBuf,
}

impl Job {
    fn new(s: &Server, name: &str) -> Job {
        let dir = s.project(name);
        let out = s.project(&format!("{name}-out"));
        write(&dir, "job.py", JOB);
        let job = Job { dir, out };
        job.configure(name, "1");
        job
    }

    /// The project's cortex.yaml; a new `version` makes a new version of it.
    fn configure(&self, name: &str, version: &str) {
        write(
            &self.dir,
            "cortex.yaml",
            &format!(
                "- name: {name}\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: python3 job.py\n    env:\n      OUT_DIR: {}\n      VERSION: \"{version}\"\n",
                self.out.display()
            ),
        );
    }

    fn set_mode(&self, mode: &str) {
        write(&self.out, "mode", mode);
    }

    fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.out.join(file)).ok()
    }

    /// The answers its shutdown hooks got, one per replica that stopped.
    fn shutdowns(&self) -> Vec<Value> {
        self.read("shutdown")
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn get_status(s: &Server, id: &str) -> Value {
    curl("GET", &deploy_url(s, id, "/status"), Some(&s.token), None).1
}

#[test]
fn the_deployment_job_reports_every_seed_status_and_complete_before_ready_is_kept() {
    let s = Server::start();
    let job = Job::new(&s, "job");
    s.ok(&job.dir, &["deploy", "-y"]);
    let id = s.wait_status("job", "live")["model_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Its `complete`, sent before the gateway saw it ready, was recorded.
    let reported: Value = serde_json::from_str(&job.read("reported").unwrap()).unwrap();
    assert_eq!(reported, json!([200, {}]));
    assert_eq!(
        get_status(&s, &id),
        json!({"status": "complete", "errors": [], "warnings": []})
    );
    let first_token = job.read("token").unwrap();

    // Every status of the seed is the job's to report; unknown ones are 422.
    let update = format!("{}/api/v2/deploy/update-status", s.url);
    for status in [
        "starting",
        "in_progress",
        "stopped",
        "not_started",
        "failed",
        "complete",
    ] {
        let body = json!({ "status": status, "extra": "ignored" }).to_string();
        assert_eq!(
            curl("POST", &update, Some(&first_token), Some(&body)),
            (200, json!({})),
            "{status}"
        );
        assert_eq!(get_status(&s, &id)["status"], status);
    }
    let (code, v) = curl(
        "POST",
        &update,
        Some(&first_token),
        Some(r#"{"status": "done"}"#),
    );
    assert_eq!(
        (code, v["kind"].as_str()),
        (422, Some("unprocessable")),
        "{v}"
    );
    // `metadata: {}`, none, or a null body leave what is stored.
    let meta = r#"{"status": "complete", "metadata": {"k": "v"}}"#;
    assert_eq!(curl("POST", &update, Some(&first_token), Some(meta)).0, 200);
    for body in [
        r#"{"status": "complete", "metadata": {}}"#,
        r#"{"status": "complete"}"#,
    ] {
        assert_eq!(curl("POST", &update, Some(&first_token), Some(body)).0, 200);
    }
    assert_eq!(
        curl("POST", &update, Some(&first_token), Some("null")).0,
        422
    );
    assert_eq!(
        s.api_json("job").unwrap()["deployment"]["metadata"],
        json!({"k": "v"})
    );
}

#[test]
fn a_retired_deployments_token_reads_its_status_from_its_shutdown_hook_then_ends() {
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_JOB_TOKEN_GRACE_SECS", "3")]);
    let job = Job::new(&s, "job");
    s.ok(&job.dir, &["deploy", "-y"]);
    let id = s.wait_status("job", "live")["model_id"]
        .as_str()
        .unwrap()
        .to_string();
    let first_token = job.read("token").unwrap();
    let update = format!("{}/api/v2/deploy/update-status", s.url);

    // A redeploy: the old replica's shutdown hook still reads the status; its writes are 409.
    job.configure("job", "2");
    s.ok(&job.dir, &["deploy", "-y"]);
    let shutdowns = wait_for("the old replica's shutdown hook", DEADLINE, || {
        let all = job.shutdowns();
        (!all.is_empty()).then_some(all)
    });
    assert_eq!(shutdowns[0]["token"], first_token.as_str());
    assert_eq!(shutdowns[0]["answer"][0], 200, "{shutdowns:?}");
    let second_token = wait_for("the new replica's token", DEADLINE, || {
        job.read("token").filter(|t| *t != first_token)
    });
    let (code, v) = curl(
        "POST",
        &update,
        Some(&first_token),
        Some(r#"{"status": "failed"}"#),
    );
    assert_eq!((code, v["kind"].as_str()), (409, Some("conflict")), "{v}");
    let log = format!("{}/api/v2/deploy/log", s.url);
    let warning = r#"{"level": "warning", "message": "late"}"#;
    assert_eq!(curl("POST", &log, Some(&first_token), Some(warning)).0, 409);

    // An undeploy: the hook hears `stopped`; a short grace later the token is gone (401).
    assert_eq!(
        curl("DELETE", &deploy_url(&s, &id, ""), Some(&s.token), None).0,
        200
    );
    let answer = wait_for("the undeployed replica's shutdown hook", DEADLINE, || {
        job.shutdowns()
            .into_iter()
            .find(|l| l["token"] == second_token.as_str())
    });
    assert_eq!(
        answer["answer"],
        json!([200, {"status": "stopped", "errors": [], "warnings": []}])
    );
    assert_eq!(
        curl(
            "POST",
            &update,
            Some(&second_token),
            Some(r#"{"status": "complete"}"#)
        )
        .0,
        409
    );
    let internal = format!("{}/api/v2/deploy/status-internal", s.url);
    wait_for("the retired token to be revoked", DEADLINE, || {
        (curl("GET", &internal, Some(&second_token), None).0 == 401).then_some(())
    });
}

#[test]
fn a_job_that_said_failed_stays_failed_and_a_bad_start_fails() {
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_RECONCILE_SECS", "1")]);
    // `failed` from a job that serves on: its replica is ready, its status stays `failed`.
    let job = Job::new(&s, "stubborn");
    job.set_mode("say-failed");
    s.ok(&job.dir, &["deploy", "-y"]);
    let api = s.wait_status("stubborn", "live");
    let id = api["model_id"].as_str().unwrap().to_string();
    let reported: Value = serde_json::from_str(&job.read("reported").unwrap()).unwrap();
    assert_eq!(reported, json!([200, {}]));
    // Two reconcile passes after it was live, the job's word still stands.
    for _ in 0..3 {
        s.wait_status("stubborn", "live");
        assert_eq!(
            get_status(&s, &id),
            json!({"status": "failed", "errors": [], "warnings": []})
        );
    }

    // A bad start: the job says `failed` and exits; the status says so, with no server prose.
    let bad = Job::new(&s, "badstart");
    bad.set_mode("bad-start");
    s.ok(&bad.dir, &["deploy", "-y"]);
    let bad_id = wait_for("badstart's model id", DEADLINE, || {
        s.api_json("badstart")
            .and_then(|v| v["model_id"].as_str().map(str::to_string))
    });
    assert_eq!(
        wait_deploy_status(&s, &bad_id, "failed"),
        json!({"status": "failed", "errors": [], "warnings": []})
    );
}

/// Upstream's `TestDeploy`, request for request: a deploy that is `starting`, a warning and an
/// error through `/deploy/log`, `in_progress`, `status-internal` equal to `status`, the job
/// gone (`failed`), an undeploy (`stopped`): `errors` and `warnings` are exactly what the job
/// logged, every time.
#[test]
fn upstreams_test_deploy_sequence_gets_exactly_its_lists() {
    let s = Server::start();
    let dir = s.project("xyz");
    let gate = s.project("xyz-gate");
    // The job waits for the gate before it listens: the deploy stays `starting` until then.
    write(
        &dir,
        "job.py",
        &format!(
            "import os, sys, time\nif os.path.exists({fail:?}):\n    sys.exit(3)\nwhile not os.path.exists({open:?}):\n    time.sleep(0.02)\n{ECHO}",
            fail = gate.join("fail").display().to_string(),
            open = gate.join("open").display().to_string(),
        ),
    );
    write(
        &dir,
        "cortex.yaml",
        "- name: xyz\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: python3 job.py\n",
    );
    s.ok(&dir, &["deploy", "-y"]);
    let id = wait_for("xyz's model id", DEADLINE, || {
        s.api_json("xyz")
            .and_then(|v| v["model_id"].as_str().map(str::to_string))
    });
    let empty = json!({"status": "starting", "errors": [], "warnings": []});
    assert_eq!(get_status(&s, &id), empty);
    let token = wait_for("the job token", DEADLINE, || job_token_of(&s, "xyz"));
    let log = format!("{}/api/v2/deploy/log", s.url);
    for body in [
        r#"{"level":"warning","message":"probably fine"}"#,
        r#"{"level":"error","message":"uh oh"}"#,
    ] {
        assert_eq!(go_sdk("POST", &log, &token, Some(body)), (200, json!({})));
    }
    let update = format!("{}/api/v2/deploy/update-status", s.url);
    assert_eq!(
        go_sdk("POST", &update, &token, Some(r#"{"status":"in_progress"}"#)),
        (200, json!({}))
    );
    let lists = |status: &str| json!({"status": status, "errors": ["uh oh"], "warnings": ["probably fine"]});
    assert_eq!(get_status(&s, &id), lists("in_progress"));
    let internal = format!("{}/api/v2/deploy/status-internal", s.url);
    assert_eq!(
        go_sdk("GET", &internal, &token, None),
        (200, lists("in_progress"))
    );
    // The job goes away for good: `failed`, and the lists stay the job's.
    write(&gate, "open", "");
    s.wait_status("xyz", "live");
    write(&gate, "fail", "");
    let pid = s.api_json("xyz").unwrap()["replicas"][0]["pid"]
        .as_i64()
        .unwrap();
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    assert_eq!(wait_deploy_status(&s, &id, "failed"), lists("failed"));
    assert_eq!(
        curl("DELETE", &deploy_url(&s, &id, ""), Some(&s.token), None).0,
        200
    );
    assert_eq!(get_status(&s, &id), lists("stopped"));
}

/// The job token a replica of `api` was given (the echo worker does not write it: read the
/// process's environment, as root may).
fn job_token_of(s: &Server, api: &str) -> Option<String> {
    let pid = s.api_json(api)?["replicas"][0]["pid"].as_i64()?;
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("CORTEX_JOB_TOKEN="))
        .map(str::to_string)
}

#[test]
fn a_save_by_the_deployment_job_completes_through_train_update_status_and_deploys() {
    let s = Server::start();
    let p = s.python_project("base", "RealtimeAPI", PREDICTOR, "");
    s.ok(&p, &["deploy", "-y"]);
    let base = s.wait_status("base", "live")["model_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The job's `save_model` with the user's API key, the seed's own name.
    let resp = http()
        .post(deploy_url(&s, &base, "/save"))
        .header("User-Agent", "NDB Deployment job")
        .header("X-API-Key", &s.token)
        .json(&json!({"model_name": "name for new saved model"}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let saved: Value = resp.json().unwrap();
    let (new_id, update) = (
        saved["model_id"].as_str().unwrap().to_string(),
        saved["update_token"].as_str().unwrap().to_string(),
    );
    // The SDK's AwaitTrain sees it in progress until the job completes the save.
    let train_status = format!("{}/api/v2/train/{new_id}/status", s.url);
    assert_eq!(
        go_sdk("GET", &train_status, &s.token, None),
        (
            200,
            json!({"status": "in_progress", "errors": [], "warnings": []})
        )
    );
    let (code, v) = curl("POST", &deploy_url(&s, &new_id, ""), Some(&s.token), None);
    assert_eq!(code, 422, "not deployable while being saved: {v}");
    // `save_complete`: POST api/v2/train/update-status with the update token, as `requests`
    // sends it; a second `complete` is fine too.
    let complete = format!("{}/api/v2/train/update-status", s.url);
    for _ in 0..2 {
        let resp = http()
            .post(&complete)
            .header("User-Agent", "NDB Deployment job")
            .bearer_auth(&update)
            .json(&json!({"status": "complete"}))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(
        go_sdk("GET", &train_status, &s.token, None).1["status"],
        "complete"
    );
    assert_eq!(
        curl("POST", &deploy_url(&s, &new_id, ""), Some(&s.token), None),
        (200, json!({}))
    );
    wait_deploy_status(&s, &new_id, "complete");
    // Its name is what the job gave; its route is derived from it.
    let api = s.wait_status("name for new saved model", "live");
    assert_eq!(api["name"], "name for new saved model", "{api}");
    assert!(
        api["endpoint"]
            .as_str()
            .unwrap()
            .ends_with("/name-for-new-saved-model"),
        "{api}"
    );
    let resp = s.predict("name-for-new-saved-model", r#"{"x": 1}"#);
    assert_eq!(resp.json::<Value>().unwrap(), json!({"echo": {"x": 1}}));
    let table = s.ok(s.dir.path(), &["get"]);
    assert!(table.contains("name for new saved model"), "{table}");
    // A second model of that name is a conflict; another name with the same route gets its
    // own.
    let save = |name: &str| {
        let body = json!({ "model_name": name }).to_string();
        curl(
            "POST",
            &deploy_url(&s, &base, "/save"),
            Some(&s.token),
            Some(&body),
        )
    };
    assert_eq!(save("name for new saved model").0, 409);
    let (code, other) = save("Name For New Saved Model");
    assert_eq!(code, 200, "{other}");
    let other_id = other["model_id"].as_str().unwrap();
    let other_api = wait_for("the second saved model", DEADLINE, || {
        s.api_json("Name For New Saved Model")
    });
    assert_eq!(other_api["model_id"], other_id);
    let endpoint = other_api["endpoint"].as_str().unwrap();
    assert!(
        endpoint.contains("/name-for-new-saved-model-") && !endpoint.ends_with("-model"),
        "{endpoint}"
    );
    let (code, v) = save("");
    assert_eq!(
        (code, v["kind"].as_str()),
        (422, Some("unprocessable")),
        "{v}"
    );
    // The update token of a save does not report a deployment's status.
    let train_by_deployment = curl(
        "POST",
        &complete,
        Some(&job_token_of(&s, "base").unwrap()),
        Some(r#"{"status": "complete"}"#),
    );
    assert_eq!(train_by_deployment.0, 403, "{train_by_deployment:?}");
}

#[test]
fn permissions_route_answers_as_upstream_and_api_keys_work_on_model_routes() {
    let s = Server::start();
    let olive = user(&s, "olive");
    let sam = user(&s, "sam");
    let dir = echo_project(&s, "owned");
    crate::permissions::cortex_as(&s, &olive, &dir, &["deploy", "-y"]);
    let id = s.wait_status("owned", "live")["model_id"]
        .as_str()
        .unwrap()
        .to_string();
    let url = format!("{}/api/v2/model/{id}/permissions", s.url);
    let ask = |key: Option<&str>, bearer: Option<&str>| {
        let mut req = http().get(&url);
        if let Some(k) = key {
            req = req.header("X-API-Key", k);
        }
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let resp = req.send().unwrap();
        (resp.status().as_u16(), resp.json::<Value>().unwrap())
    };
    let (code, v) = ask(None, Some(&olive));
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (&v["read"], &v["write"], &v["owner"], &v["username"]),
        (&json!(true), &json!(true), &json!(true), &json!("olive"))
    );
    assert_eq!(
        v["exp"], "9999-12-31T23:59:59Z",
        "a token that does not expire"
    );
    let (code, v) = ask(Some(&sam), None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (&v["read"], &v["write"], &v["owner"], &v["username"]),
        (&json!(false), &json!(false), &json!(false), &json!("sam"))
    );
    assert_eq!(ask(Some("ctx_u_nope"), None).0, 401);
    assert_eq!(ask(None, None).0, 401);
    // A token that expires says when.
    let expiring: Value = serde_json::from_str(&crate::permissions::cortex_as(
        &s,
        &olive,
        s.dir.path(),
        &["tokens", "create", "--expires-in", "1h", "-o", "json"],
    ))
    .unwrap();
    let (_, v) = ask(Some(expiring["token"].as_str().unwrap()), None);
    assert!(v["exp"].as_str().unwrap().starts_with("20"), "{v}");
    assert_ne!(v["exp"], "9999-12-31T23:59:59Z");

    // A token scoped to the model, as an API key, on its deploy routes.
    let scoped: Value = serde_json::from_str(&crate::permissions::cortex_as(
        &s,
        &olive,
        s.dir.path(),
        &["tokens", "create", "--api", "owned", "-o", "json"],
    ))
    .unwrap();
    let key = scoped["token"].as_str().unwrap();
    let resp = http()
        .get(deploy_url(&s, &id, "/status"))
        .header("X-API-Key", key)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Permission is checked before the body: a stranger's bad body is a 403, not a 400.
    let (code, v) = curl(
        "POST",
        &deploy_url(&s, &id, ""),
        Some(&sam),
        Some("{not json"),
    );
    assert_eq!((code, v["kind"].as_str()), (403, Some("forbidden")), "{v}");
    // Unknown fields are ignored; a null body is `{}`.
    for body in [r#"{"autoscaling_enabled": false, "extra": [1]}"#, "null"] {
        assert_eq!(
            curl("POST", &deploy_url(&s, &id, ""), Some(&olive), Some(body)),
            (200, json!({})),
            "{body}"
        );
    }
}
