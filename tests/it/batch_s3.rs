//! BatchAPI jobs whose inputs are in S3: `delimited_files.s3_paths` and `file_path_lister`
//! with `includes` and `excludes`, dry runs, refusals, and a server with no S3 access, against
//! a local S3-compatible store (moto).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::batch::{deploy_batch, read, submit, submit_raw, wait_job, SUMMER};
use crate::harness::{http, Server};
use crate::s3_store::MotoServer;

/// Writes each batch it gets, as it got it, to `results/<batch_id>`.
const WRITER: &str = r#"
import json, os

class PythonPredictor:
    def __init__(self, config, job_spec):
        self.out = config["results"]

    def predict(self, payload, batch_id):
        with open(os.path.join(self.out, batch_id), "w") as f:
            json.dump(payload, f)
"#;

/// A server that reads S3 from `s3`, two keys per list request (so listings go through
/// several pages).
fn server_for(s3: &MotoServer) -> Server {
    let mut env = s3.env();
    env.push(("CORTEX_S3_LIST_PAGE", "2".to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_with("127.0.0.1:0", &env)
}

fn lines(range: std::ops::RangeInclusive<u64>) -> String {
    range.map(|i| format!("{i}\n")).collect()
}

/// `POST /<api>?dryRun=true`: the status and the text.
fn dry_run(s: &Server, api: &str, body: &Value) -> (u16, String) {
    let resp = http()
        .post(format!("{}/{api}?dryRun=true", s.url))
        .json(body)
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

fn no_jobs(s: &Server, api: &str) {
    let jobs: Value = http()
        .get(format!("{}/{api}", s.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(jobs["jobs"], json!([]), "{jobs}");
}

#[test]
fn s3_delimited_files_read_exactly_the_objects_their_prefixes_and_globs_select() {
    let s3 = MotoServer::start();
    s3.create_bucket("cortex-in");
    s3.put("cortex-in", "in/a.jsonl", lines(1..=5));
    s3.put("cortex-in", "in/b.jsonl", lines(6..=10) + "\n");
    s3.put("cortex-in", "in/skip.jsonl", "100\n");
    s3.put("cortex-in", "in/notes.txt", "not json\n");
    s3.put("cortex-in", "in2/d.jsonl", "10000\n");
    s3.put("cortex-in", "other/c.jsonl", "1000\n");
    let s = server_for(&s3);
    let p = deploy_batch(&s, "s3-files", SUMMER, "");
    let results = p.join("results");
    std::fs::create_dir_all(&results).unwrap();
    // `in/` is a prefix (not in2/), `oth` one of text (other/c.jsonl).
    let files = json!({
        "s3_paths": ["s3://cortex-in/in/", "s3://cortex-in/oth"],
        "includes": ["**.jsonl"],
        "excludes": ["**skip*"],
        "batch_size": 4,
    });
    let body = json!({"workers": 2, "delimited_files": files, "config": {"results": results}});

    let (status, text) = dry_run(&s, "s3-files", &body);
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        text,
        "s3://cortex-in/in/a.jsonl\ns3://cortex-in/in/b.jsonl\ns3://cortex-in/other/c.jsonl\n\
         3 file(s): their items are read into batches of 4 when the job runs\nvalidations passed"
    );
    no_jobs(&s, "s3-files");

    let id = submit(&s, "s3-files", body);
    let done = wait_job(&s, "s3-files", &id, "status_succeeded");
    assert_eq!(
        done["batch_metrics"]["total"], 3,
        "11 items in batches of 4"
    );
    let (mut sum, mut n) = (0, 0);
    for seq in 0..3 {
        let batch: Value =
            serde_json::from_str(&read(&results.join(format!("{id}-{seq}")))).unwrap();
        sum += batch["sum"].as_u64().unwrap();
        n += batch["n"].as_u64().unwrap();
    }
    assert_eq!((n, sum), (11, (1..=10).sum::<u64>() + 1000));
    let log = s.ok(&p, &["logs", "s3-files", &id]);
    assert!(
        log.contains("partitioning 11 items found in 3 file(s) into 3 batches of size 4"),
        "{log}"
    );
}

#[test]
fn a_file_path_lister_job_gets_the_object_paths_in_batches_of_batch_size() {
    let s3 = MotoServer::start();
    s3.create_bucket("cortex-img");
    let jpgs: BTreeSet<String> = (1..=5)
        .map(|i| format!("s3://cortex-img/images/img_{i}.jpg"))
        .collect();
    for i in 1..=5 {
        s3.put(
            "cortex-img",
            &format!("images/img_{i}.jpg"),
            vec![0xff, 0xd8, i],
        );
    }
    s3.put("cortex-img", "images/anim.gif", "GIF89a");
    s3.put("cortex-img", "images/img_6.jpg.bak", "old");
    let s = server_for(&s3);
    let p = deploy_batch(&s, "lister", WRITER, "");
    let results = p.join("results");
    std::fs::create_dir_all(&results).unwrap();
    let body = json!({
        "workers": 2,
        "file_path_lister": {"s3_paths": ["s3://cortex-img/images/"], "includes": ["**.jpg"], "batch_size": 2},
        "config": {"results": results},
    });

    let (status, text) = dry_run(&s, "lister", &body);
    assert_eq!(status, 200, "{text}");
    let listed: BTreeSet<String> = text
        .lines()
        .filter(|l| l.starts_with("s3://"))
        .map(String::from)
        .collect();
    assert_eq!(listed, jpgs, "{text}");
    assert!(
        text.ends_with(
            "5 file path(s) in 3 batch(es) of up to 2, for 2 worker(s)\nvalidations passed"
        ),
        "{text}"
    );
    no_jobs(&s, "lister");

    let id = submit(&s, "lister", body);
    let done = wait_job(&s, "lister", &id, "status_succeeded");
    assert_eq!(done["batch_metrics"]["total"], 3, "{done}");
    let mut got = BTreeSet::new();
    for seq in 0..3 {
        let batch: Vec<String> =
            serde_json::from_str(&read(&results.join(format!("{id}-{seq}")))).unwrap();
        assert!(!batch.is_empty() && batch.len() <= 2, "{batch:?}");
        got.extend(batch);
    }
    assert_eq!(got, jpgs);
}

#[test]
fn bad_s3_inputs_are_refused_naming_the_field_and_what_to_change() {
    let s3 = MotoServer::start();
    s3.create_bucket("cortex-in");
    s3.put("cortex-in", "in/a.jsonl", "1\n");
    // A folder marker as S3 consoles make them: empty, so skipped.
    s3.put("cortex-in", "empty/", "");
    let s = server_for(&s3);
    deploy_batch(&s, "s3-bad", SUMMER, "");
    let files = |v: Value| json!({"workers": 1, "delimited_files": v}).to_string();
    let lister = |v: Value| json!({"workers": 1, "file_path_lister": v}).to_string();
    for (body, status, needles) in [
        (
            files(json!({"s3_paths": ["s3://cortex-in/in/", "https://example.com/a.jsonl"], "batch_size": 1})),
            400,
            vec!["delimited_files.s3_paths[1]: ", "expected s3://bucket/key"],
        ),
        (
            lister(json!({"s3_paths": ["s3://Bad_Bucket/x"], "batch_size": 1})),
            400,
            vec!["file_path_lister.s3_paths[0]: ", "bucket \"Bad_Bucket\"", "lower-case"],
        ),
        (
            lister(json!({"s3_paths": ["s3://cortex-missing/x"], "batch_size": 1})),
            400,
            vec!["file_path_lister.s3_paths[0]: ", "bucket \"cortex-missing\" does not exist"],
        ),
        (
            files(json!({"s3_paths": ["s3://cortex-in/in/"], "includes": ["**.parquet"], "batch_size": 1})),
            400,
            vec!["delimited_files: no file under s3_paths matches includes and excludes"],
        ),
        (
            files(json!({"s3_paths": ["s3://cortex-in/nothing/"], "batch_size": 1})),
            400,
            vec!["delimited_files: no file found under s3_paths"],
        ),
        (
            lister(json!({"s3_paths": ["s3://cortex-in/empty"], "batch_size": 1})),
            400,
            vec!["file_path_lister: no file found under s3_paths (empty files are skipped)"],
        ),
        (
            files(json!({"s3_paths": ["s3://cortex-in/in/"], "excludes": ["**{a,b"], "batch_size": 1})),
            400,
            vec!["delimited_files.excludes[0]: ", "not closed"],
        ),
        (
            files(json!({"paths": ["s3://cortex-in/in/a.jsonl"], "batch_size": 1})),
            400,
            vec!["delimited_files.paths[0]: ", "delimited_files.s3_paths"],
        ),
        (
            json!({
                "workers": 1,
                "delimited_files": {"s3_paths": ["s3://cortex-in/in/"], "batch_size": 1},
                "file_path_lister": {"s3_paths": ["s3://cortex-in/in/"], "batch_size": 1},
            })
            .to_string(),
            400,
            vec!["give one of item_list, delimited_files and file_path_lister, not delimited_files and file_path_lister"],
        ),
    ] {
        let (got, v) = submit_raw(&s, "s3-bad", &body);
        let message = v["message"].as_str().unwrap_or_default();
        assert_eq!(got, status, "{body}: {v}");
        for needle in needles {
            assert!(message.contains(needle), "{body}: {message}");
        }
    }
    no_jobs(&s, "s3-bad");
}

#[test]
fn a_server_without_aws_credentials_refuses_s3_inputs_saying_what_to_set() {
    // Empty values count as unset, whatever the test's own environment holds.
    let s = Server::start_with(
        "127.0.0.1:0",
        &[("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "")],
    );
    deploy_batch(&s, "no-s3", SUMMER, "");
    let body = json!({"workers": 1, "file_path_lister": {"s3_paths": ["s3://cortex-in/in/"], "batch_size": 1}});
    let (status, v) = submit_raw(&s, "no-s3", &body.to_string());
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["kind"], "unavailable", "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(
        message
            .starts_with("file_path_lister.s3_paths[0]: this server has no S3 access configured")
            && message.contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        "{message}"
    );
    let (status, text) = dry_run(&s, "no-s3", &body);
    assert_eq!(status, 503, "{text}");
    no_jobs(&s, "no-s3");
}
