//! `delimited_files`: where a job's newline-delimited JSON may come from (`http(s)://` URLs,
//! files under the directory the operator allowed with `cortex server --data-root`, or
//! objects in S3 listed from `s3_paths`), and reading it into batches as it streams in.

use std::path::{Component, Path, PathBuf};

use futures_util::{StreamExt, TryStreamExt};
use reqwest::Url;
use serde_json::Value;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

use crate::batch::submission::{check_item, MAX_ITEM_BYTES};
use crate::open_beneath::{open_beneath, BeneathError};
use crate::server::fetch::Fetcher;
use crate::server::objects::{self, ObjectError, S3Access};

/// One file of a job's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Url(Url),
    /// `rel` beneath the data root `root`, opened without following links when it is read.
    File {
        root: PathBuf,
        rel: PathBuf,
    },
    /// An object listed from `s3_paths`, read with the server's S3 credentials.
    S3 {
        bucket: String,
        key: String,
    },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Url(u) => write!(f, "{u}"),
            Source::File { rel, .. } => write!(f, "{}", rel.display()),
            Source::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// Why a path of `delimited_files` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// Not something the server can read (a 400).
    #[error("{0}")]
    Invalid(String),
    /// A local path the operator did not allow, or a URL on an address the server does not
    /// fetch from (a 403).
    #[error("{0}")]
    Forbidden(String),
    /// The server has no way to read it (a 503: no S3 access configured).
    #[error("{0}")]
    Unavailable(String),
    /// The store it is in failed or refused the server (a 502).
    #[error("{0}")]
    Upstream(String),
}

impl From<ObjectError> for SourceError {
    fn from(e: ObjectError) -> SourceError {
        let text = e.to_string();
        match e.class() {
            objects::Class::BadInput => SourceError::Invalid(text),
            objects::Class::Forbidden => SourceError::Forbidden(text),
            objects::Class::Unavailable => SourceError::Unavailable(text),
            objects::Class::Upstream => SourceError::Upstream(text),
        }
    }
}

/// Where `path` (the `i`th of `delimited_files.paths`) is read from. Local paths must be
/// beneath `data_root` (relative ones are taken from it), with no `..` and no link on the way.
/// (Where a URL may be fetched from is the fetcher's to check.)
pub fn resolve(i: usize, path: &str, data_root: Option<&Path>) -> Result<Source, SourceError> {
    let field = format!("delimited_files.paths[{i}]");
    if path.starts_with("http://") || path.starts_with("https://") {
        return Url::parse(path).map(Source::Url).map_err(|e| {
            SourceError::Invalid(format!("{field}: {path:?} is not a valid URL: {e}"))
        });
    }
    if path.starts_with("s3://") {
        return Err(SourceError::Invalid(format!(
            "{field}: {path:?}: give s3:// paths in delimited_files.s3_paths (with includes and excludes if you like), not in paths"
        )));
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
    let rel = beneath(root, Path::new(local)).ok_or_else(|| {
        SourceError::Forbidden(format!(
            "{field}: {path:?} is outside the server's data root {}; use a path under it",
            root.display()
        ))
    })?;
    // Opened now to answer at once, and again (the same way) when it is read.
    open_beneath(root, &rel).map_err(|e| match e {
        BeneathError::Link => SourceError::Forbidden(format!(
            "{field}: {path:?}: {e}; the server reads only files beneath its data root"
        )),
        other => SourceError::Invalid(format!("{field}: {path:?}: {other}")),
    })?;
    Ok(Source::File {
        root: root.to_path_buf(),
        rel,
    })
}

/// `candidate` as a path relative to `root` (it is relative, or absolute under `root` as
/// given or canonical), with no `..`; `None` when it is not beneath `root`. Whether a file
/// exists outside the root is none of the caller's business: nothing is opened here.
fn beneath(root: &Path, candidate: &Path) -> Option<PathBuf> {
    if candidate
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return None;
    }
    let rel = if candidate.is_absolute() {
        let canonical = root.canonicalize().ok();
        candidate
            .strip_prefix(root)
            .ok()
            .or_else(|| candidate.strip_prefix(canonical.as_deref()?).ok())?
    } else {
        candidate
    };
    let rel: PathBuf = rel
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    (!rel.as_os_str().is_empty()).then_some(rel)
}

/// Opens a source for reading; the error is what a tenant may hear.
async fn open(
    (fetcher, objects): (&Fetcher, &S3Access),
    source: &Source,
) -> Result<Box<dyn tokio::io::AsyncRead + Unpin + Send>, String> {
    match source {
        Source::S3 { bucket, key } => objects.open(bucket, key).await,
        Source::File { root, rel } => {
            let (root, rel) = (root.clone(), rel.clone());
            let file = tokio::task::spawn_blocking(move || open_beneath(&root, &rel))
                .await
                .map_err(|e| format!("{source}: cannot open it: {e}"))?
                .map_err(|e| format!("{source}: cannot open it: {e}"))?;
            Ok(Box::new(tokio::fs::File::from_std(file)))
        }
        Source::Url(url) => {
            let resp = fetcher
                .get(url)
                .await
                .map_err(|why| format!("{source}: {why}"))?;
            Ok(Box::new(tokio_util::io::StreamReader::new(
                resp.bytes_stream().map_err(std::io::Error::other),
            )))
        }
    }
}

/// Reads `sources` in order, one JSON item per non-empty line, and hands every `batch_size`
/// items to `emit` as a batch (the last one may be shorter), `emit` getting up to 100 batches
/// at a time. Returns how many items were read; an error names the file and line.
pub async fn read_batches<F, Fut>(
    readers: (&Fetcher, &S3Access),
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
        let reader = open(readers, source).await?;
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
                LinesCodecError::Io(_) if !matches!(source, Source::File { .. }) => {
                    format!("{source} line {n}: the download broke off")
                }
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
        assert!(matches!(resolve(0, "in.jsonl", r), Ok(Source::File { .. })));
        let abs = root.path().join("in.jsonl");
        assert!(matches!(
            resolve(0, abs.to_str().unwrap(), r),
            Ok(Source::File { .. })
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
        // Links are not followed at all, even one that stays inside.
        std::os::unix::fs::symlink(root.path().join("in.jsonl"), root.path().join("alias"))
            .unwrap();
        assert!(matches!(
            resolve(3, "alias", r),
            Err(SourceError::Forbidden(_))
        ));
        assert!(matches!(
            resolve(4, "in.jsonl", None),
            Err(SourceError::Forbidden(_))
        ));
        let e = resolve(5, "s3://bucket/x", r).unwrap_err();
        assert!(
            e.to_string().starts_with("delimited_files.paths[5]: ")
                && e.to_string().contains("delimited_files.s3_paths"),
            "{e}"
        );
        let e = resolve(5, "gs://bucket/x", r).unwrap_err();
        assert!(e.to_string().contains("only http(s):// URLs"), "{e}");
        assert!(matches!(
            resolve(6, "missing.jsonl", r),
            Err(SourceError::Invalid(_))
        ));
    }
}
