//! Honest answers at the edges: request heads too large or not HTTP at all (on any request
//! of a connection), bodies that are not objects, paths named as given, paths under a
//! BatchAPI's, TrafficSplitters over APIs their creator cannot read, and a batch whose lease
//! lapsed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

fn error_of(resp: reqwest::blocking::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body = resp.text().unwrap();
    let json = serde_json::from_str(&body)
        .unwrap_or_else(|_| panic!("a {status} answer that is not JSON: {body:?}"));
    (status, json)
}

/// Creates a user and returns their first token.
fn user(s: &Server, name: &str) -> String {
    let out = s.ok(s.dir.path(), &["users", "create", name, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["token"].as_str().unwrap().to_string()
}

/// `cortex deploy -y` in `dir` as the holder of `token`; its output (success or not).
fn deploy_as(s: &Server, token: &str, dir: &Path) -> String {
    let out = s
        .cortex()
        .env("CORTEX_TOKEN", token)
        .current_dir(dir)
        .args(["deploy", "-y"])
        .output()
        .unwrap();
    format!("{}{}", stdout(&out), stderr(&out))
}

const ECHO: &str = "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return payload\n";

#[test]
fn an_oversized_uri_or_header_gets_a_json_414_or_431() {
    let s = Server::start();
    let c = http();
    let long = "x".repeat(20 * 1024);
    for path in ["/api/v2/apis", "/some-api"] {
        let resp = c
            .get(format!("{}{path}?q={long}", s.url))
            .bearer_auth(&s.token)
            .send()
            .unwrap();
        let (code, body) = error_of(resp);
        assert_eq!((code, body["kind"].as_str()), (414, Some("uri_too_long")));
        assert!(
            body["message"].as_str().unwrap().contains("limit of 16384"),
            "{body}"
        );
        let resp = c
            .get(format!("{}{path}", s.url))
            .bearer_auth(&s.token)
            .header("x-big", "y".repeat(70 * 1024))
            .send()
            .unwrap();
        let (code, body) = error_of(resp);
        assert_eq!(
            (code, body["kind"].as_str()),
            (431, Some("headers_too_large")),
            "{body}"
        );
    }
}

/// One answer read off a raw connection.
#[derive(Debug)]
struct RawAnswer {
    status_line: String,
    /// The header fields, lower-cased.
    head: String,
    body: String,
}

impl RawAnswer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("an answer that is not JSON: {self:?}"))
    }
}

/// Sends `bytes` on a fresh connection (from another thread, so a server that stops reading
/// cannot stall the test) and reads until the server closes it; the answers, in order.
fn exchange(s: &Server, bytes: Vec<u8>) -> Vec<RawAnswer> {
    let port: u16 = s.url.rsplit(':').next().unwrap().parse().unwrap();
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut writer = conn.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        let _ = writer.write_all(&bytes);
    });
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let (mut got, mut buf) = (Vec::new(), [0u8; 8192]);
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the server did not close the connection; so far: {:?}",
            String::from_utf8_lossy(&got)
        );
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("{e} after {:?}", String::from_utf8_lossy(&got)),
        }
    }
    sending.join().unwrap();
    answers(&got)
}

/// Splits what a server sent into answers (each with a content-length).
fn answers(mut got: &[u8]) -> Vec<RawAnswer> {
    let mut out = Vec::new();
    while !got.is_empty() {
        let text = String::from_utf8_lossy(got).to_string();
        let end = text
            .find("\r\n\r\n")
            .unwrap_or_else(|| panic!("no head in {text:?}"));
        let (status_line, head) = text[..end].split_once("\r\n").unwrap_or((&text[..end], ""));
        let head = head.to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap_or_else(|| panic!("no content-length in {text:?}"))
            .parse()
            .unwrap();
        let body = got[end + 4..end + 4 + length].to_vec();
        out.push(RawAnswer {
            status_line: status_line.to_string(),
            head,
            body: String::from_utf8(body).unwrap(),
        });
        got = &got[end + 4 + length..];
    }
    out
}

/// `answer` is the server's JSON refusal with `status_line` and `kind`, whose message says
/// `says`, and the connection's last.
fn assert_refused_with(answer: &RawAnswer, status_line: &str, kind: &str, says: &str) {
    assert_eq!(answer.status_line, status_line, "{answer:?}");
    assert!(
        answer.head.contains("content-type: application/json"),
        "{answer:?}"
    );
    assert!(answer.head.contains("connection: close"), "{answer:?}");
    let body = answer.json();
    assert_eq!(body["kind"], kind, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(says), "{message}");
    assert!(
        !message.contains('/') || !message.contains("/tmp"),
        "{message}"
    );
}

fn get_with(target: &str, fields: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nhost: x\r\n{fields}\r\n").into_bytes()
}

#[test]
fn a_head_past_hypers_limits_gets_a_json_431_or_414_and_the_connection_closes() {
    let s = Server::start();
    let huge = format!("x-big: {}\r\n", "y".repeat(500 * 1024));
    let many: String = (0..150).map(|i| format!("x-field-{i}: v\r\n")).collect();
    let target = format!("/{}", "t".repeat(69_999));
    let cases = [
        (
            get_with("/healthz", &huge),
            "431 Request Header Fields Too Large",
            "headers_too_large",
            "the request's head is more than",
        ),
        (
            get_with("/healthz", &many),
            "431 Request Header Fields Too Large",
            "headers_too_large",
            "has 151 header fields, more than the limit of 100",
        ),
        (
            get_with(&target, ""),
            "414 URI Too Long",
            "uri_too_long",
            "are 70000 bytes, more than the limit of 16384",
        ),
    ];
    for (request, status, kind, says) in cases {
        let got = exchange(&s, request);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_refused_with(&got[0], &format!("HTTP/1.1 {status}"), kind, says);
    }
}

#[test]
fn a_head_of_exactly_100_fields_is_served_and_one_more_gets_the_json_431() {
    let s = Server::start();
    // `host` and `connection` are two of the fields.
    let fields = |n: usize| -> String {
        (2..n)
            .map(|i| format!("x-field-{i}: v\r\n"))
            .chain(["connection: close\r\n".to_string()])
            .collect()
    };
    let got = exchange(&s, get_with("/healthz", &fields(100)));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].status_line, "HTTP/1.1 200 OK", "{got:?}");
    let got = exchange(&s, get_with("/healthz", &fields(101)));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_refused_with(
        &got[0],
        "HTTP/1.1 431 Request Header Fields Too Large",
        "headers_too_large",
        "has 101 header fields, more than the limit of 100",
    );
}

#[test]
fn bytes_that_are_not_http_get_a_json_400_that_says_what_they_looked_like() {
    let s = Server::start();
    let mut tls = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec();
    tls.extend_from_slice(&[7u8; 32]);
    let cases: [(Vec<u8>, &str); 3] = [
        (
            tls,
            "TLS handshake, but this port speaks plain HTTP; use http://",
        ),
        (
            b"hello\r\n\r\n".to_vec(),
            "the request line \"hello\" is not an HTTP request line",
        ),
        (
            b"GET /\r\n\r\n".to_vec(),
            "the request line \"GET /\" does not read `METHOD /path HTTP/1.1`",
        ),
    ];
    for (request, says) in cases {
        let got = exchange(&s, request);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_refused_with(&got[0], "HTTP/1.1 400 Bad Request", "bad_request", says);
    }
}

#[test]
fn a_bad_head_after_a_request_with_a_body_on_a_keep_alive_connection_gets_a_json_answer() {
    let s = Server::start();
    let auth = format!("authorization: Bearer {}\r\n", s.token);
    let with_length = format!(
        "POST /api/v2/tokens HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}"
    );
    let chunked = format!(
        "POST /api/v2/tokens HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n1;part=one\r\n{{\r\n1\r\n}}\r\n0\r\nx-trailer: t\r\n\r\n"
    );
    let many: String = (0..150).map(|i| format!("x-field-{i}: v\r\n")).collect();
    let huge = format!("x-big: {}\r\n", "y".repeat(500 * 1024));
    for first in [with_length, chunked] {
        for (bad, status) in [
            (get_with("/healthz", &many), "431"),
            (get_with("/healthz", &huge), "431"),
            (b"hello\r\n\r\n".to_vec(), "400"),
        ] {
            let mut request = first.clone().into_bytes();
            request.extend_from_slice(&get_with("/healthz", ""));
            request.extend_from_slice(&bad);
            let got = exchange(&s, request);
            let statuses: Vec<&str> = got.iter().map(|a| &a.status_line[9..12]).collect();
            assert_eq!(statuses, ["200", "200", status], "{got:?}");
            assert!(got[2].json()["kind"].is_string(), "{got:?}");
            assert!(got[2].head.contains("connection: close"), "{got:?}");
        }
    }
}

#[test]
fn a_bad_head_on_a_gateway_path_is_answered_by_the_server() {
    let s = Server::start();
    let many: String = (0..150).map(|i| format!("x-field-{i}: v\r\n")).collect();
    let request = format!(
        "POST /no-such-api HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n{many}\r\n{{}}"
    );
    let got = exchange(&s, request.into_bytes());
    assert_eq!(got.len(), 1, "{got:?}");
    assert_refused_with(
        &got[0],
        "HTTP/1.1 431 Request Header Fields Too Large",
        "headers_too_large",
        "more than the limit of 100",
    );
}

#[test]
fn a_body_that_is_not_a_json_object_is_a_400() {
    let s = Server::start();
    let c = http();
    let post = |path: &str, body: &str| {
        c.post(format!("{}{path}", s.url))
            .bearer_auth(&s.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap()
    };
    for (body, got) in [("[]", "an array"), ("", "an empty body"), ("7", "a number")] {
        let (code, answer) = error_of(post("/api/v2/tokens", body));
        assert_eq!(
            (code, answer["kind"].as_str()),
            (400, Some("bad_request")),
            "{body:?}: {answer}"
        );
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("expected a JSON object ({{...}}), got {got}")),
            "{message}"
        );
    }
    // Nothing was created by them: the admin has only the token it started with.
    let tokens: Value = c
        .get(format!("{}/api/v2/tokens", s.url))
        .bearer_auth(&s.token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(tokens.as_array().unwrap().len(), 1, "{tokens}");
    // `[]` for any other struct too.
    let (code, _) = error_of(post("/api/v2/teams", "[]"));
    assert_eq!(code, 400);
    // An object still works.
    assert_eq!(post("/api/v2/tokens", "{}").status(), 200);
}

#[test]
fn a_path_with_a_trailing_slash_is_named_as_given() {
    let s = Server::start();
    let c = http();
    for (path, named) in [
        ("/api/v2/apis/", "GET /api/v2/apis/ is not a route"),
        ("/no-such-api/", "no api is deployed at /no-such-api/;"),
    ] {
        let resp = c
            .get(format!("{}{path}", s.url))
            .bearer_auth(&s.token)
            .send()
            .unwrap();
        let (code, body) = error_of(resp);
        assert_eq!(code, 404, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(named), "{message}");
    }
}

#[test]
fn no_api_takes_a_path_under_a_batch_apis_and_a_splitter_names_only_readable_apis() {
    let s = Server::start();
    let mallory = user(&s, "mallory");
    let batch = s.python_project(
        "jobs",
        "BatchAPI",
        "class PythonPredictor:\n    def __init__(self, config, job_spec):\n        pass\n\n    def predict(self, payload, batch_id):\n        pass\n",
        "",
    );
    s.ok(&batch, &["deploy", "-y"]);
    let secret = s.python_project("secret", "RealtimeAPI", ECHO, "");
    s.ok(&secret, &["deploy", "-y"]);

    // A job's status URL is /jobs/<job_id>: no other api may answer there.
    let shadow = s.python_project(
        "shadow",
        "RealtimeAPI",
        ECHO,
        "  networking:\n    endpoint: /jobs/69e0c1d2a3b4c5d6\n",
    );
    let out = deploy_as(&s, &mallory, &shadow);
    assert!(
        out.contains("is under the endpoint of BatchAPI jobs, where its jobs' status is served"),
        "{out}"
    );
    assert!(s.api_json("shadow").is_none(), "shadow was not deployed");

    // A splitter over an api its creator cannot read is refused as one over no api at all.
    let split = |over: &str| {
        let p = s.project(&format!("split-{over}"));
        write(
            &p,
            "cortex.yaml",
            &format!("- name: split-{over}\n  kind: TrafficSplitter\n  apis:\n    - name: {over}\n      weight: 100\n"),
        );
        deploy_as(&s, &mallory, &p)
    };
    let absent = split("nothing");
    assert!(
        absent.contains("apis[0].name: nothing is not deployed and not in this file"),
        "{absent}"
    );
    let hidden = split("secret");
    assert_eq!(
        hidden.replace("secret", "nothing"),
        absent,
        "an api mallory cannot read answers like an absent one"
    );
    assert!(s.api_json("split-secret").is_none());
}

/// Holds each batch until `results/go` exists (polled, at most 60 s); writes the job's token.
const HOLDER: &str = r#"
import os, time

class PythonPredictor:
    def __init__(self, config, job_spec):
        self.results = config["results"]
        with open(os.path.join(self.results, "token"), "w") as f:
            f.write(os.environ["CORTEX_JOB_TOKEN"])

    def predict(self, payload, batch_id):
        open(os.path.join(self.results, "started"), "w").close()
        end = time.time() + 60
        while not os.path.exists(os.path.join(self.results, "go")) and time.time() < end:
            time.sleep(0.02)
"#;

#[test]
fn a_batch_whose_lease_lapsed_says_so_not_that_its_worker_stopped() {
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_BATCH_VISIBILITY_MS", "500")]);
    let results = tempfile::tempdir().unwrap();
    let p = s.python_project("lapse", "BatchAPI", HOLDER, "");
    s.ok(&p, &["deploy", "-y"]);
    s.wait_status("lapse", "live");
    let body = json!({
        "workers": 1,
        "item_list": {"items": [1, 2, 3, 4, 5, 6], "batch_size": 1},
        "config": {"results": results.path()},
    });
    let answer: Value = http()
        .post(format!("{}/lapse", s.url))
        .json(&body)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let (id, sqs) = (
        answer["job_id"].as_str().unwrap().to_string(),
        answer["sqs_url"].as_str().unwrap().to_string(),
    );
    // The local worker holds its batches; an external worker takes one and never answers.
    wait_for("the local worker to start", DEADLINE, || {
        results.path().join("started").exists().then_some(())
    });
    let token = std::fs::read_to_string(results.path().join("token")).unwrap();
    let got = http()
        .post(format!("{sqs}/receive?wait_seconds=5"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .unwrap();
    assert_eq!(got.status(), 200);
    std::fs::write(results.path().join("go"), "").unwrap();
    let done = wait_for("the job to end", DEADLINE, || {
        let j: Value = http()
            .get(format!("{}/lapse/{id}", s.url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let j = j["job_status"].clone();
        j.get("end_time").is_some().then_some(j)
    });
    assert_eq!(done["status"], "status_completed_with_failures", "{done:#}");
    let error = done["dead_letters"][0]["error"].as_str().unwrap();
    assert!(!error.contains("worker stopped"), "{error}");
    assert!(
        error.contains("its lease lapsed 1 time(s): the worker that received it did not ack, nack or extend it in time"),
        "{error}"
    );
}
