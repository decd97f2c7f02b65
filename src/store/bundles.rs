//! Project bundles (tar.gz), content-addressed by SHA-256 so an unchanged project is stored once.

use std::fs;
use std::io;
use std::path::PathBuf;

use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};

use super::bundle_refusals::Refused;
use super::bundle_tree::Tree;
use super::unpack_limits::{self, UnpackLimits};
use super::StoreError;
use crate::clock::now;

/// Where bundles and their unpacked projects live on disk.
#[derive(Debug, Clone)]
pub struct BundleStore {
    root: PathBuf,
    /// Where bundles are unpacked (`<root>/projects` unless the replicas' files live elsewhere).
    projects: PathBuf,
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
            projects: root.join("projects"),
            root,
            limits: UnpackLimits::default(),
        }
    }

    /// The same store, unpacking into `projects` instead.
    pub fn with_projects(self, projects: PathBuf) -> BundleStore {
        BundleStore { projects, ..self }
    }

    /// The same store, unpacking bundles within `limits`.
    pub fn with_limits(self, limits: UnpackLimits) -> BundleStore {
        BundleStore { limits, ..self }
    }

    /// Where bundles are unpacked.
    pub(super) fn projects_dir(&self) -> &std::path::Path {
        &self.projects
    }

    pub(super) fn archive_path(&self, sha: &str) -> PathBuf {
        self.root.join("bundles").join(format!("{sha}.tar.gz"))
    }

    /// The directory a bundle unpacks to (see [`BundleStore::unpack`]).
    pub fn project_dir(&self, sha: &str) -> PathBuf {
        self.projects.join(sha)
    }

    pub fn exists(&self, conn: &Connection, sha: &str) -> Result<bool, StoreError> {
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM bundles WHERE sha256 = ?1",
            [sha],
            |r| r.get(0),
        )?;
        Ok(n > 0 && self.archive_path(sha).is_file())
    }

    /// Checks that `bytes` hash to `sha` and unpack safely within the limits (see
    /// `unpack_limits.rs`) over the stored bundles `under` (the bottom one first: a saved
    /// model's base bundle and the files saved before), then writes them to disk.
    /// Blocking; needs no database, so it runs without holding the connection. Record the
    /// bundle with [`BundleStore::record`].
    pub fn write_over(&self, sha: &str, bytes: &[u8], under: &[&str]) -> Result<(), StoreError> {
        same_sha(&hex::encode(Sha256::digest(bytes)), sha)?;
        let mut tree = self.read_layers(under)?;
        let top = under.len();
        unpack_limits::read_into(&mut tree, bytes, &self.limits, top)
            .map_err(|refused| StoreError::Conflict(refused.to_string()))?;
        tree.check().map_err(|m| {
            StoreError::Conflict(match m.layer == top {
                true => m.refused.to_string(),
                false => format!(
                    "{}; that entry is in {}, which these files go over",
                    m.refused,
                    layer_name(under, m.layer)
                ),
            })
        })?;
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
        check_archive(io::BufReader::new(upload.reopen()?), &self.limits)?;
        upload
            .persist(self.archive_path(sha))
            .map_err(|e| StoreError::Io(e.error))?;
        Ok(())
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

    /// Counts the grace period of unreferenced bundles (an hour) for `shas` from now: a
    /// deleted API's bundles kept for a quick deploy again (`cortex delete --keep-cache`).
    pub fn keep_for_now(&self, conn: &Connection, shas: &[String]) -> Result<(), StoreError> {
        for sha in shas {
            conn.execute(
                "UPDATE bundles SET created_at = ?2 WHERE sha256 = ?1",
                params![sha, now()],
            )?;
        }
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
        self.unpack_project(sha, overlay, true)
    }

    /// [`BundleStore::unpack_layers`] for a copy saved without its base's secrets: the same
    /// layers, in a directory of their own (`projects/<bundle>[+<overlays>]-noenv`), with no
    /// top-level `.env`. Blocking.
    pub fn unpack_without_env(
        &self,
        sha: &str,
        overlay: Option<&str>,
    ) -> Result<PathBuf, StoreError> {
        self.unpack_project(sha, overlay, false)
    }

    fn unpack_project(
        &self,
        sha: &str,
        overlay: Option<&str>,
        with_env: bool,
    ) -> Result<PathBuf, StoreError> {
        let dest = match overlay {
            Some(o) => self.projects.join(format!("{sha}+{}", o.replace(',', "+"))),
            None => self.project_dir(sha),
        };
        let dest = match with_env {
            true => dest,
            false => dest.with_file_name(format!(
                "{}-noenv",
                dest.file_name().and_then(|n| n.to_str()).unwrap_or(sha)
            )),
        };
        if dest.is_dir() {
            return Ok(dest);
        }
        let parent = dest.parent().unwrap_or(&self.projects);
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
        if let Err(e) = self.unpack_into(&layers, &tmp, with_env) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        normalize_modes(&tmp)?;
        if !with_env {
            remove_dotenv(&tmp)?;
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

    /// Reads the stored bundles `layers` (the bottom one first) into one project's shape,
    /// each within the limits; a refusal names the bundle that holds the entry.
    fn read_layers(&self, layers: &[&str]) -> Result<Tree, StoreError> {
        let mut tree = Tree::new(self.limits.max_files);
        for (i, sha) in layers.iter().enumerate() {
            let file = io::BufReader::new(fs::File::open(self.archive_path(sha))?);
            unpack_limits::read_into(&mut tree, file, &self.limits, i)
                .map_err(|refused| unpackable(layers, i, refused))?;
        }
        Ok(tree)
    }

    /// Unpacks `layers` (bundles, one over the other) into `dir`, once they are checked
    /// together: what does not unpack safely is refused (422) naming the bundle at fault.
    /// Unpacks `layers` into `dir`; without `with_env`, no layer's `.env` is unpacked, and a
    /// hard link to it is refused (it would carry the secrets over under another name).
    fn unpack_into(
        &self,
        layers: &[&str],
        dir: &std::path::Path,
        with_env: bool,
    ) -> Result<(), StoreError> {
        self.read_layers(layers)?
            .check()
            .map_err(|m| unpackable(layers, m.layer, m.refused))?;
        fs::create_dir_all(dir)?;
        for (i, layer) in layers.iter().enumerate() {
            let file = io::BufReader::new(fs::File::open(self.archive_path(layer))?);
            let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
            // Only the executable bit is kept: never setuid, setgid or sticky, never writable
            // by others (mode & 0o755).
            archive.set_preserve_permissions(false);
            archive.set_mask(0o022);
            archive.set_overwrite(true);
            let failed = |e| not_unpacked(layers, i, dir, e);
            for entry in archive.entries().map_err(failed)? {
                let mut entry = entry.map_err(failed)?;
                if !with_env {
                    let path = entry.path().map_err(failed)?;
                    if is_dotenv(&path) {
                        continue;
                    }
                    let links_to_env = entry.header().entry_type().is_hard_link()
                        && entry
                            .link_name()
                            .map_err(failed)?
                            .is_some_and(|t| is_dotenv(&t));
                    if links_to_env {
                        let name = path.display().to_string();
                        return Err(unpackable(layers, i, Refused::HardLinkToSecrets(name)));
                    }
                }
                entry.unpack_in(dir).map_err(failed)?;
            }
        }
        Ok(())
    }

    /// Removes the projects of copies saved without their base's secrets (`*-noenv`) that an
    /// earlier server unpacked, so that each is unpacked again under this server's rules
    /// (those before it let a hard link keep the base's `.env`). Call it at start, while
    /// nothing runs. Blocking; returns how many it removed.
    pub fn forget_copies_unpacked(&self) -> usize {
        let Ok(entries) = fs::read_dir(&self.projects) else {
            return 0;
        };
        let copies = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with("-noenv"))
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()));
        copies
            .filter(|e| fs::remove_dir_all(e.path()).is_ok())
            .count()
    }

    /// Removes what a server that stopped in the middle left behind: partial unpacks
    /// (`projects/.<name>.<pid>`) and temporary files of uploads (`bundles/.*`). Call it at
    /// start, while no unpack or upload runs. Blocking; returns how many it removed.
    pub fn clean_partial(&self) -> usize {
        let mut removed = 0;
        for dir in [&self.projects, &self.upload_dir()] {
            let Ok(entries) = fs::read_dir(dir) else {
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

/// Gives everything under an unpacked project the modes the CLI's packer would: directories
/// 0755, files 0755 when executable and 0644 otherwise (never setuid, setgid or sticky, and
/// whatever the server's umask). Who may enter the project is decided by the directory it is
/// in. Links are left alone.
fn normalize_modes(dir: &std::path::Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755))?;
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                todo.push(entry.path());
            } else if kind.is_file() {
                let exec = entry.metadata()?.permissions().mode() & 0o100 != 0;
                let mode = if exec { 0o755 } else { 0o644 };
                fs::set_permissions(entry.path(), fs::Permissions::from_mode(mode))?;
            }
        }
    }
    Ok(())
}

/// How the names of uploads in progress begin.
pub const UPLOAD_PREFIX: &str = ".upload-";

/// Refuses a bundle whose content hashes to `actual` when `sha` was announced.
pub fn same_sha(actual: &str, sha: &str) -> Result<(), StoreError> {
    if actual == sha {
        return Ok(());
    }
    Err(StoreError::Conflict(format!(
        "the bundle's SHA-256 is {actual}, not {sha}; the upload was corrupted, run the command again"
    )))
}

/// Checks that `archive` is a tar.gz that can be unpacked safely within `limits`.
fn check_archive(archive: impl io::Read, limits: &UnpackLimits) -> Result<(), StoreError> {
    unpack_limits::check(archive, limits)
        .map_err(|refused| StoreError::Conflict(refused.to_string()))
}

/// Removes a project's top-level `.env`, whatever the archive made it (file, link, directory).
/// Whether an archive's `path` is the project's `.env`.
fn is_dotenv(path: &std::path::Path) -> bool {
    let mut parts = path
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir));
    matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(name)), None) if name == ".env"
    )
}

fn remove_dotenv(project: &std::path::Path) -> io::Result<()> {
    let path = project.join(".env");
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path),
        Ok(_) => fs::remove_file(&path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// What layer `i` of `layers` is called in messages: the bottom one is a bundle, the others a
/// saved model's files.
fn layer_name(layers: &[&str], i: usize) -> String {
    let sha = layers.get(i).copied().unwrap_or_default();
    match i {
        0 => format!("bundle {sha}"),
        _ => format!("the saved files {sha}"),
    }
}

/// A refusal of layer `i` of the project `layers` make (422).
fn unpackable(layers: &[&str], i: usize, refused: Refused) -> StoreError {
    StoreError::Unprocessable(format!(
        "{} cannot be unpacked: {refused}",
        layer_name(layers, i)
    ))
}

/// Layer `i` failed to unpack into `dir` although its checks passed: a full disk stays an I/O
/// error of the server's; anything else is said as the layer's (422), without the server's
/// paths.
fn not_unpacked(layers: &[&str], i: usize, dir: &std::path::Path, e: io::Error) -> StoreError {
    if matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) {
        return StoreError::Io(e);
    }
    let mut why = e.to_string();
    for path in [dir.canonicalize().ok(), Some(dir.to_path_buf())]
        .into_iter()
        .flatten()
    {
        why = why.replace(&path.display().to_string(), "the project");
    }
    StoreError::Unprocessable(format!(
        "{} cannot be unpacked ({why})",
        layer_name(layers, i)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(links: &[(&str, &str)], files: &[&str]) -> (String, Vec<u8>) {
        let mut b = tar::Builder::new(Vec::new());
        for (name, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, name, target).unwrap();
        }
        for name in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            b.append_data(&mut h, name, &b"x"[..]).unwrap();
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &b.into_inner().unwrap()).unwrap();
        let bytes = gz.finish().unwrap();
        (hex::encode(Sha256::digest(&bytes)), bytes)
    }

    fn message(e: StoreError) -> String {
        match e {
            StoreError::Conflict(m) | StoreError::Unprocessable(m) => m,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn saved_files_are_checked_over_the_layers_under_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = BundleStore::new(dir.path().to_path_buf());
        let (base, bytes) = tar_gz(&[], &["predictor.py"]);
        store.write_over(&base, &bytes, &[]).unwrap();
        let (first, bytes) = tar_gz(&[("m", ".")], &[]);
        store.write_over(&first, &bytes, &[&base]).unwrap();
        // Alone, `l -> m/..` stays inside; over `m -> .` it is the project's parent.
        let (second, bytes) = tar_gz(&[("l", "m/..")], &[]);
        let refused = message(
            store
                .write_over(&second, &bytes, &[&base, &first])
                .unwrap_err(),
        );
        assert!(refused.contains("\"l\" links to \"m/..\""), "{refused}");
        assert!(!store.archive_path(&second).exists());
        // A layer kept anyway (by a server before this check) is refused at unpack, by name.
        store.write_over(&second, &bytes, &[]).unwrap();
        let overlay = format!("{first},{second}");
        let refused = message(store.unpack_layers(&base, Some(&overlay)).unwrap_err());
        assert!(
            refused.starts_with(&format!("the saved files {second} cannot be unpacked")),
            "{refused}"
        );
        assert!(!store
            .projects_dir()
            .join(format!("{base}+{first}+{second}"))
            .exists());
        assert!(store.unpack_layers(&base, Some(&first)).is_ok());
    }

    #[test]
    fn copies_without_secrets_are_unpacked_again_by_each_server() {
        let dir = tempfile::tempdir().unwrap();
        let store = BundleStore::new(dir.path().to_path_buf());
        let (base, bytes) = tar_gz(&[], &["predictor.py", ".env"]);
        store.write_over(&base, &bytes, &[]).unwrap();
        let with = store.unpack_layers(&base, None).unwrap();
        let without = store.unpack_without_env(&base, None).unwrap();
        assert!(with.join(".env").exists() && !without.join(".env").exists());
        // As a server before the hard-link check may have left one.
        fs::write(without.join("leak"), "SECRET").unwrap();
        assert_eq!(store.forget_copies_unpacked(), 1);
        assert!(with.exists() && !without.exists());
        let again = store.unpack_without_env(&base, None).unwrap();
        assert!(!again.join("leak").exists() && again.join("predictor.py").exists());
    }
}
