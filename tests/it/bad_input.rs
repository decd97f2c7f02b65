//! Bad input over HTTP and through the CLI: honest status codes, clear messages, and nothing
//! already deployed is lost.

use crate::harness::*;

fn error_of(resp: reqwest::blocking::Response) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    (status, resp.json().unwrap())
}

#[test]
fn malformed_control_requests_get_json_errors_with_honest_codes() {
    let s = Server::start();
    let c = http();
    let post = |body: &str| {
        c.post(format!("{}/api/v2/apis", s.url))
            .bearer_auth(&s.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap()
    };
    let (code, body) = error_of(post("{not json"));
    assert_eq!(
        (code, body["kind"].as_str().unwrap()),
        (400, "bad_request"),
        "{body}"
    );

    let (code, body) = error_of(post(
        r#"{"config_file":"c.yaml","config":"- name: x\n  kind: Nope\n","bundle":"00"}"#,
    ));
    assert_eq!(
        (code, body["kind"].as_str().unwrap()),
        (400, "invalid_config"),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().starts_with("c.yaml:2:"),
        "{body}"
    );

    let (code, body) = error_of(post(&format!(
        r#"{{"config_file":"c.yaml","config":"- name: x\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: x\n","bundle":"{}"}}"#,
        "a".repeat(64)
    )));
    assert_eq!(
        (code, body["kind"].as_str().unwrap()),
        (404, "not_found"),
        "{body}"
    );

    let put = |sha: &str, bytes: &'static [u8]| {
        c.put(format!("{}/api/v2/bundles/{sha}", s.url))
            .bearer_auth(&s.token)
            .body(bytes)
            .send()
            .unwrap()
    };
    let (code, body) = error_of(put("not-a-sha", b"x"));
    assert_eq!(code, 400, "{body}");
    let (code, body) = error_of(put(&"b".repeat(64), b"x"));
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("SHA-256"),
        "{body}"
    );
    // Right hash, but not a tar.gz.
    let sha = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"; // sha256("x")
    let (code, body) = error_of(put(sha, b"x"));
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("tar.gz"),
        "{body}"
    );

    let (code, body) = error_of(
        c.get(format!("{}/api/v2/apis/nope", s.url))
            .bearer_auth(&s.token)
            .send()
            .unwrap(),
    );
    assert_eq!(code, 404, "{body}");
}

#[test]
fn a_bad_deploy_leaves_the_running_apis_alone() {
    let s = Server::start();
    let p = s.example_project("command-realtime");
    s.ok(&p, &["deploy"]);
    s.wait_status("reverser", "live");
    let good = std::fs::read_to_string(p.join("cortex.yaml")).unwrap();
    write(
        &p,
        "cortex.yaml",
        &format!("{good}  compute:\n    cpu: lots\n"),
    );
    let out = s.run(&p, &["deploy"]);
    assert_refused(&out, "compute.cpu");
    let api = s.wait_status("reverser", "live");
    assert_eq!(api["spec"]["predictor"]["command"][0], "python3");
    assert_eq!(s.predict("reverser", r#"{"text": "ok"}"#).status(), 200);
}

#[test]
fn a_crash_looping_command_shows_error_with_its_output() {
    let s = Server::start();
    let p = s.project("crasher");
    write(
        &p,
        "cortex.yaml",
        "- name: crasher\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: [sh, -c, 'echo cannot load weights.bin >&2; exit 7']\n",
    );
    s.ok(&p, &["deploy"]);
    let api = s.wait_status("crasher", "error");
    let errors = api["errors"][0].as_str().unwrap();
    assert!(
        errors.starts_with("the replica exited with status 7"),
        "{errors}"
    );
    assert!(errors.contains("cannot load weights.bin"), "{errors}");
    let text = s.ok(&p, &["get", "crasher"]);
    assert!(text.contains("cannot load weights.bin"), "{text}");
    // It keeps being retried (with back-off), so a transient cause can go away.
    wait_for("a second restart", DEADLINE, || {
        let v = s.api_json("crasher")?;
        (v["replicas"][0]["restarts"].as_u64()? >= 2).then_some(())
    });
}

/// A replica ended by a signal says which (an operator's `kill -9`, a segfault), not only
/// that it was one.
#[test]
fn a_replica_killed_by_a_signal_names_it() {
    let s = Server::start();
    let p = s.project("segv");
    write(
        &p,
        "cortex.yaml",
        "- name: segv\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: [sh, -c, 'kill -SEGV $$']\n",
    );
    s.ok(&p, &["deploy"]);
    let api = s.wait_status("segv", "error");
    let errors = api["errors"][0].as_str().unwrap();
    assert!(
        errors.starts_with("the replica exited with signal SIGSEGV"),
        "{errors}"
    );
}

#[test]
fn a_missing_command_is_an_error_that_names_it() {
    let s = Server::start();
    let p = s.project("nocmd");
    write(
        &p,
        "cortex.yaml",
        "- name: nocmd\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: ./does-not-exist --port 1\n",
    );
    s.ok(&p, &["deploy"]);
    let api = s.wait_status("nocmd", "error");
    let errors = api["errors"][0].as_str().unwrap();
    assert!(
        errors.contains("cannot start `./does-not-exist --port 1`"),
        "{errors}"
    );
}

#[test]
fn errors_axum_makes_itself_are_json_too() {
    let s = Server::start();
    let c = http();
    let (code, body) = error_of(c.post(format!("{}/healthz", s.url)).send().unwrap());
    assert_eq!(
        (code, body["kind"].as_str().unwrap()),
        (405, "method_not_allowed"),
        "{body}"
    );
    let (code, body) = error_of(
        c.delete(format!("{}/api/v2/apis", s.url))
            .bearer_auth(&s.token)
            .send()
            .unwrap(),
    );
    assert_eq!(
        (code, body["kind"].as_str().unwrap()),
        (405, "method_not_allowed"),
        "{body}"
    );

    let p = s.example_project("command-realtime");
    s.ok(&p, &["deploy"]);
    let (code, body) = error_of(
        c.get(format!("{}/api/v2/apis/reverser/logs?tail=abc", s.url))
            .bearer_auth(&s.token)
            .send()
            .unwrap(),
    );
    assert_eq!(
        (code, body["kind"].as_str().unwrap()),
        (400, "bad_request"),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("tail"), "{body}");

    // A control request is read whole and parsed: past 1 MiB it is refused before either
    // (a 9.6 MB cortex.yaml of 300,000 apis took the server 10 s and 400 MB to refuse).
    let config = "- name: a\n  kind: RealtimeAPI\n".repeat(40_000);
    let deploys = serde_json::json!({"config_file": "cortex.yaml", "config": config});
    for (route, big) in [
        ("apis", deploys.to_string()),
        (
            "users",
            format!("{{\"username\": \"{}\"}}", "u".repeat(1 << 20)),
        ),
    ] {
        let (code, body) = error_of(
            c.post(format!("{}/api/v2/{route}", s.url))
                .bearer_auth(&s.token)
                .header("content-type", "application/json")
                .body(big)
                .send()
                .unwrap(),
        );
        assert_eq!(
            (code, body["kind"].as_str().unwrap()),
            (413, "payload_too_large"),
            "{route}: {body}"
        );
        assert!(
            body["message"].as_str().unwrap().contains("up to 1 MiB"),
            "{body}"
        );
    }
}

#[test]
fn a_python_predictor_answers_bad_json_with_a_json_400() {
    let s = Server::start();
    let p = s.example_project("python-realtime");
    s.ok(&p, &["deploy"]);
    s.wait_status("iris-classifier", "live");
    let (code, body) = error_of(s.predict("iris-classifier", "{not json"));
    assert_eq!(
        (code, body["kind"].as_str().unwrap()),
        (400, "bad_request"),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );
    let table = s.ok(&p, &["get"]);
    assert!(
        table.lines().next().unwrap().ends_with("2XX   4XX"),
        "{table}"
    );
}
