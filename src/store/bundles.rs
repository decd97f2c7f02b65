//! Project bundles (tar.gz), content-addressed by SHA-256 so an unchanged project is stored once.

use std::fs;
use std::io;
use std::path::PathBuf;

use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};

use super::unpack_limits::{self, UnpackLimits};
use super::StoreError;
use crate::clock::now;

/// Where bundles and their unpacked projects live on disk.
#[derive(Debug, Clone)]
pub struct BundleStore {
    root: PathBuf,
    limits: UnpackLimits,
}

/// Whether `s` looks like a hex SHA-256 (64 lower-case hex digits).
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl BundleStore {
    pub fn new(root: PathBuf) -> BundleStore {
        BundleStore {
            root,
            limits: UnpackLimits::default(),
        }
    }

    /// The same store, unpacking bundles within `limits`.
    pub fn with_limits(self, limits: UnpackLimits) -> BundleStore {
        BundleStore { limits, ..self }
    }

    pub(super) fn root(&self) -> &std::path::Path {
        &self.root
    }

    pub(super) fn archive_path(&self, sha: &str) -> PathBuf {
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

    /// Checks that `bytes` hash to `sha`, then writes them to disk; check what they unpack to
    /// with [`BundleStore::check_stored`]. Blocking; needs no database, so it runs without
    /// holding the connection. Record the bundle with [`BundleStore::record`].
    pub fn write(&self, sha: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let actual = hex::encode(Sha256::digest(bytes));
        if actual != sha {
            return Err(StoreError::Conflict(format!(
                "the bundle's SHA-256 is {actual}, not {sha}; the upload was corrupted, run the command again"
            )));
        }
        crate::atomic_file::write(&self.archive_path(sha), bytes)?;
        Ok(())
    }

    /// Checks that the stored bundle `sha` can be unpacked safely within the limits (see
    /// `unpack_limits.rs`); one that cannot is removed, and the error says why. Blocking.
    pub fn check_stored(&self, sha: &str) -> Result<(), StoreError> {
        let path = self.archive_path(sha);
        let checked =
            unpack_limits::check(io::BufReader::new(fs::File::open(&path)?), &self.limits);
        checked.map_err(|refused| {
            let _ = fs::remove_file(&path);
            StoreError::Conflict(refused.to_string())
        })
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
        let layers: Vec<&str> = std::iter::once(sha)
            .chain(overlay.into_iter().flat_map(|o| o.split(',')))
            .collect();
        if let Err(e) = self.unpack_into(&layers, &tmp) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
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

    /// Unpacks `layers` (bundles, one over the other) into `dir`, each checked first.
    fn unpack_into(&self, layers: &[&str], dir: &std::path::Path) -> Result<(), StoreError> {
        for layer in layers {
            let path = self.archive_path(layer);
            unpack_limits::check(io::BufReader::new(fs::File::open(&path)?), &self.limits)
                .map_err(|refused| StoreError::Conflict(refused.to_string()))?;
            let file = io::BufReader::new(fs::File::open(&path)?);
            let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
            // Only the executable bit is kept: never setuid, setgid or sticky, never writable
            // by others (mode & 0o755).
            archive.set_preserve_permissions(false);
            archive.set_mask(0o022);
            archive.set_overwrite(true);
            archive.unpack(dir).map_err(bad_archive)?;
        }
        Ok(())
    }

    /// Removes what a server that stopped in the middle left behind: partial unpacks
    /// (`projects/.<name>.<pid>`) and temporary files of uploads (`bundles/.*`). Call it at
    /// start, while no unpack or upload runs. Blocking; returns how many it removed.
    pub fn clean_partial(&self) -> usize {
        let mut removed = 0;
        for dir in ["projects", "bundles"] {
            let Ok(entries) = fs::read_dir(self.root.join(dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                let path = entry.path();
                let gone = match entry.file_type() {
                    Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
                    _ => fs::remove_file(&path),
                };
                removed += usize::from(gone.is_ok());
            }
        }
        removed
    }
}

fn bad_archive(e: io::Error) -> StoreError {
    StoreError::Conflict(format!("the bundle is not a valid tar.gz archive: {e}"))
}
