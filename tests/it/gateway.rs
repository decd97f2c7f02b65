//! The gateway: routing, usage messages, readiness and errors.

use std::io::{Read, Write};

use crate::harness::*;

#[test]
fn unknown_apis_are_404_and_get_answers_a_usage_message() {
    let s = Server::start();
    let resp = s.predict("nothing-here", "{}");
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["kind"], "not_found");

    let project = s.example_project("command-realtime");
    s.ok(&project, &["deploy"]);
    s.wait_status("reverser", "live");
    let usage: serde_json::Value = http()
        .get(format!("{}/reverser", s.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(usage["message"].as_str().unwrap().contains("post request"));
}

#[test]
fn an_api_that_is_not_ready_answers_503_then_serves_once_ready() {
    let s = Server::start();
    let p = s.project("slow");
    let gate = s.dir.path().join("gate");
    write(
        &p,
        "predictor.py",
        "import os, time\n\nclass PythonPredictor:\n    def __init__(self, config):\n        while not os.path.exists(config['gate']):\n            time.sleep(0.05)\n\n    def predict(self, payload):\n        return 'ready now'\n",
    );
    write(
        &p,
        "cortex.yaml",
        &format!(
            "- name: slow\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    config:\n      gate: {}\n",
            gate.display()
        ),
    );
    s.ok(&p, &["deploy"]);
    let api = s.api_json("slow").unwrap();
    assert_eq!(api["status"], "updating");
    let resp = s.predict("slow", "{}");
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["kind"], "not_ready");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("cortex get slow"));

    std::fs::write(&gate, "").unwrap();
    s.wait_status("slow", "live");
    assert_eq!(s.predict("slow", "{}").text().unwrap(), "ready now");
}

#[test]
fn a_custom_endpoint_routes_to_the_api() {
    let s = Server::start();
    let p = s.example_project("command-realtime");
    write(
        &p,
        "cortex.yaml",
        "- name: reverser\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: python3 server.py\n  networking:\n    endpoint: /v1/reverse\n",
    );
    s.ok(&p, &["deploy"]);
    let api = s.wait_status("reverser", "live");
    assert_eq!(api["endpoint"], format!("{}/v1/reverse", s.url));
    assert_eq!(s.predict("v1/reverse", r#"{"text": "xy"}"#).status(), 200);
    assert_eq!(s.predict("reverser", "{}").status(), 404);
}

#[test]
fn an_endpoint_serves_one_api() {
    let s = Server::start();
    let first = s.example_project("command-realtime");
    s.ok(&first, &["deploy"]);
    s.wait_status("reverser", "live");
    let second = s.project("thief");
    copy_dir(&example("command-realtime"), &second);
    write(
        &second,
        "cortex.yaml",
        "- name: thief\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: python3 server.py\n  networking:\n    endpoint: /reverser\n",
    );
    let out = s.run(&second, &["deploy"]);
    assert_refused(
        &out,
        "networking.endpoint: /reverser is already the endpoint of api reverser",
    );
    assert_eq!(
        s.ok(&second, &["get"]).lines().count(),
        2,
        "thief was not stored"
    );
    assert_eq!(s.predict("reverser", r#"{"text": "ok"}"#).status(), 200);
}

/// Deploys `teapot`: a replica that answers a POST with its own status, headers and length
/// (418), in chunks (`?stream=1`), or with the headers that reached it (`?headers=1`).
fn deploy_teapot(s: &Server) {
    let p = s.project("teapot");
    write(
        &p,
        "server.py",
        r#"import http.server, json, os

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("X-Replica", "yes")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.reply(200, b"ok")

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "13")
        self.end_headers()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("?headers=1"):
            seen = {k.lower(): v for k, v in self.headers.items()}
            return self.reply(200, json.dumps(seen).encode())
        if self.path.endswith("?stream=1"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"one ", b"two"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.reply(418, b"i am a teapot")

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["CORTEX_PORT"])), H).serve_forever()
"#,
    );
    write(
        &p,
        "cortex.yaml",
        "- name: teapot\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: python3 server.py\n",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("teapot", "live");
}

#[test]
fn a_replicas_own_answers_pass_through_untouched() {
    let s = Server::start();
    deploy_teapot(&s);
    let resp = s.predict("teapot", "{}");
    assert_eq!(resp.status(), 418);
    assert_eq!(resp.headers()["x-replica"], "yes");
    assert_eq!(resp.headers()["content-type"], "text/plain");
    // The replica's framing reaches the client as it was sent: its length, not chunks.
    assert_eq!(resp.headers()["content-length"], "13");
    assert!(resp.headers().get("transfer-encoding").is_none());
    assert_eq!(resp.text().unwrap(), "i am a teapot");
    let api = s.api_json("teapot").unwrap();
    assert_eq!(api["metrics"]["code_4xx"], 1);
    // A replica that streams is passed on in chunks.
    let resp = http()
        .post(format!("{}/teapot?stream=1", s.url))
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["transfer-encoding"], "chunked");
    assert!(resp.headers().get("content-length").is_none());
    assert_eq!(resp.text().unwrap(), "one two");
    // The answer to a HEAD (by a prefix route) keeps the length of what a GET would get.
    let id = api["model_id"].as_str().unwrap();
    let resp = http()
        .head(format!("{}/{id}/anything", s.url))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "13");
    // What describes the client's hop stays there; the rest of the request goes on, with
    // the client's Content-Length and the replica's address as its Host.
    let resp = http()
        .post(format!("{}/teapot?headers=1", s.url))
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic eDp5")
        .header("x-custom", "kept")
        .header("content-length", "2")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen: serde_json::Value = resp.json().unwrap();
    for hop in [
        "keep-alive",
        "te",
        "proxy-authorization",
        "connection",
        "transfer-encoding",
    ] {
        assert!(seen.get(hop).is_none(), "{hop} reached the replica: {seen}");
    }
    assert_eq!(seen["x-custom"], "kept", "{seen}");
    assert_eq!(seen["content-length"], "2", "{seen}");
    let replica = &s.api_json("teapot").unwrap()["replicas"][0]["port"];
    assert_eq!(seen["host"], format!("127.0.0.1:{replica}"), "{seen}");
}

#[test]
fn a_connection_the_replica_closed_while_idle_is_replaced_without_a_failed_request() {
    let s = Server::start();
    let p = s.project("closer");
    // Like uvicorn's keep-alive timeout: an idle connection is closed after a moment.
    write(
        &p,
        "server.py",
        r#"import http.server, os

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 0.2

    posts = 0

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        self.posts += 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def finish(self):
        super().finish()
        if self.posts:
            print("closed a connection that carried a prediction", flush=True)

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["CORTEX_PORT"])), H).serve_forever()
"#,
    );
    write(
        &p,
        "cortex.yaml",
        "- name: closer\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: python3 server.py\n",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("closer", "live");
    for round in 1..=3 {
        let resp = s.predict("closer", "{}");
        assert_eq!(resp.status(), 200, "round {round}: {:?}", resp.text());
        // Every connection the gateway used is closed by the replica before the next round.
        wait_for(
            "the replica to close its idle connections",
            DEADLINE,
            || {
                let logs = s.ok(&p, &["logs", "closer"]);
                let closed = logs.matches("closed a connection that carried").count();
                (closed >= round).then_some(())
            },
        );
    }
}

#[test]
fn a_client_whose_body_ends_early_gets_a_400_and_the_replica_is_not_blamed() {
    let s = Server::start();
    deploy_teapot(&s);
    let port: u16 = s.url.rsplit(':').next().unwrap().parse().unwrap();
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(b"POST /teapot HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n{}")
        .unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(
        answer.contains("the request body could not be read"),
        "{answer}"
    );
    let api = s.api_json("teapot").unwrap();
    assert_eq!(api["metrics"]["code_5xx"], 0, "{api}");
}
