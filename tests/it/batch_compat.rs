//! BatchAPI jobs as cortex 0.2x users submit and follow them: `?dryRun=true`, `?jobID=`, and
//! the job status with `worker_counts`, `endpoint` and `api_spec` beside the seed's fields.

use serde_json::{json, Value};

use crate::batch::{deploy_batch, submit, wait_job, SUMMER};
use crate::harness::{http, Server};

#[test]
fn a_dry_run_says_what_would_be_enqueued_and_creates_no_job() {
    let s = Server::start();
    deploy_batch(&s, "summer", SUMMER, "");
    let out = s.project("out");
    let dry = |body: Value| {
        let resp = http()
            .post(format!("{}/summer?dryRun=true", s.url))
            .json(&body)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().unwrap())
    };
    let (status, text) = dry(json!({
        "workers": 4,
        "item_list": {"items": [1, 2, 3, 4, 5], "batch_size": 2},
        "config": {"results": out},
    }));
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        text,
        "5 item(s) in 3 batch(es) of up to 2, for 3 worker(s)\nvalidations passed"
    );
    let (status, text) = dry(json!({
        "workers": 1,
        "delimited_files": {"paths": ["https://example.com/a.jsonl", "https://example.com/b.jsonl"], "batch_size": 10},
    }));
    assert_eq!(status, 200, "{text}");
    assert!(
        text.starts_with("https://example.com/a.jsonl\nhttps://example.com/b.jsonl\n")
            && text.ends_with("validations passed"),
        "{text}"
    );
    // A bad submission is refused as it would be without the dry run.
    let (status, text) = dry(json!({"workers": 1}));
    assert_eq!(status, 400, "{text}");
    // Nothing was created.
    let jobs: Value = http()
        .get(format!("{}/summer", s.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(jobs["jobs"], json!([]), "{jobs}");
}

#[test]
fn job_id_in_the_query_reads_and_stops_a_job_and_its_status_has_upstreams_fields() {
    let s = Server::start();
    deploy_batch(&s, "summer", SUMMER, "");
    let out = s.project("out");
    let id = submit(
        &s,
        "summer",
        json!({
            "workers": 2,
            "item_list": {"items": [1, 2, 3, 4], "batch_size": 2},
            "config": {"results": out},
        }),
    );
    wait_job(&s, "summer", &id, "status_succeeded");
    let by_query: Value = http()
        .get(format!("{}/summer?jobID={id}", s.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let by_path: Value = http()
        .get(format!("{}/summer/{id}", s.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(by_query, by_path);
    let status = &by_query["job_status"];
    assert_eq!(status["job_id"], id.as_str());
    assert_eq!(status["worker_counts"], status["worker_stats"], "{status}");
    assert_eq!(status["worker_counts"]["succeeded"], 2, "{status}");
    assert_eq!(
        by_query["endpoint"],
        format!("{}/summer", s.url).as_str(),
        "{by_query}"
    );
    assert_eq!(by_query["api_spec"]["name"], "summer", "{by_query}");
    assert_eq!(by_query["api_spec"]["kind"], "BatchAPI", "{by_query}");

    // DELETE with ?jobID= stops a job as DELETE /<id> does.
    let slow = submit(
        &s,
        "summer",
        json!({
            "workers": 1,
            "item_list": {"items": (0..200).collect::<Vec<_>>(), "batch_size": 1},
            "config": {"results": out},
        }),
    );
    let resp = http()
        .delete(format!("{}/summer?jobID={slow}", s.url))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().unwrap();
    assert_eq!(v["message"], format!("stopped job {slow}").as_str());
    wait_job(&s, "summer", &slow, "status_stopped");
    let unknown = http()
        .get(format!("{}/summer?jobID=7fffffffffffffff", s.url))
        .send()
        .unwrap();
    assert_eq!(unknown.status(), 404);
}
