//! Request bodies received into a file instead of memory: a bundle upload is written to a
//! temporary file and hashed as it arrives; the file is removed unless it is kept.

use std::io;
use std::path::Path;

use axum::body::Body;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::store::bundles::UPLOAD_PREFIX;

/// A body on disk: the file (removed when dropped), its SHA-256 and its size.
pub struct Received {
    pub file: tempfile::NamedTempFile,
    pub sha256: String,
    pub size: u64,
}

/// Why a body was not received whole.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("the body is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the body could not be read: {0}")]
    Read(axum::Error),
    #[error("the body could not be written: {0}")]
    Write(#[from] io::Error),
}

/// Writes `body` to a new file in `dir`, at most `max` bytes.
pub async fn receive(body: Body, dir: &Path, max: u64) -> Result<Received, ReceiveError> {
    let dir = dir.to_path_buf();
    let file = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        tempfile::Builder::new()
            .prefix(UPLOAD_PREFIX)
            .tempfile_in(&dir)
    })
    .await
    .map_err(io::Error::other)??;
    let mut out = tokio::fs::File::from_std(file.as_file().try_clone()?);
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut chunks = body.into_data_stream();
    let mut failed = None;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(ReceiveError::Read)?;
        size += chunk.len() as u64;
        if size > max {
            return Err(ReceiveError::TooLarge(max));
        }
        if failed.is_some() {
            // The rest is read and dropped, so the client hears why.
            continue;
        }
        hasher.update(&chunk);
        if let Err(e) = out.write_all(&chunk).await {
            failed = Some(e);
        }
    }
    if let Some(e) = failed {
        return Err(e.into());
    }
    out.flush().await?;
    out.sync_all().await?;
    Ok(Received {
        file,
        sha256: hex::encode(hasher.finalize()),
        size,
    })
}

/// Whether `e` says the disk (or the user's quota on it) is full.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}
