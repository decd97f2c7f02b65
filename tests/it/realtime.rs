//! Deploying RealtimeAPIs and calling them.

use crate::harness::*;

#[test]
fn python_example_deploys_and_answers_predictions() {
    let s = Server::start();
    let project = s.example_project("python-realtime");
    let out = s.ok(&project, &["deploy"]);
    assert!(
        out.starts_with("creating iris-classifier (RealtimeAPI)\n"),
        "{out}"
    );
    assert!(out.contains("cortex get iris-classifier"), "{out}");
    assert!(out.contains("cortex logs iris-classifier"), "{out}");

    let api = s.wait_status("iris-classifier", "live");
    assert!(api["model_id"].as_str().is_some_and(|id| !id.is_empty()));
    let endpoint = api["endpoint"].as_str().unwrap();
    assert_eq!(endpoint, format!("{}/iris-classifier", s.url));

    let sample = std::fs::read_to_string(project.join("sample.json")).unwrap();
    let resp = s.predict("iris-classifier", &sample);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().unwrap(), "setosa");

    let table = s.ok(&project, &["get"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("realtime api"), "{table}");
    for col in [
        "status",
        "up-to-date",
        "requested",
        "last update",
        "avg request",
        "2XX",
    ] {
        assert!(header.contains(col), "missing {col}: {table}");
    }
    assert!(!header.contains("5XX"), "5XX is hidden while zero: {table}");
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], &["iris-classifier", "live", "1", "1"], "{table}");
    assert_eq!(row.last(), Some(&"1"), "one 2XX request: {table}");

    let one = s.ok(&project, &["get", "iris-classifier"]);
    assert!(one.contains(&format!("endpoint: {endpoint}")), "{one}");
    assert!(
        one.contains(&format!("example curl: curl {endpoint} -X POST")),
        "{one}"
    );
    assert!(one.contains("configuration"), "{one}");
    assert!(one.contains("model_path: model.json"), "{one}");
}

#[test]
fn command_example_deploys_and_answers_predictions() {
    let s = Server::start();
    let project = s.example_project("command-realtime");
    let out = s.ok(&project, &["deploy"]);
    assert!(out.starts_with("creating reverser (RealtimeAPI)"), "{out}");
    s.wait_status("reverser", "live");
    let resp = s.predict("reverser", r#"{"text": "hello"}"#);
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["reversed"], "olleh");
}

const GREETER: &str = r#"
class PythonPredictor:
    def __init__(self, config):
        self.greeting = config["greeting"]

    def predict(self, payload, query_params):
        return {"message": self.greeting + " " + payload["name"], "q": query_params.get("q")}
"#;

fn greeter_config(greeting: &str) -> String {
    format!(
        "- name: greeter\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    config:\n      greeting: {greeting}\n"
    )
}

#[test]
fn redeploying_is_up_to_date_and_a_changed_config_updates() {
    let s = Server::start();
    let p = s.project("greeter");
    write(&p, "predictor.py", GREETER);
    write(&p, "cortex.yaml", &greeter_config("hello"));
    assert!(s
        .ok(&p, &["deploy"])
        .starts_with("creating greeter (RealtimeAPI)"));
    s.wait_status("greeter", "live");
    let v: serde_json::Value = s
        .predict("greeter?q=1", r#"{"name": "ada"}"#)
        .json()
        .unwrap();
    assert_eq!(v["message"], "hello ada");
    assert_eq!(v["q"], "1");

    let again = s.ok(&p, &["deploy"]);
    assert!(
        again.starts_with("greeter (RealtimeAPI) is up to date"),
        "{again}"
    );

    write(&p, "cortex.yaml", &greeter_config("bonjour"));
    let updated = s.ok(&p, &["deploy"]);
    assert!(
        updated.starts_with("updating greeter (RealtimeAPI)"),
        "{updated}"
    );
    wait_for("the new greeting to be served", DEADLINE, || {
        let v: serde_json::Value = s.predict("greeter", r#"{"name": "ada"}"#).json().ok()?;
        (v["message"] == "bonjour ada").then_some(())
    });
    wait_for("the old replica to stop", DEADLINE, || {
        let api = s.api_json("greeter")?;
        (api["status"] == "live" && api["replicas"].as_array()?.len() == 1).then_some(())
    });

    // A changed project file (not the config) is an update too.
    write(&p, "README.md", "docs");
    assert!(s.ok(&p, &["deploy"]).starts_with("updating greeter"));
}

#[test]
fn an_exception_in_init_makes_the_api_error_with_its_message() {
    let s = Server::start();
    let p = s.project("broken");
    write(
        &p,
        "predictor.py",
        "class PythonPredictor:\n    def __init__(self, config):\n        raise RuntimeError('the model file is missing')\n\n    def predict(self, payload):\n        return 1\n",
    );
    write(
        &p,
        "cortex.yaml",
        "- name: broken\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n",
    );
    s.ok(&p, &["deploy"]);
    let api = s.wait_status("broken", "error");
    let errors = api["errors"].to_string();
    assert!(
        errors.contains("RuntimeError: the model file is missing"),
        "{api}"
    );
    let text = s.ok(&p, &["get", "broken"]);
    assert!(text.lines().next().unwrap().starts_with("status"), "{text}");
    assert!(text.contains("error"), "{text}");
    assert!(
        text.contains(
            "failed to initialise the predictor: RuntimeError: the model file is missing"
        ),
        "{text}"
    );
    let resp = s.predict("broken", "{}");
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["kind"], "not_ready");
}

#[test]
fn an_exception_in_predict_is_a_500_with_the_traceback_in_the_logs() {
    let s = Server::start();
    let p = s.project("flaky");
    write(
        &p,
        "predictor.py",
        "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        if payload.get('fail'):\n            raise ValueError('bad input ' + str(payload['fail']))\n        return payload\n",
    );
    write(
        &p,
        "cortex.yaml",
        "- name: flaky\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("flaky", "live");
    assert_eq!(s.predict("flaky", r#"{"fail": 42}"#).status(), 500);
    assert_eq!(s.predict("flaky", r#"{"ok": 1}"#).status(), 200);
    let logs = wait_for("the traceback in the logs", DEADLINE, || {
        let logs = s.ok(&p, &["logs", "flaky"]);
        logs.contains("ValueError: bad input 42").then_some(logs)
    });
    assert!(logs.contains("Traceback"), "{logs}");
    let table = s.ok(&p, &["get"]);
    let header = table.lines().next().unwrap();
    assert!(header.ends_with("2XX   5XX"), "{table}");
}

#[test]
fn a_replica_killed_with_sigkill_is_restarted_and_serves_again() {
    let s = Server::start();
    let project = s.example_project("python-realtime");
    s.ok(&project, &["deploy"]);
    let api = s.wait_status("iris-classifier", "live");
    let pid = api["replicas"][0]["pid"].as_u64().unwrap() as i32;
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let api = wait_for("a new replica process", DEADLINE, || {
        let v = s.api_json("iris-classifier")?;
        let r = &v["replicas"][0];
        (v["status"] == "live" && r["pid"].as_u64()? as i32 != pid).then_some(v)
    });
    assert!(api["replicas"][0]["restarts"].as_u64().unwrap() >= 1);
    let sample = std::fs::read_to_string(project.join("sample.json")).unwrap();
    assert_eq!(
        s.predict("iris-classifier", &sample).text().unwrap(),
        "setosa"
    );
}

#[test]
fn predictor_env_and_dotenv_reach_the_replica() {
    let s = Server::start();
    let p = s.project("envy");
    write(
        &p,
        ".env",
        "FROM_DOTENV=dot\nOVERRIDDEN=from-dotenv\nEXPANDED=${FROM_SPEC}-$FROM_DOTENV\nLITERAL='$FROM_SPEC'\n",
    );
    write(
        &p,
        "predictor.py",
        "import os\n\nclass PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        out = {k: os.environ.get(k) for k in ['FROM_DOTENV', 'FROM_SPEC', 'OVERRIDDEN', 'EXPANDED', 'LITERAL', 'PYTHONPATH']}\n        out['CWD'] = os.getcwd()\n        return out\n",
    );
    write(
        &p,
        "cortex.yaml",
        "- name: envy\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    env:\n      FROM_SPEC: spec\n      OVERRIDDEN: from-spec\n      PYTHONPATH: /opt/extra\n",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("envy", "live");
    let v: serde_json::Value = s.predict("envy", "{}").json().unwrap();
    assert_eq!(v["FROM_DOTENV"], "dot");
    assert_eq!(v["FROM_SPEC"], "spec");
    assert_eq!(
        v["OVERRIDDEN"], "from-dotenv",
        ".env is sourced after the spec's env, as cortex 0.2x did: .env wins"
    );
    assert_eq!(v["EXPANDED"], "spec-dot", "$VAR and ${{VAR}} expand");
    assert_eq!(v["LITERAL"], "$FROM_SPEC", "single quotes stay literal");
    let python_path: Vec<&str> = v["PYTHONPATH"].as_str().unwrap().split(':').collect();
    assert_eq!(
        python_path[0], v["CWD"],
        "the project (the replica's working directory) comes first: {python_path:?}"
    );
    assert!(
        python_path.contains(&"/opt/extra"),
        "the spec's PYTHONPATH is kept: {python_path:?}"
    );
}

#[test]
fn several_processes_per_replica_serve_one_api() {
    let s = Server::start();
    let p = s.project("multi");
    write(
        &p,
        "predictor.py",
        "import os\n\nclass PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return os.getpid()\n",
    );
    write(
        &p,
        "cortex.yaml",
        "- name: multi\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    processes_per_replica: 2\n",
    );
    s.ok(&p, &["deploy"]);
    let api = s.wait_status("multi", "live");
    let parent = api["replicas"][0]["pid"].as_u64().unwrap();
    let worker: u64 = s.predict("multi", "{}").text().unwrap().parse().unwrap();
    assert_ne!(worker, parent, "predictions run in worker processes");
    s.logs_with(&p, &["multi"], "processes_per_replica=2");
}

#[test]
fn deploy_prints_cortex_style_hints() {
    let s = Server::start();
    let p = s.example_project("command-realtime");
    let out = s.ok(&p, &["deploy"]).replace(&s.url, "http://<server>");
    insta::assert_snapshot!(out, @r"
    creating reverser (RealtimeAPI)
    endpoint: http://<server>/reverser

    cortex get                  (show api statuses)
    cortex get reverser         (show api info)
    cortex logs reverser        (show api logs)
    ");
}

#[test]
fn get_api_output_reads_like_cortex() {
    let s = Server::start();
    let p = s.example_project("command-realtime");
    s.ok(&p, &["deploy"]);
    s.wait_status("reverser", "live");
    assert_eq!(s.predict("reverser", r#"{"text": "ab"}"#).status(), 200);
    let text = s.ok(&p, &["get", "reverser"]);
    // The table's age and latency change from run to run: check it apart from the snapshot.
    let (table, rest) = text.split_once("\n\n").unwrap();
    let mut lines = table.lines();
    assert_eq!(
        lines.next().unwrap(),
        "status   up-to-date   requested   last update   avg request   2XX"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        (row[0], row[1], row[2], row[6]),
        ("live", "1", "1", "1"),
        "{table}"
    );
    // One quick prediction: milliseconds, or seconds on a very slow machine.
    assert!(matches!(row[5], "ms" | "s"), "{table}");
    insta::with_settings!({filters => vec![(r"127\.0\.0\.1:\d+", "[HOST]")]}, {
        insta::assert_snapshot!(rest);
    });
    let yaml = s.ok(&p, &["get", "reverser", "-o", "yaml"]);
    assert!(yaml.contains("status: live"), "{yaml}");
    assert!(yaml.contains("model_id: "), "{yaml}");
}

#[test]
fn the_old_replica_serves_during_an_update_and_force_overrides_it() {
    let s = Server::start();
    let gate = s.dir.path().join("gate");
    let p = versioned_project(&s, "rolling");
    let config = |version: u32| versioned_config("rolling", version, &gate);
    write(&p, "cortex.yaml", &config(1));
    s.ok(&p, &["deploy"]);
    s.wait_status("rolling", "live");

    write(&p, "cortex.yaml", &config(2));
    assert!(s
        .ok(&p, &["deploy"])
        .starts_with("updating rolling (RealtimeAPI)"));
    let api = s.api_json("rolling").unwrap();
    assert_eq!(api["status"], "updating");
    assert_eq!(api["replicas"].as_array().unwrap().len(), 2, "{api}");
    // Version 2 is still initialising: version 1 keeps answering, as a stale replica.
    let v: serde_json::Value = s.predict("rolling", "{}").json().unwrap();
    assert_eq!(v["version"], 1);
    let table = s.ok(&p, &["get"]);
    let mut lines = table.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("realtime api   status     up-to-date   stale   requested"),
        "{table}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..5],
        &["rolling", "updating", "0", "1", "1"],
        "{table}"
    );

    // The same spec again: nothing to do, it is what the update rolls out.
    let again = s.ok(&p, &["deploy"]);
    assert!(
        again.starts_with("rolling (RealtimeAPI) is already updating"),
        "{again}"
    );
    write(&p, "cortex.yaml", &config(3));
    let refused = s.run(&p, &["deploy"]);
    assert_refused(&refused, "rolling is updating (override with --force)");
    // A script is told it is a conflict (not a config to fix).
    let refused = s.run(&p, &["deploy", "-o", "json"]);
    assert_eq!(refused.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&refused)).unwrap();
    assert_eq!(doc["error"]["kind"], "conflict", "{doc}");
    assert!(s
        .ok(&p, &["deploy", "--force"])
        .starts_with("updating rolling (RealtimeAPI)"));
    std::fs::write(&gate, "").unwrap();
    wait_for("version 3 to serve", DEADLINE, || {
        let v: serde_json::Value = s.predict("rolling", "{}").json().ok()?;
        (v["version"] == 3).then_some(())
    });
    wait_for("the old replica to stop", DEADLINE, || {
        let api = s.api_json("rolling")?;
        (api["status"] == "live" && api["replicas"].as_array()?.len() == 1).then_some(())
    });
}

#[test]
fn going_back_to_the_serving_spec_during_an_update_reuses_its_replica() {
    let s = Server::start();
    let gate = s.dir.path().join("gate-never");
    let p = versioned_project(&s, "aba");
    let config = |version: u32| versioned_config("aba", version, &gate);
    write(&p, "cortex.yaml", &config(1));
    s.ok(&p, &["deploy"]);
    let before = s.wait_status("aba", "live");
    let pid = before["replicas"][0]["pid"].clone();
    write(&p, "cortex.yaml", &config(2));
    s.ok(&p, &["deploy"]);
    write(&p, "cortex.yaml", &config(1));
    s.ok(&p, &["deploy", "--force"]);
    let api = s.wait_status("aba", "live");
    let replicas = api["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 1, "{api}");
    assert_eq!(
        replicas[0]["pid"], pid,
        "version 1's replica kept serving: {api}"
    );
    assert_eq!(
        s.predict("aba", "{}").json::<serde_json::Value>().unwrap()["version"],
        1
    );
}

/// A project whose predictor answers its `version`; versions other than 1 only finish
/// `__init__` once the `gate` file exists (so an update can be held half-way).
pub(crate) fn versioned_project(s: &Server, name: &str) -> std::path::PathBuf {
    let p = s.project(name);
    write(
        &p,
        "predictor.py",
        "import os, time\n\nclass PythonPredictor:\n    def __init__(self, config):\n        if config['version'] != 1:\n            while not os.path.exists(config['gate']):\n                time.sleep(0.05)\n        self.version = config['version']\n\n    def predict(self, payload):\n        return {'version': self.version}\n",
    );
    p
}

pub(crate) fn versioned_config(name: &str, version: u32, gate: &std::path::Path) -> String {
    format!(
        "- name: {name}\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    config:\n      version: {version}\n      gate: {}\n",
        gate.display()
    )
}

#[test]
fn form_bodies_headers_and_bytes_reach_the_predictor_through_the_gateway() {
    let s = Server::start();
    let p = s.project("forms");
    write(
        &p,
        "predictor.py",
        "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload, headers):\n        if isinstance(payload, bytes):\n            return payload[::-1]\n        return {'a': payload['a'], 'ua': headers['X-Client']}\n",
    );
    write(
        &p,
        "cortex.yaml",
        "- name: forms\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("forms", "live");
    let http = http();
    let form: serde_json::Value = http
        .post(format!("{}/forms", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-client", "tests")
        .body("a=1&b=2")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(form, serde_json::json!({"a": "1", "ua": "tests"}));
    let raw = http
        .post(format!("{}/forms", s.url))
        .header("content-type", "application/octet-stream")
        .body(vec![1u8, 2, 3])
        .send()
        .unwrap();
    assert_eq!(
        raw.headers()["content-type"].to_str().unwrap(),
        "application/octet-stream"
    );
    assert_eq!(raw.bytes().unwrap().as_ref(), &[3u8, 2, 1]);
}

/// A slow upload that spans an update goes to the replica serving when the body is in, not
/// to the one that served when it began (stopped by then).
#[test]
fn a_slow_upload_during_an_update_reaches_the_new_replica() {
    use std::io::Write as _;
    let s = Server::start();
    let gate = s.dir.path().join("gate");
    std::fs::write(&gate, "").unwrap();
    let p = versioned_project(&s, "upload");
    write(&p, "cortex.yaml", &versioned_config("upload", 1, &gate));
    s.ok(&p, &["deploy"]);
    s.wait_status("upload", "live");

    let (reader, mut writer) = std::io::pipe().unwrap();
    let url = format!("{}/upload", s.url);
    let sender = std::thread::spawn(move || {
        let resp = http()
            .post(url)
            .header("content-type", "application/json")
            .body(reqwest::blocking::Body::new(reader))
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    });
    writer.write_all(b"{\"n\":").unwrap();
    writer.flush().unwrap();

    write(&p, "cortex.yaml", &versioned_config("upload", 2, &gate));
    s.ok(&p, &["deploy"]);
    wait_for("version 1 to stop", DEADLINE, || {
        let api = s.api_json("upload")?;
        (api["status"] == "live" && api["replicas"].as_array()?.len() == 1).then_some(())
    });
    writer.write_all(b" 1}").unwrap();
    drop(writer);
    let (status, body) = sender.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["version"], 2, "{body}");
}

#[test]
fn a_first_version_still_starting_is_an_update_in_progress_but_one_a_restart_brings_back_is_not() {
    let mut s = Server::start();
    let gate = s.dir.path().join("gate");
    let p = versioned_project(&s, "first");
    // Version 2 waits for the gate: the API's first version is still starting.
    write(&p, "cortex.yaml", &versioned_config("first", 2, &gate));
    s.ok(&p, &["deploy"]);
    write(&p, "cortex.yaml", &versioned_config("first", 3, &gate));
    let refused = s.run(&p, &["deploy"]);
    assert_refused(&refused, "first is updating (override with --force)");
    assert!(s
        .ok(&p, &["deploy", "--force"])
        .starts_with("updating first (RealtimeAPI)"));
    std::fs::write(&gate, "").unwrap();
    s.wait_status("first", "live");
    // Version 3 served: brought back by a restart (waiting for the gate again), it is not
    // an update in progress, and a new version goes without --force.
    std::fs::remove_file(&gate).unwrap();
    s.restart();
    assert_eq!(s.api_json("first").unwrap()["status"], "updating");
    write(&p, "cortex.yaml", &versioned_config("first", 4, &gate));
    let out = s.ok(&p, &["deploy"]);
    assert!(out.starts_with("updating first (RealtimeAPI)"), "{out}");
    std::fs::write(&gate, "").unwrap();
    wait_for("version 4 to serve", DEADLINE, || {
        let v: serde_json::Value = s.predict("first", "{}").json().ok()?;
        (v["version"] == 4).then_some(())
    });
}
