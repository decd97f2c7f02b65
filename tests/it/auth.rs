//! Tokens: every control route needs a valid user token.

use crate::harness::*;

#[test]
fn control_routes_answer_401_json_without_a_valid_token() {
    let s = Server::start();
    let http = http();
    for (method, path) in [
        ("GET", "/api/v2/apis"),
        ("POST", "/api/v2/apis"),
        ("GET", "/api/v2/apis/x"),
        ("DELETE", "/api/v2/apis/x"),
        ("GET", "/api/v2/apis/x/logs"),
        ("GET", "/api/v2/info"),
        ("PUT", &format!("/api/v2/bundles/{}", "0".repeat(64))),
    ] {
        let url = format!("{}{path}", s.url);
        let method: reqwest::Method = method.parse().unwrap();
        for token in [None, Some("ctx_u_wrong"), Some("")] {
            let mut req = http.request(method.clone(), &url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().unwrap();
            assert_eq!(resp.status(), 401, "{method} {path} with {token:?}");
            let body: serde_json::Value = resp.json().unwrap();
            assert_eq!(body["kind"], "unauthorized", "{body}");
            assert!(
                body["message"].as_str().unwrap().contains("token"),
                "{body}"
            );
        }
    }
    let ok = http
        .get(format!("{}/api/v2/info", s.url))
        .bearer_auth(&s.token)
        .send()
        .unwrap();
    assert_eq!(ok.status(), 200);
    let info: serde_json::Value = ok.json().unwrap();
    assert_eq!(info["username"], "admin");
    // /healthz is open.
    assert_eq!(
        http.get(format!("{}/healthz", s.url))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn the_cli_with_a_wrong_token_says_so_and_exits_1() {
    let s = Server::start();
    let out = s
        .cortex()
        .env("CORTEX_TOKEN", "ctx_u_nope")
        .args(["get"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("error: the token is not valid"), "{err}");
}

#[test]
fn the_admin_token_file_is_private_and_only_its_hash_is_stored() {
    use std::os::unix::fs::PermissionsExt;
    let s = Server::start();
    let meta = std::fs::metadata(s.data_dir().join("admin.token")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let db = std::fs::read(s.data_dir().join("cortex.db")).unwrap();
    let needle = s.token.as_bytes();
    assert!(
        !db.windows(needle.len()).any(|w| w == needle),
        "the token is stored in clear"
    );
}

#[test]
fn predictions_need_a_token_when_the_server_is_not_loopback_only() {
    let s = Server::start_on("0.0.0.0:0");
    assert!(s.url.starts_with("http://127.0.0.1:"), "{}", s.url);
    let p = s.example_project("command-realtime");
    s.ok(&p, &["deploy"]);
    s.wait_status("reverser", "live");
    let http = http();
    let call = |token: Option<&str>| {
        let mut req = http
            .post(format!("{}/reverser", s.url))
            .header("content-type", "application/json")
            .body(r#"{"text": "ab"}"#);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().unwrap().status().as_u16()
    };
    assert_eq!(call(None), 401);
    assert_eq!(call(Some("ctx_u_wrong")), 401);
    assert_eq!(call(Some(&s.token)), 200);
}

#[test]
fn predictions_on_a_loopback_server_need_no_token() {
    let s = Server::start();
    let p = s.example_project("command-realtime");
    s.ok(&p, &["deploy"]);
    s.wait_status("reverser", "live");
    assert_eq!(s.predict("reverser", r#"{"text": "ab"}"#).status(), 200);
}

#[test]
fn a_restart_keeps_a_valid_admin_token_and_replaces_a_broken_one() {
    use std::os::unix::fs::PermissionsExt;
    let mut s = Server::start();
    let token_file = s.data_dir().join("admin.token");
    let first = s.token.clone();
    s.restart();
    assert_eq!(s.token, first, "a valid token is kept");

    // A full disk or a stray edit left the file empty: the next start writes a new token
    // rather than trust the file forever.
    assert!(s.stop());
    std::fs::write(&token_file, "").unwrap();
    s.restart();
    assert!(s.token.starts_with("ctx_u_"), "{}", s.token);
    assert_ne!(s.token, first);
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let p = s.project("any");
    assert_eq!(s.ok(&p, &["get"]), "no apis are deployed\n");
}

#[test]
fn a_prediction_on_loopback_needs_no_token_but_one_sent_is_checked() {
    let s = Server::start();
    let p = s.python_project(
        "echo",
        "RealtimeAPI",
        "class PythonPredictor:\n    def __init__(self, config):\n        pass\n    def predict(self, payload):\n        return payload\n",
        "",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("echo", "live");
    let bob = crate::permissions::user(&s, "bob");
    let predict = |header: Option<(&str, &str)>| {
        let mut req = http()
            .post(format!("{}/echo", s.url))
            .header("content-type", "application/json")
            .body("{\"x\": 1}");
        if let Some((name, value)) = header {
            req = req.header(name, value);
        }
        let resp = req.send().unwrap();
        let code = resp.status().as_u16();
        (code, resp.json::<serde_json::Value>().unwrap())
    };
    assert_eq!(predict(None).0, 200, "no token: cortex's local mode");
    let bearer_bob = format!("Bearer {bob}");
    let bearer_admin = format!("Bearer {}", s.token);
    for (header, code, kind) in [
        (
            ("authorization", "Bearer ctx_u_made_up"),
            401,
            "unauthorized",
        ),
        (("x-api-key", "ctx_u_made_up"), 401, "unauthorized"),
        (("authorization", bearer_bob.as_str()), 403, "forbidden"),
        (("x-api-key", bob.as_str()), 403, "forbidden"),
    ] {
        let (got, v) = predict(Some(header));
        assert_eq!(
            (got, v["kind"].as_str()),
            (code, Some(kind)),
            "{header:?}: {v}"
        );
    }
    assert_eq!(predict(Some(("authorization", &bearer_admin))).0, 200);
    // Another scheme is not a token of ours: it goes on as no token.
    assert_eq!(
        predict(Some(("authorization", "Basic dXNlcjpwdw=="))).0,
        200
    );
}
