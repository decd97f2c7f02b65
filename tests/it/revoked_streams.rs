//! A followed log is read for as long as its caller may read it: the stream ends once read
//! access is taken away or the caller's token revoked, as a new request would be refused. It
//! used to go on for as long as the connection lasted.

use std::process::{Child, Stdio};

use crate::harness::*;
use crate::permissions::{cortex_as, user};

const TICKER: &str = "import threading, time\n\nclass PythonPredictor:\n    def __init__(self, config):\n        def tick():\n            while True:\n                print('tick', flush=True)\n                time.sleep(0.1)\n        threading.Thread(target=tick, daemon=True).start()\n\n    def predict(self, payload):\n        return 'ok'\n";

/// `cortex logs tick -f` with `token`, once it shows a line; the lines that follow come on
/// the receiver (kept, so the follower's output has a reader).
fn follow(s: &Server, token: &str) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = s
        .cortex()
        .env("CORTEX_TOKEN", token)
        .args(["logs", "tick", "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = line_channel(child.stdout.take().unwrap());
    wait_line(&lines, "tick");
    (child, lines)
}

/// Waits for the follower to end; its stderr.
fn ended((mut child, _lines): (Child, std::sync::mpsc::Receiver<String>)) -> String {
    wait_for("the followed log to end", DEADLINE, || {
        child.try_wait().ok().flatten()
    });
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}: {}", out.status, stderr(&out));
    stderr(&out)
}

#[test]
fn a_followed_log_ends_once_its_caller_loses_read_access_or_its_token() {
    let s = Server::start();
    let (bob, alice) = (user(&s, "bob"), user(&s, "alice"));
    let p = s.python_project("tick", "RealtimeAPI", TICKER, "");
    cortex_as(&s, &bob, &p, &["deploy", "-y"]);
    s.wait_status("tick", "live");
    let public = [
        "access",
        "tick",
        "--access",
        "public",
        "--permission",
        "read",
    ];
    cortex_as(&s, &bob, &p, &public);

    let follower = follow(&s, &alice);
    cortex_as(&s, &bob, &p, &["access", "tick", "--access", "private"]);
    let err = ended(follower);
    assert!(
        err.contains("the server ended the log stream") && err.contains("permission"),
        "{err}"
    );

    cortex_as(&s, &bob, &p, &public);
    let made = cortex_as(&s, &alice, &p, &["tokens", "create", "-o", "json"]);
    let made: serde_json::Value = serde_json::from_str(&made).unwrap();
    let follower = follow(&s, made["token"].as_str().unwrap());
    cortex_as(
        &s,
        &alice,
        &p,
        &["tokens", "revoke", made["id"].as_str().unwrap()],
    );
    let err = ended(follower);
    assert!(
        err.contains("the server ended the log stream") && err.contains("not valid"),
        "{err}"
    );
}
