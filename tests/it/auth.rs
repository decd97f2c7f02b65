//! Tokens: every control route needs a valid user token.

use crate::harness::*;

#[test]
fn control_routes_answer_401_json_without_a_valid_token() {
    let s = Server::start();
    let http = reqwest::blocking::Client::new();
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
