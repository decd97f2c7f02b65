//! The project bundle: the config file's directory as a deterministic tar.gz of the files
//! `project_files.rs` lists (what is left out, what links become). Entries are sorted and
//! carry no timestamps or owners, so the same files always give the same bytes and the same
//! SHA-256.

use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::project_files::project_files;

/// A packed project.
pub struct Bundle {
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub files: usize,
    /// Total size of the files before compression.
    pub raw_size: u64,
}

/// Packs the project at `root` into a deterministic tar.gz. Files are streamed, and packing
/// stops with an error as soon as the archive grows past `limit` bytes, so a huge directory
/// is not read to the end first.
pub fn pack(root: &Path, config_file: &Path, limit: u64) -> anyhow::Result<Bundle> {
    use std::os::unix::fs::PermissionsExt;
    let files = project_files(root, config_file)?;
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut raw_size = 0u64;
    for rel in &files {
        let path = root.join(rel);
        let file = std::fs::File::open(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let meta = file.metadata()?;
        let mut header = tar::Header::new_gnu();
        header.set_size(meta.len());
        header.set_mode(if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        });
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, rel, file)
            .with_context(|| format!("cannot add {} to the bundle", rel.display()))?;
        raw_size += meta.len();
        let packed = tar.get_ref().get_ref().len() as u64;
        if packed > limit {
            return Err(TooLarge {
                limit,
                at: rel.clone(),
            }
            .into());
        }
    }
    let bytes = tar.into_inner()?.finish()?;
    if bytes.len() as u64 > limit {
        return Err(TooLarge {
            limit,
            at: files.last().cloned().unwrap_or_default(),
        }
        .into());
    }
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(Bundle {
        bytes,
        sha256,
        files: files.len(),
        raw_size,
    })
}

/// The project compresses to more than the upload limit.
#[derive(Debug, thiserror::Error)]
#[error("the project is larger than the {} upload limit (it passed the limit at {}); add large files (models, data) to .cortexignore and load them at start-up instead", crate::cli::render::bytes(*limit), at.display())]
pub struct TooLarge {
    pub limit: u64,
    pub at: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn links_inside_the_project_are_packed_with_what_they_name() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "predictor.py", "p");
        std::os::unix::fs::symlink("predictor.py", dir.path().join("alias.py")).unwrap();
        let b = pack(dir.path(), &dir.path().join("cortex.yaml"), u64::MAX).unwrap();
        assert_eq!((b.files, b.raw_size), (2, 2));
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&b.bytes[..]));
        let kinds: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().header().entry_type())
            .collect();
        assert_eq!(kinds, vec![tar::EntryType::Regular; 2]);
    }

    #[test]
    fn packing_stops_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.txt", &"x".repeat(10_000));
        let err = pack(dir.path(), &dir.path().join("cortex.yaml"), 10)
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("larger than the 10 B upload limit"),
            "{err}"
        );
    }

    #[test]
    fn the_same_files_give_the_same_hash() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "p.py", "print(1)");
        let cfg = dir.path().join("cortex.yaml");
        let a = pack(dir.path(), &cfg, u64::MAX).unwrap();
        // Touch the file: a new mtime must not change the bundle.
        write(dir.path(), "p.py", "print(1)");
        let b = pack(dir.path(), &cfg, u64::MAX).unwrap();
        assert_eq!(a.sha256, b.sha256);
        write(dir.path(), "p.py", "print(2)");
        assert_ne!(pack(dir.path(), &cfg, u64::MAX).unwrap().sha256, a.sha256);
    }
}
