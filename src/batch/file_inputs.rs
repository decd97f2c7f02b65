//! A submission's inputs in files: `delimited_files` (newline-delimited JSON from `paths`,
//! http(s) URLs or files under the server's `--data-root`, or from `s3_paths`) and
//! `file_path_lister` (the paths of objects in S3 as the items). Only the shapes are checked
//! here; the server checks each path and glob and lists S3.

use serde_json::{Map, Value};

use super::input::{batch_size_of, problem, Input, S3Listing, S3Use, SubmissionError};

/// The most `s3_paths` one submission may list.
pub const MAX_S3_PATHS: usize = 100;

/// `delimited_files`: `paths` or `s3_paths` (with `includes` and `excludes`), and its batch
/// size.
pub(super) fn delimited_files(files: &Value) -> Result<(Input, u32), SubmissionError> {
    let files = files.as_object().ok_or_else(|| {
        problem(
            "delimited_files",
            "expected {\"s3_paths\": [\"s3://bucket/prefix\"], \"batch_size\": N} or {\"paths\": [\"https://...\" or a path under the server's --data-root], \"batch_size\": N}",
        )
    })?;
    known_fields(
        files,
        "delimited_files",
        &["paths", "s3_paths", "includes", "excludes", "batch_size"],
    )?;
    let input = match (files.get("paths"), files.get("s3_paths")) {
        (Some(_), Some(_)) => {
            return Err(problem(
                "delimited_files.s3_paths",
                "give paths or s3_paths, not both",
            ))
        }
        (None, Some(_)) => Input::S3(listing(files, S3Use::DelimitedFiles)?),
        (Some(_), None) => {
            for key in ["includes", "excludes"] {
                if files.contains_key(key) {
                    return Err(problem(
                        &format!("delimited_files.{key}"),
                        "filters the files of s3_paths only; list the paths you want in paths",
                    ));
                }
            }
            Input::Files(strings(files, "delimited_files", "paths", true)?)
        }
        (None, None) => {
            return Err(problem(
                "delimited_files.s3_paths",
                "required: a list of s3://bucket/key (or s3://bucket/prefix) paths, or paths: http(s):// URLs or paths under the server's --data-root",
            ))
        }
    };
    let batch_size = batch_size_of(files, "delimited_files")?;
    Ok((input, batch_size))
}

/// `file_path_lister`: `s3_paths` with `includes` and `excludes`, and paths per batch.
pub(super) fn file_path_lister(lister: &Value) -> Result<(Input, u32), SubmissionError> {
    let lister = lister.as_object().ok_or_else(|| {
        problem(
            "file_path_lister",
            "expected {\"s3_paths\": [\"s3://bucket/prefix\"], \"batch_size\": N}",
        )
    })?;
    known_fields(
        lister,
        "file_path_lister",
        &["s3_paths", "includes", "excludes", "batch_size"],
    )?;
    let input = Input::S3(listing(lister, S3Use::FilePathLister)?);
    let batch_size = batch_size_of(lister, "file_path_lister")?;
    Ok((input, batch_size))
}

fn known_fields(
    obj: &Map<String, Value>,
    parent: &str,
    known: &[&str],
) -> Result<(), SubmissionError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(problem(
            &format!("{parent}.{unknown}"),
            format!("unknown field; use {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

fn listing(obj: &Map<String, Value>, of: S3Use) -> Result<S3Listing, SubmissionError> {
    let parent = of.field();
    let s3_paths = strings(obj, parent, "s3_paths", true)?;
    if s3_paths.len() > MAX_S3_PATHS {
        return Err(problem(
            &format!("{parent}.s3_paths"),
            format!(
                "has {} paths; give at most {MAX_S3_PATHS} (a prefix such as s3://bucket/dir/ lists every file under it)",
                s3_paths.len()
            ),
        ));
    }
    Ok(S3Listing {
        of,
        s3_paths,
        includes: strings(obj, parent, "includes", false)?,
        excludes: strings(obj, parent, "excludes", false)?,
    })
}

/// The list of non-empty strings at `key`; `required` lists may not be missing or empty.
fn strings(
    obj: &Map<String, Value>,
    parent: &str,
    key: &str,
    required: bool,
) -> Result<Vec<String>, SubmissionError> {
    let field = format!("{parent}.{key}");
    let what = match key {
        "paths" => "http(s):// URLs or paths under the server's --data-root",
        "s3_paths" => "s3://bucket/key or s3://bucket/prefix paths",
        _ => "glob patterns, e.g. \"**.jsonl\"",
    };
    let list = match obj.get(key) {
        None | Some(Value::Null) if !required => return Ok(Vec::new()),
        Some(Value::Array(list)) if !list.is_empty() || !required => list,
        Some(Value::Array(_)) => {
            return Err(problem(&field, "is empty; give at least one file"));
        }
        _ => return Err(problem(&field, format!("required: a list of {what}"))),
    };
    list.iter()
        .enumerate()
        .map(|(i, v)| match v.as_str() {
            Some(s) if !s.trim().is_empty() => Ok(s.to_string()),
            _ => Err(problem(
                &format!("{field}[{i}]"),
                format!("expected one of {what}, got {v}"),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::batch::submission::{check, Input, S3Use};

    #[test]
    fn s3_inputs_keep_their_paths_and_filters() {
        let s = check(&json!({"workers": 1, "delimited_files": {
            "s3_paths": ["s3://b/in/"], "includes": ["**.jsonl"], "excludes": ["**skip*"], "batch_size": 3
        }}))
        .unwrap();
        let Input::S3(l) = s.input else {
            panic!("s3 expected")
        };
        assert_eq!(
            (l.of, l.s3_paths, l.includes, l.excludes, s.batch_size),
            (
                S3Use::DelimitedFiles,
                vec!["s3://b/in/".to_string()],
                vec!["**.jsonl".to_string()],
                vec!["**skip*".to_string()],
                3
            )
        );
        let s = check(&json!({"workers": 2, "file_path_lister": {"s3_paths": ["s3://b/img"], "batch_size": 2}}))
            .unwrap();
        let Input::S3(l) = s.input else {
            panic!("s3 expected")
        };
        assert_eq!(l.of, S3Use::FilePathLister);
        assert!(l.includes.is_empty() && l.excludes.is_empty());
    }

    #[test]
    fn each_problem_of_an_s3_input_names_its_field() {
        let lister = |v: serde_json::Value| json!({"workers": 1, "file_path_lister": v});
        let files = |v: serde_json::Value| json!({"workers": 1, "delimited_files": v});
        let many: Vec<String> = (0..101).map(|i| format!("s3://b/{i}")).collect();
        for (body, field) in [
            (
                lister(json!({"batch_size": 1})),
                "file_path_lister.s3_paths",
            ),
            (
                lister(json!({"s3_paths": [], "batch_size": 1})),
                "file_path_lister.s3_paths",
            ),
            (
                lister(json!({"s3_paths": ["s3://b/x", 4], "batch_size": 1})),
                "file_path_lister.s3_paths[1]",
            ),
            (
                lister(json!({"s3_paths": ["s3://b/x"]})),
                "file_path_lister.batch_size",
            ),
            (
                lister(json!({"s3_paths": ["s3://b/x"], "batch_size": 1, "includes": "*"})),
                "file_path_lister.includes",
            ),
            (
                lister(json!({"s3_paths": ["s3://b/x"], "batch_size": 1, "excludes": [""]})),
                "file_path_lister.excludes[0]",
            ),
            (
                lister(json!({"s3_paths": ["s3://b/x"], "batch_size": 1, "paths": []})),
                "file_path_lister.paths",
            ),
            (
                lister(json!({"s3_paths": many, "batch_size": 1})),
                "file_path_lister.s3_paths",
            ),
            (lister(json!(["s3://b/x"])), "file_path_lister"),
            (files(json!({"batch_size": 1})), "delimited_files.s3_paths"),
            (
                files(json!({"paths": ["a"], "includes": ["*"], "batch_size": 1})),
                "delimited_files.includes",
            ),
            (
                json!({"workers": 1, "delimited_files": {"s3_paths": ["s3://b/x"], "batch_size": 1}, "file_path_lister": {"s3_paths": ["s3://b/x"], "batch_size": 1}}),
                "file_path_lister",
            ),
            (
                json!({"workers": 1, "item_list": {"items": [1], "batch_size": 1}, "file_path_lister": {"s3_paths": ["s3://b/x"], "batch_size": 1}}),
                "file_path_lister",
            ),
        ] {
            assert_eq!(check(&body).unwrap_err().field, field, "{body}");
        }
        let e = check(&json!({"workers": 1, "item_list": {"items": [1], "batch_size": 1}, "file_path_lister": {}}))
            .unwrap_err();
        assert!(
            e.message.contains("not item_list and file_path_lister"),
            "{e}"
        );
    }
}
