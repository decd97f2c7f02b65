//! `GET /metrics`: what a Prometheus scrape reads after real predictions and a real batch job,
//! parsed as Prometheus parses it, and who may scrape.

use prometheus_parse::{Scrape, Value};
use serde_json::json;

use crate::batch::{deploy_batch, submit, wait_job, SUMMER};
use crate::harness::{http, wait_for, Server, DEADLINE};
use crate::permissions::user;

/// Echoes its payload; fails (500) when asked to.
const ECHO: &str = "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        if payload.get('fail'):\n            raise ValueError('asked to fail')\n        return payload\n";

/// `GET /metrics` with `token`: its status, content type and body.
fn scrape_as(s: &Server, token: Option<&str>) -> (u16, String, String) {
    let mut req = http().get(format!("{}/metrics", s.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let kind = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, kind, resp.text().unwrap())
}

fn scrape(s: &Server) -> Scrape {
    let (status, kind, text) = scrape_as(s, None);
    assert_eq!(status, 200, "{text}");
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("the scrape parses")
}

/// The single value of the sample named `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{name} is not a single value: {other:?}"),
        })
}

#[test]
fn a_scrape_counts_predictions_replicas_jobs_and_batches_and_the_process() {
    let s = Server::start();
    let p = s.python_project(
        "echo",
        "RealtimeAPI",
        ECHO,
        "  networking:\n    max_request_size: 1Ki\n",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("echo", "live");
    for _ in 0..3 {
        assert_eq!(s.predict("echo", r#"{"x": 1}"#).status(), 200);
    }
    let big = format!(r#"{{"x": "{}"}}"#, "a".repeat(2048));
    assert_eq!(s.predict("echo", &big).status(), 413);
    assert_eq!(s.predict("echo", r#"{"fail": true}"#).status(), 500);

    let b = deploy_batch(&s, "summer", SUMMER, "");
    let results = b.join("results");
    std::fs::create_dir_all(&results).unwrap();
    let items: Vec<u32> = (1..=10).collect();
    let id = submit(
        &s,
        "summer",
        json!({
            "workers": 1,
            "item_list": {"items": items, "batch_size": 2},
            "config": {"results": results}
        }),
    );
    wait_job(&s, "summer", &id, "status_succeeded");

    // The job's recorded status may follow its batches by a moment.
    let m = wait_for("the job to be counted as succeeded", DEADLINE, || {
        let m = scrape(&s);
        let jobs = ("status", "succeeded");
        (value(&m, "cortex_jobs", &[("api", "summer"), jobs]) == Some(1.0)).then_some(m)
    });
    let echo = ("api", "echo");
    let requests = |code| value(&m, "cortex_requests_total", &[echo, ("code", code)]);
    assert_eq!(requests("2xx"), Some(3.0));
    assert_eq!(requests("4xx"), Some(1.0));
    assert_eq!(requests("5xx"), Some(1.0));
    let count = value(&m, "cortex_request_duration_seconds_count", &[echo]);
    assert_eq!(count, Some(5.0), "the histogram counts every request");
    let histogram = m
        .samples
        .iter()
        .find(|x| {
            x.metric == "cortex_request_duration_seconds" && x.labels.get("api") == Some("echo")
        })
        .expect("a latency histogram for echo");
    let Value::Histogram(buckets) = &histogram.value else {
        panic!("{histogram:?}");
    };
    let inf = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
    assert_eq!(inf.count, 5.0);
    assert_eq!(
        value(&m, "cortex_replicas", &[echo, ("phase", "ready")]),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "cortex_replicas", &[echo, ("phase", "failed")]),
        Some(0.0)
    );
    assert_eq!(value(&m, "cortex_replicas_desired", &[echo]), Some(1.0));
    assert_eq!(value(&m, "cortex_requests_in_flight", &[echo]), Some(0.0));
    assert_eq!(value(&m, "cortex_requests_queued", &[echo]), Some(0.0));

    let summer = ("api", "summer");
    assert_eq!(
        value(&m, "cortex_batches_succeeded_total", &[summer]),
        Some(5.0)
    );
    assert_eq!(
        value(&m, "cortex_batches_failed_total", &[summer]),
        Some(0.0)
    );
    assert_eq!(value(&m, "cortex_batches_queued", &[summer]), Some(0.0));
    assert_eq!(
        value(&m, "cortex_batch_duration_seconds_count", &[summer]),
        Some(5.0)
    );
    assert_eq!(
        value(&m, "cortex_requests_total", &[summer]),
        None,
        "a BatchAPI has jobs, not requests"
    );

    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value(&m, "cortex_build_info", &[("version", version)]),
        Some(1.0)
    );
    assert!(value(&m, "cortex_uptime_seconds", &[]).is_some_and(|v| v > 0.0));
    assert!(value(&m, "process_resident_memory_bytes", &[]).is_some_and(|v| v > 0.0));
    assert!(value(&m, "process_open_fds", &[]).is_some_and(|v| v > 0.0));
    assert!(value(&m, "process_cpu_seconds_total", &[]).is_some());
    assert!(value(&m, "process_start_time_seconds", &[]).is_some_and(|v| v > 1e9));
}

#[test]
fn beyond_loopback_only_the_admin_token_may_scrape() {
    let s = Server::start_on("0.0.0.0:0");
    let (status, _, body) = scrape_as(&s, None);
    assert_eq!(status, 401, "{body}");
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["kind"], "unauthorized", "{err}");
    assert_eq!(scrape_as(&s, Some("ctx_u_wrong")).0, 401);

    let ada = user(&s, "ada");
    let (status, _, body) = scrape_as(&s, Some(&ada));
    assert_eq!(status, 403, "{body}");
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["kind"], "forbidden", "{err}");
    assert!(err["message"].as_str().unwrap().contains("admin"), "{err}");

    let (status, kind, body) = scrape_as(&s, Some(&s.token));
    assert_eq!(status, 200, "{body}");
    assert!(kind.starts_with("text/plain"), "{kind}");
    assert!(body.contains("cortex_build_info{version="), "{body}");
}
