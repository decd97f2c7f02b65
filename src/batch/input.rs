//! What a job's items come from (`item_list`, `delimited_files`, `file_path_lister`) and how
//! a submission's problems are said: shared by the submission's checks and the file inputs'.

use serde_json::Value;

/// Where a job's items come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// `item_list.items`: in the submission itself.
    Items(Vec<Value>),
    /// `delimited_files.paths`: newline-delimited JSON read by the server, from `http(s)://`
    /// URLs or local paths (which the server checks against its `--data-root`).
    Files(Vec<String>),
    /// `delimited_files.s3_paths` or `file_path_lister`: objects the server lists in S3.
    S3(S3Listing),
}

/// What a job's objects in S3 are to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Use {
    /// `delimited_files.s3_paths`: each object is newline-delimited JSON, one item a line.
    DelimitedFiles,
    /// `file_path_lister`: each object's `s3://bucket/key` is an item.
    FilePathLister,
}

impl S3Use {
    /// The submission's field.
    pub fn field(self) -> &'static str {
        match self {
            S3Use::DelimitedFiles => "delimited_files",
            S3Use::FilePathLister => "file_path_lister",
        }
    }
}

/// `s3_paths` with their `includes` and `excludes` (checked as paths and globs by the
/// server, which lists them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Listing {
    pub of: S3Use,
    pub s3_paths: Vec<String>,
    pub includes: Vec<String>,
    pub excludes: Vec<String>,
}

/// What is wrong with a submission: the field and what to change (a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SubmissionError {
    pub field: String,
    pub message: String,
}

pub(super) fn problem(field: &str, message: impl Into<String>) -> SubmissionError {
    SubmissionError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// A whole number ≥ 1 at `field` of `obj`, when present.
pub(super) fn positive(
    obj: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<u64>, SubmissionError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Ok(Some(n)),
            _ => Err(problem(
                field,
                format!("expected a whole number of at least 1, got {v}"),
            )),
        },
    }
}

pub(super) fn batch_size_of(
    obj: &serde_json::Map<String, Value>,
    parent: &str,
) -> Result<u32, SubmissionError> {
    let field = format!("{parent}.batch_size");
    let n = positive(obj, "batch_size")
        .map_err(|e| problem(&field, e.message))?
        .ok_or_else(|| problem(&field, "required: items per batch, e.g. 10"))?;
    u32::try_from(n).map_err(|_| problem(&field, "too large"))
}
