//! The project bundle: the config file's directory as a deterministic tar.gz.
//!
//! Excluded: hidden files and directories (except a top-level `.env`), `*.pyc`, `*.pyo`,
//! `*.pyd`, `__pycache__`, the config file itself, and whatever `.cortexignore` (gitignore
//! syntax) matches. Entries are sorted and carry no timestamps or owners, so the same files
//! always give the same bytes and the same SHA-256.

use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

/// A packed project.
pub struct Bundle {
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub files: usize,
    /// Total size of the files before compression.
    pub raw_size: u64,
}

/// The files of a project, relative to `root`, sorted.
pub fn project_files(root: &Path, config_file: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let config_file = config_file.canonicalize().ok();
    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .git_ignore(false)
        .git_global(false)
        .git_exclude(false)
        .ignore(false)
        .parents(false)
        .follow_links(false)
        .add_custom_ignore_filename(".cortexignore")
        .filter_entry(|entry| {
            let name = entry.file_name().to_string_lossy();
            if entry.depth() == 0 {
                return true;
            }
            if name.starts_with('.') {
                return entry.depth() == 1 && name == ".env";
            }
            !(name == "__pycache__"
                || name.ends_with(".pyc")
                || name.ends_with(".pyo")
                || name.ends_with(".pyd"))
        })
        .build();
    let mut files = Vec::new();
    for entry in walker {
        let entry = entry.context("cannot list the project's files")?;
        let Some(kind) = entry.file_type() else {
            continue;
        };
        if !kind.is_file() {
            continue;
        }
        if config_file.as_deref() == entry.path().canonicalize().ok().as_deref() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(root)
            .context("a project file is outside the project")?
            .to_path_buf();
        files.push(rel);
    }
    files.sort();
    Ok(files)
}

/// Packs the project at `root` into a deterministic tar.gz.
pub fn pack(root: &Path, config_file: &Path) -> anyhow::Result<Bundle> {
    use std::os::unix::fs::PermissionsExt;
    let files = project_files(root, config_file)?;
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut raw_size = 0u64;
    for rel in &files {
        let path = root.join(rel);
        let data =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let mode = std::fs::metadata(&path)?.permissions().mode();
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(if mode & 0o111 != 0 { 0o755 } else { 0o644 });
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, rel, data.as_slice())
            .with_context(|| format!("cannot add {} to the bundle", rel.display()))?;
        raw_size += data.len() as u64;
    }
    let bytes = tar.into_inner()?.finish()?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(Bundle {
        bytes,
        sha256,
        files: files.len(),
        raw_size,
    })
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
    fn excludes_hidden_compiled_ignored_and_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "cortex.yaml",
            "predictor.py",
            "model/weights.bin",
            ".env",
            ".git/config",
            "sub/.env",
            "__pycache__/x.cpython-311.pyc",
            "a.pyc",
            "data/big.csv",
            "keep.txt",
        ] {
            write(root, f, "x");
        }
        write(root, ".cortexignore", "data/\n*.bin\n");
        let files: Vec<String> = project_files(root, &root.join("cortex.yaml"))
            .unwrap()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(files, vec![".env", "keep.txt", "predictor.py"]);
    }

    #[test]
    fn the_same_files_give_the_same_hash() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "p.py", "print(1)");
        let cfg = dir.path().join("cortex.yaml");
        let a = pack(dir.path(), &cfg).unwrap();
        // Touch the file: a new mtime must not change the bundle.
        write(dir.path(), "p.py", "print(1)");
        let b = pack(dir.path(), &cfg).unwrap();
        assert_eq!(a.sha256, b.sha256);
        write(dir.path(), "p.py", "print(2)");
        assert_ne!(pack(dir.path(), &cfg).unwrap().sha256, a.sha256);
    }
}
