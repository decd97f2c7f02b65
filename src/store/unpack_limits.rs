//! What a bundle may hold to be unpacked: at most so many bytes and files (`cortex server
//! --max-unpacked-mb`, `--max-bundle-files`), only files, directories and links that stay
//! inside the project, with relative paths that never climb out. Checked on the stored archive
//! at upload (so a bad one is refused with 422 before anyone deploys it) and again before each
//! unpack. Messages name the archive's own entries, never the server's paths.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

/// The limits on what one bundle unpacks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    pub max_bytes: u64,
    pub max_files: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_bytes: 2 << 30,
            max_files: 100_000,
        }
    }
}

/// Why an archive cannot be unpacked safely.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("the bundle is not a valid tar.gz archive ({0}); run `cortex deploy` again")]
    NotAnArchive(String),
    #[error("the bundle unpacks to more than {limit} MiB; leave large files out of the project (.cortexignore) and load them at start-up")]
    TooBig { limit: u64 },
    #[error("the bundle holds more than {limit} files; leave generated files out of the project (.cortexignore)")]
    TooManyFiles { limit: u64 },
    #[error("the bundle's entry {0:?} has an absolute path or climbs out of the project with `..`; bundles hold relative paths only")]
    Escapes(String),
    #[error("the bundle's entry {entry:?} links to {target:?}, outside the project; bundles may only link inside the project")]
    LinksOut { entry: String, target: String },
    #[error(
        "the bundle's entry {entry:?} is a {kind}; bundles hold only files, directories and links"
    )]
    Unsupported { entry: String, kind: &'static str },
}

/// Reads the whole archive `gz` and checks every entry against `limits`.
pub fn check(gz: impl Read, limits: &UnpackLimits) -> Result<(), Refused> {
    let bad = |e: std::io::Error| Refused::NotAnArchive(e.to_string());
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    let (mut bytes, mut files) = (0u64, 0u64);
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        files += 1;
        if files > limits.max_files {
            return Err(Refused::TooManyFiles {
                limit: limits.max_files,
            });
        }
        let path = entry.path().map_err(bad)?.into_owned();
        let name = path.display().to_string();
        let inside = relative_inside(&path).ok_or_else(|| Refused::Escapes(name.clone()))?;
        check_kind(&entry, &name, &inside)?;
        bytes = bytes.saturating_add(entry.header().size().map_err(bad)?);
        if bytes > limits.max_bytes {
            return Err(Refused::TooBig {
                limit: limits.max_bytes >> 20,
            });
        }
        // Read through the entry: a corrupt stream is found here, not at unpack.
        std::io::copy(&mut entry, &mut std::io::sink()).map_err(bad)?;
    }
    Ok(())
}

/// Files, directories and links that stay inside; nothing else.
fn check_kind<R: Read>(entry: &tar::Entry<R>, name: &str, inside: &Path) -> Result<(), Refused> {
    let kind = entry.header().entry_type();
    let unsupported = |kind| {
        Err(Refused::Unsupported {
            entry: name.to_string(),
            kind,
        })
    };
    match kind {
        EntryType::Regular | EntryType::Continuous | EntryType::Directory => Ok(()),
        EntryType::Symlink | EntryType::Link => {
            let target = entry
                .link_name()
                .ok()
                .flatten()
                .map(|t| t.into_owned())
                .unwrap_or_default();
            // A symbolic link is read from its own directory; a hard link from the top.
            let from = if kind == EntryType::Symlink {
                inside.parent().unwrap_or(Path::new("")).join(&target)
            } else {
                target.clone()
            };
            if target.as_os_str().is_empty() || relative_inside(&from).is_none() {
                return Err(Refused::LinksOut {
                    entry: name.to_string(),
                    target: target.display().to_string(),
                });
            }
            Ok(())
        }
        EntryType::Char => unsupported("character device"),
        EntryType::Block => unsupported("block device"),
        EntryType::Fifo => unsupported("named pipe"),
        EntryType::GNUSparse => unsupported("sparse file"),
        _ => unsupported("special entry"),
    }
}

/// `path` without `.` components, when it is relative and never climbs above where it starts.
fn relative_inside(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let raw = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        gz.finish().unwrap()
    }

    fn header(kind: EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut h = header(EntryType::Regular, data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, kind: EntryType, name: &str, target: &str) {
        let mut h = header(kind, 0);
        b.append_link(&mut h, name, target).unwrap();
    }

    fn checked(gz: Vec<u8>) -> Result<(), Refused> {
        let limits = UnpackLimits {
            max_bytes: 1 << 20,
            max_files: 3,
        };
        check(&gz[..], &limits)
    }

    #[test]
    fn a_plain_project_passes() {
        let gz = tar_gz(|b| {
            file(b, "a/b.py", b"x");
            link(b, EntryType::Symlink, "a/c", "../d");
            link(b, EntryType::Link, "e", "a/b.py");
        });
        assert_eq!(checked(gz), Ok(()));
    }

    #[test]
    fn too_big_and_too_many_are_refused() {
        let big = vec![0u8; (1 << 20) + 1];
        let gz = tar_gz(|b| file(b, "big", &big));
        assert_eq!(checked(gz), Err(Refused::TooBig { limit: 1 }));
        let gz = tar_gz(|b| (0..4).for_each(|i| file(b, &format!("f{i}"), b"")));
        assert_eq!(checked(gz), Err(Refused::TooManyFiles { limit: 3 }));
    }

    #[test]
    fn links_out_are_refused() {
        for (kind, target) in [
            (EntryType::Symlink, "/etc/passwd"),
            (EntryType::Symlink, "../../x"),
            (EntryType::Link, "../x"),
        ] {
            let gz = tar_gz(|b| link(b, kind, "a/l", target));
            assert!(
                matches!(checked(gz), Err(Refused::LinksOut { .. })),
                "{target}"
            );
        }
    }

    #[test]
    fn escaping_paths_and_devices_are_refused() {
        // The builder refuses `..` itself: write the name into the header directly.
        let gz = tar_gz(|b| {
            let mut h = header(EntryType::Regular, 1);
            h.as_gnu_mut().unwrap().name[..7].copy_from_slice(b"../evil");
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
        });
        assert_eq!(checked(gz), Err(Refused::Escapes("../evil".into())));
        let gz = tar_gz(|b| {
            let mut h = header(EntryType::Char, 0);
            b.append_data(&mut h, "tty", &[][..]).unwrap();
        });
        assert!(matches!(checked(gz), Err(Refused::Unsupported { .. })));
        assert!(matches!(
            checked(b"not gzip".to_vec()),
            Err(Refused::NotAnArchive(_))
        ));
    }
}
