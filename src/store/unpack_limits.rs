//! What a bundle may hold to be unpacked: at most so many bytes and files (`cortex server
//! --max-unpacked-mb`, `--max-bundle-files`), only files, directories and links, with
//! relative paths that never climb out, links that lead inside the project once its own links
//! are followed, and nothing under a link (`bundle_tree.rs`). Checked on the stored archive at
//! upload (so a bad one is refused with 422 before anyone deploys it), over the archives
//! under it for a saved model's files, and again before each unpack. Messages name the
//! archive's own entries, never the server's paths.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use super::bundle_refusals::Refused;
use super::bundle_tree::{Kind, Tree};

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

/// Reads the whole archive `gz` and checks every entry against `limits`, and its links.
pub fn check(gz: impl Read, limits: &UnpackLimits) -> Result<(), Refused> {
    let mut tree = Tree::new(limits.max_files);
    read_into(&mut tree, gz, limits, 0)?;
    tree.check().map_err(|m| m.refused)
}

/// Reads the whole archive `gz` as layer `layer` of `tree` (over the layers read before it),
/// checking every entry against `limits`; [`Tree::check`] then checks the project they make.
pub fn read_into(
    tree: &mut Tree,
    gz: impl Read,
    limits: &UnpackLimits,
    layer: usize,
) -> Result<(), Refused> {
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
        tree.add(&inside, kind_of(&entry, &name)?, layer)?;
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

/// Files, directories and links; nothing else. A hard link names a path from the top that
/// stays inside; where a symbolic link leads is for [`Tree::check`].
fn kind_of<R: Read>(entry: &tar::Entry<R>, name: &str) -> Result<Kind, Refused> {
    let kind = entry.header().entry_type();
    let unsupported = |kind| {
        Err(Refused::Unsupported {
            entry: name.to_string(),
            kind,
        })
    };
    match kind {
        EntryType::Regular | EntryType::Continuous => Ok(Kind::File),
        EntryType::Directory => Ok(Kind::Dir),
        EntryType::Symlink | EntryType::Link => {
            let target = entry
                .link_name()
                .ok()
                .flatten()
                .map(|t| t.into_owned())
                .unwrap_or_default();
            let links_out = || Refused::LinksOut {
                entry: name.to_string(),
                target: target.display().to_string(),
                via: None,
            };
            if target.as_os_str().is_empty() {
                return Err(links_out());
            }
            if kind == EntryType::Symlink {
                return Ok(Kind::Symlink(target));
            }
            relative_inside(&target)
                .filter(|t| !t.as_os_str().is_empty())
                .map(Kind::HardLink)
                .ok_or_else(links_out)
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
    fn links_are_followed_through_the_archives_own_links() {
        let limits = UnpackLimits::default();
        // `l` reads as inside, but `m` is the top: `l` is its parent. Whatever the order.
        for order in [["m", "l", "l/x"], ["l/x", "l", "m"]] {
            let gz = tar_gz(|b| {
                for name in order {
                    match name {
                        "m" => link(b, EntryType::Symlink, "m", "."),
                        "l" => link(b, EntryType::Symlink, "l", "m/.."),
                        _ => file(b, name, b"x"),
                    }
                }
            });
            assert_eq!(
                check(&gz[..], &limits),
                Err(Refused::LinksOut {
                    entry: "l".into(),
                    target: "m/..".into(),
                    via: Some("m".into()),
                }),
                "{order:?}"
            );
        }
        let said = check(
            &tar_gz(|b| {
                link(b, EntryType::Symlink, "m", ".");
                link(b, EntryType::Symlink, "l", "m/..");
            })[..],
            &limits,
        )
        .unwrap_err()
        .to_string();
        assert!(
            said.starts_with("the bundle's entry \"l\" links to \"m/..\", which leads outside the project once \"m\", a link of the bundle, is followed; "),
            "{said}"
        );
        let gz = tar_gz(|b| {
            link(b, EntryType::Symlink, "a", "b");
            link(b, EntryType::Symlink, "b", "a");
        });
        assert!(matches!(
            check(&gz[..], &limits),
            Err(Refused::LinkLoop { .. })
        ));
        // Through `..`, staying inside, and through a link that stays inside: fine.
        let gz = tar_gz(|b| {
            file(b, "models/v1/w.bin", b"w");
            link(b, EntryType::Symlink, "models/current", "v1");
            link(
                b,
                EntryType::Symlink,
                "src/w.bin",
                "../models/current/w.bin",
            );
        });
        assert_eq!(check(&gz[..], &limits), Ok(()));
        // Nothing is written through a link, even one that stays inside.
        let gz = tar_gz(|b| {
            link(b, EntryType::Symlink, "d", "models");
            file(b, "d/x", b"x");
        });
        assert!(matches!(
            check(&gz[..], &limits),
            Err(Refused::UnderNonDirectory { .. })
        ));
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
