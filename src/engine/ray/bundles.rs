//! What the nodes download: content-addressed `.tar.gz` files (`<sha256>.tar.gz`) the engine
//! serves to Ray's runtime-env agents. Ray caches a `working_dir` URL per node for ever, so a
//! name is never reused for other bytes: it is the hash of the bytes.
//!
//! - a replica's bundle: its project under `project/` and the python runtime under `runtime/`;
//! - the driver's: the `cortex_ray` package, embedded in the binary.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Where a replica's bundle unpacks its project, relative to the actor's working directory.
pub const PROJECT_DIR: &str = "project";
/// Where a replica's bundle unpacks the runtime (the python shim and its package).
pub const RUNTIME_DIR: &str = "runtime";

/// The driver package's files, as the binary carries them.
const DRIVER_FILES: &[(&str, &str)] = &[
    (
        "cortex_ray/__init__.py",
        include_str!("python/cortex_ray/__init__.py"),
    ),
    (
        "cortex_ray/__main__.py",
        include_str!("python/cortex_ray/__main__.py"),
    ),
    (
        "cortex_ray/actor.py",
        include_str!("python/cortex_ray/actor.py"),
    ),
    (
        "cortex_ray/driver.py",
        include_str!("python/cortex_ray/driver.py"),
    ),
    (
        "cortex_ray/sync.py",
        include_str!("python/cortex_ray/sync.py"),
    ),
];

/// The bundles made so far, kept as files in one directory.
#[derive(Debug)]
pub struct Bundles {
    dir: PathBuf,
    /// A project directory (immutable once unpacked) → its bundle's name.
    made: Mutex<HashMap<PathBuf, String>>,
}

impl Bundles {
    /// Bundles kept in `dir` (made if missing; what is there from an earlier server is reused
    /// only if its name matches its bytes, which it does by construction).
    pub fn new(dir: PathBuf) -> std::io::Result<Bundles> {
        std::fs::create_dir_all(&dir)?;
        Ok(Bundles {
            dir,
            made: Mutex::default(),
        })
    }

    /// The file of bundle `name`, if `name` is one (`<64 hex>.tar.gz`) and it exists.
    pub fn file(&self, name: &str) -> Option<PathBuf> {
        let hash = name.strip_suffix(".tar.gz")?;
        let valid = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        let path = self.dir.join(name);
        (valid && path.is_file()).then_some(path)
    }

    /// The bundle of a replica: `project` under `project/`, `runtime` under `runtime/`.
    /// Blocking (reads and compresses files).
    pub fn replica(&self, project: &Path, runtime: &Path) -> std::io::Result<String> {
        if let Some(name) = self.lock().get(project) {
            return Ok(name.clone());
        }
        let name = self.write(|tar| {
            append_dir(tar, project, Path::new(PROJECT_DIR))?;
            append_dir(tar, runtime, Path::new(RUNTIME_DIR))?;
            // The actor's own class: its working directory is this bundle, not the driver's.
            append_driver(tar)
        })?;
        self.lock().insert(project.to_path_buf(), name.clone());
        Ok(name)
    }

    /// The driver's bundle (the `cortex_ray` package). Blocking.
    pub fn driver(&self) -> std::io::Result<String> {
        self.write(|tar| {
            // Ray strips the top directory of a downloaded archive that has only one: a second
            // entry keeps `cortex_ray/` where `python -m cortex_ray` looks for it.
            let note = b"the cortex server's Ray driver: python -m cortex_ray\n";
            append_bytes(tar, Path::new("CORTEX_RAY.txt"), note, 0o644)?;
            append_driver(tar)
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, String>> {
        self.made.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a `.tar.gz` made by `fill` under the hash of its bytes; returns its name.
    fn write(
        &self,
        fill: impl FnOnce(
            &mut tar::Builder<Hashing<flate2::write::GzEncoder<std::fs::File>>>,
        ) -> std::io::Result<()>,
    ) -> std::io::Result<String> {
        let tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        let gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(tmp.reopen()?, flate2::Compression::fast());
        let mut tar = tar::Builder::new(Hashing {
            inner: gz,
            hash: Sha256::new(),
        });
        fill(&mut tar)?;
        let hashing = tar.into_inner()?;
        let hash = hex::encode(hashing.hash.finalize());
        hashing.inner.finish()?.sync_all()?;
        let name = format!("{hash}.tar.gz");
        tmp.persist(self.dir.join(&name)).map_err(|e| e.error)?;
        Ok(name)
    }
}

/// Hashes what goes through it (the uncompressed tar: the same files give the same name
/// whatever the compressor does).
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Appends the regular files beneath `dir` as `prefix/...`, in name order, with fixed
/// owners and times; `__pycache__` directories and anything else than files are left out.
fn append_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &Path,
) -> std::io::Result<()> {
    // The directory itself, so that an empty one (a project of a command) exists on the node.
    let mut header = tar::Header::new_gnu();
    header.set_size(0);
    header.set_mode(0o755);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Directory);
    tar.append_data(&mut header, prefix, std::io::empty())?;
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            if name != "__pycache__" {
                append_dir(tar, &path, &prefix.join(&name))?;
            }
        } else if kind.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let mode = entry.metadata()?.permissions().mode();
            let bytes = std::fs::read(&path)?;
            append_bytes(
                tar,
                &prefix.join(&name),
                &bytes,
                if mode & 0o111 != 0 { 0o755 } else { 0o644 },
            )?;
        }
    }
    Ok(())
}

fn append_driver<W: Write>(tar: &mut tar::Builder<W>) -> std::io::Result<()> {
    for (path, text) in DRIVER_FILES {
        append_bytes(tar, Path::new(path), text.as_bytes(), 0o644)?;
    }
    Ok(())
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &Path,
    bytes: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_is_named_by_its_content_and_holds_project_and_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let (p1, p2, rt) = (
            dir.path().join("p1"),
            dir.path().join("p2"),
            dir.path().join("rt"),
        );
        for d in [&p1, &p2, &rt.join("__pycache__"), &rt.join("pkg")] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(p1.join("predictor.py"), "a = 1\n").unwrap();
        std::fs::write(p2.join("predictor.py"), "a = 2\n").unwrap();
        std::fs::write(rt.join("shim.py"), "#\n").unwrap();
        std::fs::write(rt.join("pkg/m.py"), "#\n").unwrap();
        std::fs::write(rt.join("__pycache__/x.pyc"), "junk").unwrap();
        let bundles = Bundles::new(dir.path().join("b")).unwrap();
        let one = bundles.replica(&p1, &rt).unwrap();
        let two = bundles.replica(&p2, &rt).unwrap();
        assert_ne!(one, two, "other bytes, other name");
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let bare = bundles.replica(&empty, &rt).unwrap();
        let has_project_dir = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(bundles.file(&bare).unwrap()).unwrap(),
        ))
        .entries()
        .unwrap()
        .any(|e| e.unwrap().path().unwrap() == Path::new("project"));
        assert!(has_project_dir, "an empty project still has its directory");
        let again = Bundles::new(dir.path().join("b2"))
            .unwrap()
            .replica(&p1, &rt)
            .unwrap();
        assert_eq!(one, again, "the same files give the same name");
        let file = bundles.file(&one).unwrap();
        let mut names: Vec<String> = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(file).unwrap(),
        ))
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
        names.sort();
        names.retain(|n| !n.starts_with("cortex_ray/"));
        assert_eq!(
            names,
            [
                "project",
                "project/predictor.py",
                "runtime",
                "runtime/pkg",
                "runtime/pkg/m.py",
                "runtime/shim.py"
            ]
        );
        assert!(bundles.file("../x.tar.gz").is_none());
        assert!(bundles
            .file(&format!("{}.tar.gz", "0".repeat(64)))
            .is_none());
        assert!(bundles.driver().unwrap().ends_with(".tar.gz"));
    }
}
