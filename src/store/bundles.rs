//! Project bundles (tar.gz), content-addressed by SHA-256 so an unchanged project is stored once.

use std::fs;
use std::io;
use std::path::PathBuf;

use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};

use super::StoreError;
use crate::clock::now;

/// The most a bundle may unpack to (a guard against archives that expand enormously).
pub const MAX_UNPACKED_BYTES: u64 = 4 << 30;

/// Where bundles and their unpacked projects live on disk.
#[derive(Debug, Clone)]
pub struct BundleStore {
    root: PathBuf,
}

/// Whether `s` looks like a hex SHA-256 (64 lower-case hex digits).
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl BundleStore {
    pub fn new(root: PathBuf) -> BundleStore {
        BundleStore { root }
    }

    fn archive_path(&self, sha: &str) -> PathBuf {
        self.root.join("bundles").join(format!("{sha}.tar.gz"))
    }

    /// The directory a bundle unpacks to (see [`BundleStore::unpack`]).
    pub fn project_dir(&self, sha: &str) -> PathBuf {
        self.root.join("projects").join(sha)
    }

    pub fn exists(&self, conn: &Connection, sha: &str) -> Result<bool, StoreError> {
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM bundles WHERE sha256 = ?1",
            [sha],
            |r| r.get(0),
        )?;
        Ok(n > 0 && self.archive_path(sha).is_file())
    }

    /// Checks that `bytes` hash to `sha` and are a tar.gz that unpacks to at most
    /// [`MAX_UNPACKED_BYTES`], then writes them to disk. Blocking; needs no database, so it
    /// runs without holding the connection. Record the bundle with [`BundleStore::record`].
    pub fn write(&self, sha: &str, bytes: &[u8]) -> Result<(), StoreError> {
        same_sha(&hex::encode(Sha256::digest(bytes)), sha)?;
        check_archive(bytes)?;
        crate::atomic_file::write(&self.archive_path(sha), bytes)?;
        Ok(())
    }

    /// Where uploads are written while they arrive: beside the bundles, so keeping one is a
    /// rename.
    pub fn upload_dir(&self) -> PathBuf {
        self.root.join("bundles")
    }

    /// Keeps `upload` (a file in [`BundleStore::upload_dir`] whose SHA-256 is `actual`) as
    /// bundle `sha`, with the checks of [`BundleStore::write`]; a refused upload is removed.
    /// Blocking. Record the bundle with [`BundleStore::record`].
    pub fn keep(
        &self,
        sha: &str,
        actual: &str,
        upload: tempfile::NamedTempFile,
    ) -> Result<(), StoreError> {
        same_sha(actual, sha)?;
        check_archive(io::BufReader::new(upload.reopen()?))?;
        upload
            .persist(self.archive_path(sha))
            .map_err(|e| StoreError::Io(e.error))?;
        Ok(())
    }

    /// Removes what uploads cut short by a crash left in [`BundleStore::upload_dir`].
    pub fn remove_partial_uploads(&self) {
        let Ok(entries) = fs::read_dir(self.upload_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(UPLOAD_PREFIX)
            {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Records a bundle written with [`BundleStore::write`].
    pub fn record(&self, conn: &Connection, sha: &str, size: u64) -> Result<(), StoreError> {
        conn.execute(
            "INSERT INTO bundles (sha256, size, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(sha256) DO NOTHING",
            params![sha, size as i64, now()],
        )?;
        Ok(())
    }

    /// Unpacks a stored bundle once into [`BundleStore::project_dir`] and returns that path.
    /// Safe to call again: an existing directory is reused. Blocking.
    pub fn unpack(&self, sha: &str) -> Result<PathBuf, StoreError> {
        self.unpack_layers(sha, None)
    }

    /// Unpacks a bundle with others over it (a saved model's files over its base's; `overlay`
    /// lists them, comma-separated, oldest first), once, into `projects/<bundle>+<overlays>`.
    /// Blocking.
    pub fn unpack_layers(&self, sha: &str, overlay: Option<&str>) -> Result<PathBuf, StoreError> {
        let dest = match overlay {
            Some(o) => self
                .root
                .join("projects")
                .join(format!("{sha}+{}", o.replace(',', "+"))),
            None => self.project_dir(sha),
        };
        if dest.is_dir() {
            return Ok(dest);
        }
        let parent = dest.parent().unwrap_or(&self.root);
        fs::create_dir_all(parent)?;
        let tmp = parent.join(format!(
            ".{}.{}",
            dest.file_name().and_then(|n| n.to_str()).unwrap_or(sha),
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&tmp);
        let overlays = overlay.into_iter().flat_map(|o| o.split(','));
        for layer in std::iter::once(sha).chain(overlays) {
            let file = fs::File::open(self.archive_path(layer))?;
            let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
            archive.set_preserve_permissions(true);
            archive.set_overwrite(true);
            archive.unpack(&tmp).map_err(bad_archive)?;
        }
        match fs::rename(&tmp, &dest) {
            Ok(()) => Ok(dest),
            Err(_) if dest.is_dir() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(dest)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// How the names of uploads in progress begin.
pub const UPLOAD_PREFIX: &str = ".upload-";

/// Refuses a bundle whose content hashes to `actual` when `sha` was announced.
fn same_sha(actual: &str, sha: &str) -> Result<(), StoreError> {
    if actual == sha {
        return Ok(());
    }
    Err(StoreError::Conflict(format!(
        "the bundle's SHA-256 is {actual}, not {sha}; the upload was corrupted, run the command again"
    )))
}

/// Checks that `archive` is a tar.gz that unpacks to at most [`MAX_UNPACKED_BYTES`].
fn check_archive(archive: impl io::Read) -> Result<(), StoreError> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let mut unpacked: u64 = 0;
    for entry in archive.entries().map_err(bad_archive)? {
        let entry = entry.map_err(bad_archive)?;
        unpacked = unpacked.saturating_add(entry.header().size().unwrap_or(0));
        if unpacked > MAX_UNPACKED_BYTES {
            return Err(StoreError::Conflict(format!(
                "the bundle unpacks to more than {} GiB; leave large files out of the project (.cortexignore) and load them at start-up",
                MAX_UNPACKED_BYTES >> 30
            )));
        }
    }
    Ok(())
}

fn bad_archive(e: io::Error) -> StoreError {
    StoreError::Conflict(format!("the bundle is not a valid tar.gz archive: {e}"))
}
