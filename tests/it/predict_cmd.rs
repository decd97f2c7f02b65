//! `cortex predict API JSON_FILE`, as cortex had it through v0.25.

use crate::harness::*;

#[test]
fn predict_posts_the_file_and_prints_the_answer() {
    let s = Server::start();
    let p = s.python_project(
        "doubler",
        "RealtimeAPI",
        "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        if payload.get('x') is None:\n            raise ValueError('no x')\n        return {'double': payload['x'] * 2}\n",
        "",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("doubler", "live");
    write(&p, "sample.json", r#"{"x": 21}"#);
    assert_eq!(
        s.ok(&p, &["predict", "doubler", "sample.json"]),
        "{\"double\": 42}\n"
    );
    // The predictor's failure: exit 1, with the status and why.
    write(&p, "empty.json", "{}");
    let out = s.run(&p, &["predict", "doubler", "empty.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("doubler answered 500"),
        "{}",
        stderr(&out)
    );
    // A file that is not JSON, and an api that is not deployed.
    write(&p, "bad.json", "{x");
    assert_refused(
        &s.run(&p, &["predict", "doubler", "bad.json"]),
        "bad.json is not JSON",
    );
    assert_refused(
        &s.run(&p, &["predict", "nothing", "sample.json"]),
        "api nothing is not deployed",
    );
}
