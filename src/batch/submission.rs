//! A job submission (`POST /<batch-api>`): checked field by field, then cut into batches.

use serde_json::Value;

use super::file_inputs;
use super::input::{batch_size_of, positive, problem};
pub use super::input::{Input, S3Listing, S3Use, SubmissionError};

/// The largest submission body (larger inputs go through `delimited_files`).
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// The largest item, as JSON.
pub const MAX_ITEM_BYTES: usize = 256 * 1024;
/// The most workers one job may ask for.
pub const MAX_WORKERS: u32 = 256;
/// The largest job `config`, as JSON (it reaches workers through their environment).
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// A checked submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub workers: u32,
    pub batch_size: u32,
    pub input: Input,
    /// Merged over `predictor.config` for the job's workers.
    pub config: serde_json::Map<String, Value>,
    /// Seconds after submission at which the job is stopped as `status_timed_out`.
    pub timeout: Option<u64>,
    /// Deliveries of a batch before it counts as failed (1 without `dead_letter`).
    pub max_receive_count: u32,
}

/// Checks a submission body (already parsed as JSON).
pub fn check(body: &Value) -> Result<Submission, SubmissionError> {
    let Some(obj) = body.as_object() else {
        return Err(problem(
            "(body)",
            "expected a JSON object with workers and item_list (or delimited_files, or file_path_lister)",
        ));
    };
    const KNOWN: [&str; 7] = [
        "workers",
        "item_list",
        "delimited_files",
        "file_path_lister",
        "config",
        "timeout",
        "dead_letter",
    ];
    if let Some(unknown) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(problem(
            unknown,
            format!("unknown field; use {}", KNOWN.join(", ")),
        ));
    }
    let workers = positive(obj, "workers")?
        .ok_or_else(|| problem("workers", "required: how many workers run the job, e.g. 1"))?;
    let workers = u32::try_from(workers)
        .ok()
        .filter(|w| *w <= MAX_WORKERS)
        .ok_or_else(|| {
            problem(
                "workers",
                format!("{workers} is more than a job may have; ask for at most {MAX_WORKERS}"),
            )
        })?;
    let (input, batch_size) = input_of(obj)?;
    let config = match obj.get("config") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(m)) => {
            let size = serde_json::to_vec(m).map_or(usize::MAX, |v| v.len());
            if size > MAX_CONFIG_BYTES {
                return Err(problem(
                    "config",
                    format!("is {size} bytes; a job's config may be at most {MAX_CONFIG_BYTES} bytes (64 KiB): put large data in files the predictor reads"),
                ));
            }
            m.clone()
        }
        Some(other) => {
            return Err(problem(
                "config",
                format!("expected a mapping, got {other}"),
            ))
        }
    };
    let timeout = positive(obj, "timeout")?;
    let max_receive_count = match obj.get("dead_letter") {
        None | Some(Value::Null) => 1,
        Some(Value::Object(d)) => {
            let n = positive(d, "max_receive_count")
                .map_err(|e| problem("dead_letter.max_receive_count", e.message))?
                .ok_or_else(|| problem("dead_letter.max_receive_count", "required, e.g. 3"))?;
            u32::try_from(n).map_err(|_| problem("dead_letter.max_receive_count", "too large"))?
        }
        Some(other) => {
            return Err(problem(
                "dead_letter",
                format!("expected {{\"max_receive_count\": N}}, got {other}"),
            ))
        }
    };
    Ok(Submission {
        workers,
        batch_size,
        input,
        config,
        timeout,
        max_receive_count,
    })
}

/// The one input of a submission: `item_list`, `delimited_files` or `file_path_lister`.
fn input_of(obj: &serde_json::Map<String, Value>) -> Result<(Input, u32), SubmissionError> {
    const INPUTS: [&str; 3] = ["item_list", "delimited_files", "file_path_lister"];
    let given: Vec<&str> = INPUTS
        .into_iter()
        .filter(|k| obj.contains_key(*k))
        .collect();
    match given.as_slice() {
        [] => Err(problem(
            "item_list",
            "required: {\"items\": [...], \"batch_size\": N} (or delimited_files or file_path_lister for inputs over 10 MB)",
        )),
        ["item_list"] => item_list(&obj["item_list"]),
        ["delimited_files"] => file_inputs::delimited_files(&obj["delimited_files"]),
        [_] => file_inputs::file_path_lister(&obj["file_path_lister"]),
        [.., last] => Err(problem(
            last,
            format!(
                "give one of item_list, delimited_files and file_path_lister, not {}",
                given.join(" and ")
            ),
        )),
    }
}

/// `item_list`: its items and batch size.
fn item_list(list: &Value) -> Result<(Input, u32), SubmissionError> {
    let list = list.as_object().ok_or_else(|| {
        problem(
            "item_list",
            "expected {\"items\": [...], \"batch_size\": N}",
        )
    })?;
    let items = match list.get("items") {
        Some(Value::Array(items)) if !items.is_empty() => items.clone(),
        Some(Value::Array(_)) => {
            return Err(problem(
                "item_list.items",
                "is empty; give at least one item",
            ))
        }
        _ => return Err(problem("item_list.items", "required: a list of items")),
    };
    let batch_size = batch_size_of(list, "item_list")?;
    for (i, item) in items.iter().enumerate() {
        check_item(item).map_err(|message| problem(&format!("item_list.items[{i}]"), message))?;
    }
    Ok((Input::Items(items), batch_size))
}

/// An item's size against [`MAX_ITEM_BYTES`]; the message says what is wrong.
pub fn check_item(item: &Value) -> Result<(), String> {
    let size = serde_json::to_vec(item)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_ITEM_BYTES {
        return Err(format!(
            "is {size} bytes; an item may be at most {MAX_ITEM_BYTES} bytes (256 KiB)"
        ));
    }
    Ok(())
}

/// The items cut into batches of `batch_size`, each a JSON array.
pub fn batches(items: &[Value], batch_size: u32) -> Vec<String> {
    items
        .chunks(batch_size.max(1) as usize)
        .map(|chunk| Value::Array(chunk.to_vec()).to_string())
        .collect()
}

/// `batches_per_worker` of the job spec: batches divided among the workers, rounded up.
pub fn batches_per_worker(total: usize, workers: u32) -> usize {
    total.div_ceil(workers.max(1) as usize)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_good_submission_is_cut_into_batches() {
        let s = check(&json!({
            "workers": 2,
            "item_list": {"items": [1, 2, 3, 4, 5], "batch_size": 2},
            "config": {"k": "v"},
            "timeout": 60,
            "dead_letter": {"max_receive_count": 3}
        }))
        .unwrap();
        assert_eq!(
            (s.workers, s.batch_size, s.timeout, s.max_receive_count),
            (2, 2, Some(60), 3)
        );
        let Input::Items(items) = &s.input else {
            panic!("items expected")
        };
        let b = batches(items, s.batch_size);
        assert_eq!(b, ["[1,2]", "[3,4]", "[5]"]);
        assert_eq!(batches_per_worker(b.len(), s.workers), 2);
        let plain =
            check(&json!({"workers": 1, "item_list": {"items": [1], "batch_size": 1}})).unwrap();
        assert_eq!(plain.max_receive_count, 1, "no dead_letter: one delivery");
    }

    #[test]
    fn each_problem_names_its_field() {
        let cases = [
            (json!([]), "(body)"),
            (
                json!({"item_list": {"items": [1], "batch_size": 1}}),
                "workers",
            ),
            (
                json!({"workers": 0, "item_list": {"items": [1], "batch_size": 1}}),
                "workers",
            ),
            (json!({"workers": 1}), "item_list"),
            (
                json!({"workers": 1, "item_list": {"items": [], "batch_size": 1}}),
                "item_list.items",
            ),
            (
                json!({"workers": 1, "item_list": {"items": [1]}}),
                "item_list.batch_size",
            ),
            (
                json!({"workers": 1, "item_list": {"items": [1], "batch_size": "2"}}),
                "item_list.batch_size",
            ),
            (
                json!({"workers": 1, "item_list": {"items": [1], "batch_size": 1}, "config": 3}),
                "config",
            ),
            (
                json!({"workers": 1, "item_list": {"items": [1], "batch_size": 1}, "timeout": -1}),
                "timeout",
            ),
            (
                json!({"workers": 1, "item_list": {"items": [1], "batch_size": 1}, "dead_letter": {}}),
                "dead_letter.max_receive_count",
            ),
            (
                json!({"workers": 1, "item_list": {"items": [1], "batch_size": 1}, "extra": 1}),
                "extra",
            ),
        ];
        for (body, field) in cases {
            assert_eq!(check(&body).unwrap_err().field, field, "{body}");
        }
        let files = check(&json!({"workers": 1, "delimited_files": {"paths": ["https://h/a.jsonl", "b.jsonl"], "batch_size": 5}}))
            .unwrap();
        assert_eq!(
            (files.input, files.batch_size),
            (
                Input::Files(vec!["https://h/a.jsonl".into(), "b.jsonl".into()]),
                5
            )
        );
        for (body, field) in [
            // Upstream's field is s3_paths; the message offers paths too.
            (
                json!({"workers": 1, "delimited_files": {"batch_size": 1}}),
                "delimited_files.s3_paths",
            ),
            (
                json!({"workers": 1, "delimited_files": {"paths": [], "batch_size": 1}}),
                "delimited_files.paths",
            ),
            (
                json!({"workers": 1, "delimited_files": {"paths": [3], "batch_size": 1}}),
                "delimited_files.paths[0]",
            ),
            (
                json!({"workers": 1, "delimited_files": {"paths": ["a"]}}),
                "delimited_files.batch_size",
            ),
            (
                json!({"workers": 1, "delimited_files": {"paths": ["a"], "batch_size": 1, "s3_paths": []}}),
                "delimited_files.s3_paths",
            ),
            (
                json!({"workers": 1, "delimited_files": {"paths": ["a"], "batch_size": 1}, "item_list": {"items": [1], "batch_size": 1}}),
                "delimited_files",
            ),
        ] {
            assert_eq!(check(&body).unwrap_err().field, field, "{body}");
        }
        let e = check(&json!({"workers": 257, "item_list": {"items": [1], "batch_size": 1}}))
            .unwrap_err();
        assert_eq!(e.field, "workers");
        assert!(e.message.contains("at most 256"), "{e}");
        let huge = "c".repeat(MAX_CONFIG_BYTES);
        let e = check(&json!({"workers": 1, "item_list": {"items": [1], "batch_size": 1}, "config": {"k": huge}}))
            .unwrap_err();
        assert_eq!(e.field, "config");
        let big = "x".repeat(MAX_ITEM_BYTES);
        let e = check(&json!({"workers": 1, "item_list": {"items": [1, big], "batch_size": 1}}))
            .unwrap_err();
        assert_eq!(e.field, "item_list.items[1]");
        assert!(e.message.contains("256 KiB"), "{e}");
    }
}
