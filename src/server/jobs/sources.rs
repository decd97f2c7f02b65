//! `delimited_files`: where a job's newline-delimited JSON may come from (`http(s)://` URLs,
//! or files under the directory the operator allowed with `cortex server --data-root`), and
//! reading it into batches as it streams in.

use std::path::{Component, Path, PathBuf};

use futures_util::{StreamExt, TryStreamExt};
use serde_json::Value;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

use crate::batch::submission::{check_item, MAX_ITEM_BYTES};

/// One file of a job's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Url(String),
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Url(u) => f.write_str(u),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Why a path of `delimited_files` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// Not something the server can read (a 400).
    #[error("{0}")]
    Invalid(String),
    /// A local path the operator did not allow (a 403).
    #[error("{0}")]
    Forbidden(String),
}

/// Where `path` (the `i`th of `delimited_files.paths`) is read from. Local paths must be
/// under `data_root` (relative ones are taken from it), with no `..` and no link out of it.
pub fn resolve(i: usize, path: &str, data_root: Option<&Path>) -> Result<Source, SourceError> {
    let field = format!("delimited_files.paths[{i}]");
    if path.starts_with("http://") || path.starts_with("https://") {
        return reqwest::Url::parse(path)
            .map(|u| Source::Url(u.to_string()))
            .map_err(|e| {
                SourceError::Invalid(format!("{field}: {path:?} is not a valid URL: {e}"))
            });
    }
    let local = path.strip_prefix("file://").unwrap_or(path);
    if local.contains("://") {
        return Err(SourceError::Invalid(format!(
            "{field}: {path:?}: only http(s):// URLs and local paths under the server's --data-root can be read"
        )));
    }
    let Some(root) = data_root else {
        return Err(SourceError::Forbidden(format!(
            "{field}: this server reads no local files; give http(s):// URLs, or start the server with `cortex server --data-root DIR` and use paths under DIR"
        )));
    };
    let outside = || {
        SourceError::Forbidden(format!(
            "{field}: {path:?} is outside the server's data root {}; use a path under it",
            root.display()
        ))
    };
    let candidate = Path::new(local);
    if candidate
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(outside());
    }
    let root_canon = root
        .canonicalize()
        .map_err(|e| SourceError::Invalid(format!("the server's data root is unreadable: {e}")))?;
    let full = if candidate.is_absolute() {
        // Refused before the file system is asked: whether a file exists outside the root is
        // none of the caller's business.
        if !candidate.starts_with(root) && !candidate.starts_with(&root_canon) {
            return Err(outside());
        }
        candidate.to_path_buf()
    } else {
        root.join(candidate)
    };
    let root = root_canon;
    let full = full
        .canonicalize()
        .map_err(|e| SourceError::Invalid(format!("{field}: {path:?} cannot be read: {e}")))?;
    if !full.starts_with(&root) {
        return Err(outside());
    }
    if !full.is_file() {
        return Err(SourceError::Invalid(format!(
            "{field}: {path:?} is not a file"
        )));
    }
    Ok(Source::File(full))
}

/// Reads `sources` in order, one JSON item per non-empty line, and hands every `batch_size`
/// items to `emit` as a batch (the last one may be shorter), `emit` getting up to 100 batches
/// at a time. Returns how many items were read; an error names the file and line.
pub async fn read_batches<F, Fut>(
    http: &reqwest::Client,
    sources: &[Source],
    batch_size: u32,
    mut emit: F,
) -> Result<u64, String>
where
    F: FnMut(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let batch_size = batch_size.max(1) as usize;
    let (mut items, mut batches, mut count) = (Vec::new(), Vec::new(), 0u64);
    for source in sources {
        let reader: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match source {
            Source::File(path) => Box::new(
                tokio::fs::File::open(path)
                    .await
                    .map_err(|e| format!("{source}: cannot open it: {e}"))?,
            ),
            Source::Url(url) => {
                let resp = http
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| format!("{source}: cannot fetch it: {e}"))?;
                if !resp.status().is_success() {
                    return Err(format!("{source}: GET answered {}", resp.status()));
                }
                Box::new(tokio_util::io::StreamReader::new(
                    resp.bytes_stream().map_err(std::io::Error::other),
                ))
            }
        };
        // A line longer than an item may be is refused without being held whole.
        let mut lines =
            FramedRead::new(reader, LinesCodec::new_with_max_length(MAX_ITEM_BYTES + 1));
        let mut n = 0u64;
        while let Some(line) = lines.next().await {
            n += 1;
            let line = line.map_err(|e| match e {
                LinesCodecError::MaxLineLengthExceeded => format!(
                    "{source} line {n}: the item is more than {MAX_ITEM_BYTES} bytes (256 KiB)"
                ),
                LinesCodecError::Io(e) => format!("{source} line {n}: cannot read it: {e}"),
            })?;
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let item: Value = serde_json::from_str(line)
                .map_err(|e| format!("{source} line {n}: not a JSON value: {e}"))?;
            check_item(&item).map_err(|why| format!("{source} line {n}: the item {why}"))?;
            items.push(item);
            count += 1;
            if items.len() == batch_size {
                batches.push(Value::Array(std::mem::take(&mut items)).to_string());
                if batches.len() >= 100 {
                    emit(std::mem::take(&mut batches)).await?;
                }
            }
        }
    }
    if !items.is_empty() {
        batches.push(Value::Array(items).to_string());
    }
    if !batches.is_empty() {
        emit(batches).await?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_must_stay_under_the_data_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("in.jsonl"), "1\n").unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.jsonl"), "1\n").unwrap();
        let r = Some(root.path());
        assert!(matches!(resolve(0, "in.jsonl", r), Ok(Source::File(_))));
        let abs = root.path().join("in.jsonl");
        assert!(matches!(
            resolve(0, abs.to_str().unwrap(), r),
            Ok(Source::File(_))
        ));
        assert!(matches!(
            resolve(1, "https://example.com/a.jsonl", r),
            Ok(Source::Url(_))
        ));
        for escape in [
            "../x.jsonl".to_string(),
            "sub/../../x".to_string(),
            outside.path().join("secret.jsonl").display().to_string(),
        ] {
            assert!(
                matches!(resolve(2, &escape, r), Err(SourceError::Forbidden(_))),
                "{escape}"
            );
        }
        // A link inside the root that points out of it.
        std::os::unix::fs::symlink(
            outside.path().join("secret.jsonl"),
            root.path().join("link.jsonl"),
        )
        .unwrap();
        assert!(matches!(
            resolve(3, "link.jsonl", r),
            Err(SourceError::Forbidden(_))
        ));
        assert!(matches!(
            resolve(4, "in.jsonl", None),
            Err(SourceError::Forbidden(_))
        ));
        let e = resolve(5, "s3://bucket/x", r).unwrap_err();
        assert!(
            e.to_string().starts_with("delimited_files.paths[5]: "),
            "{e}"
        );
        assert!(matches!(
            resolve(6, "missing.jsonl", r),
            Err(SourceError::Invalid(_))
        ));
    }
}
