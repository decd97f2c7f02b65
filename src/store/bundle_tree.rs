//! The shape of the project that archives unpack to, one over the other (a bundle, then a
//! saved model's files): which paths are directories, files and links, and where each link
//! leads once the project's own links are followed. Pure: `unpack_limits.rs` reads the
//! archives into a [`Tree`], and [`Tree::check`] decides.
//!
//! The rule: every symbolic link leads inside the project when its target is walked one
//! component at a time, a component that is a link of the project being replaced by where
//! that link leads (at most [`MAX_HOPS`] links in all, so loops are refused too); no entry
//! lies under a link or a file; no entry turns a directory into something else or back; a
//! hard link names a file the archives held before it. What passes unpacks to a project
//! whose links all stay inside it, with nothing written through a link.
//!
//! The tree holds each path component once (a node per directory, file or link), so checking
//! costs time and memory in proportion to the archives' paths and link targets, which are
//! bounded: at most as many directories the entries do not list as `--max-bundle-files`,
//! link targets of at most [`MAX_TARGET_BYTES`] each and [`MAX_ALL_TARGETS_BYTES`] in all.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};

use super::bundle_refusals::Refused;
pub use super::bundle_refusals::{MAX_HOPS, MAX_TARGET_BYTES};

/// The most bytes the targets of a project's links may add up to.
pub const MAX_ALL_TARGETS_BYTES: usize = 64 << 20;

/// What one entry of an archive is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    /// A symbolic link and its target, as written (read from the link's directory).
    Symlink(PathBuf),
    /// A hard link and the path it names (from the top of the project, without `.` or `..`).
    HardLink(PathBuf),
}

impl Kind {
    fn is_dir(&self) -> bool {
        matches!(self, Kind::Dir)
    }

    fn noun(&self) -> &'static str {
        match self {
            Kind::Dir => "directory",
            Kind::File | Kind::HardLink(_) => "file",
            Kind::Symlink(_) => "link",
        }
    }
}

/// One path of the project: what the last entry there made it, and which archive that was.
#[derive(Debug)]
struct Node {
    parent: usize,
    name: OsString,
    kind: Kind,
    layer: usize,
    children: HashMap<OsString, usize>,
}

/// A refusal and the archive (0 for the bottom one) that holds the entry it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misplaced {
    pub layer: usize,
    pub refused: Refused,
}

/// The project as the archives added so far leave it.
#[derive(Debug)]
pub struct Tree {
    /// `nodes[0]` is the project's top; every other node is a child of an earlier one.
    nodes: Vec<Node>,
    /// How many directories unpacking makes that no entry lists, and how many it may.
    implied: u64,
    max_implied: u64,
    /// The bytes of every link target added.
    target_bytes: usize,
    /// The first entry that unpacking would trip over (see [`Tree::add`]).
    conflict: Option<Misplaced>,
}

impl Tree {
    /// An empty project, in which entries may imply at most `max_implied` directories.
    pub fn new(max_implied: u64) -> Tree {
        let top = Node {
            parent: 0,
            name: OsString::new(),
            kind: Kind::Dir,
            layer: 0,
            children: HashMap::new(),
        };
        Tree {
            nodes: vec![top],
            implied: 0,
            max_implied,
            target_bytes: 0,
            conflict: None,
        }
    }

    /// Adds the entry at `path` (relative, without `.` or `..`) of archive `layer`, as
    /// unpacking does: it replaces what was there, and its parents become directories. The
    /// top itself (an entry `./`) is skipped, as unpacking skips it. Replacing a directory
    /// by anything else, or anything else by a directory, and a hard link to what is not a
    /// file yet, are remembered as the first conflict (see [`Tree::check`]). Refused at once:
    /// a link target past [`MAX_TARGET_BYTES`] or [`MAX_ALL_TARGETS_BYTES`], and directories
    /// implied past the tree's limit.
    pub fn add(&mut self, path: &Path, kind: Kind, layer: usize) -> Result<(), Refused> {
        let names: Vec<&OsStr> = normal_names(path).collect();
        let Some((last, parents)) = names.split_last() else {
            return Ok(());
        };
        let entry = || path.display().to_string();
        self.count_target(&kind, &entry)?;
        let mut at = 0;
        for name in parents {
            at = match self.nodes[at].children.get(*name) {
                Some(&child) => child,
                None => self.imply_dir(at, name, layer)?,
            };
        }
        if let Kind::HardLink(target) = &kind {
            if !self.lookup(target).is_some_and(|n| self.is_file(n)) {
                let target = target.display().to_string();
                self.conflict(
                    layer,
                    Refused::HardLinkToNoFile {
                        entry: entry(),
                        target,
                    },
                );
            }
        }
        let Some(&old) = self.nodes[at].children.get(*last) else {
            self.push(at, last, kind, layer);
            return Ok(());
        };
        let was = &self.nodes[old].kind;
        if was.is_dir() != kind.is_dir() {
            let (was, now) = (was.noun(), kind.noun());
            self.conflict(
                layer,
                Refused::Replaces {
                    entry: entry(),
                    was,
                    now,
                },
            );
        }
        let node = &mut self.nodes[old];
        (node.kind, node.layer) = (kind, layer);
        Ok(())
    }

    /// Counts a link's target against [`MAX_TARGET_BYTES`] and [`MAX_ALL_TARGETS_BYTES`].
    fn count_target(&mut self, kind: &Kind, entry: &dyn Fn() -> String) -> Result<(), Refused> {
        let (Kind::Symlink(target) | Kind::HardLink(target)) = kind else {
            return Ok(());
        };
        let len = target.as_os_str().len();
        if len > MAX_TARGET_BYTES {
            return Err(Refused::LongTarget { entry: entry() });
        }
        self.target_bytes += len;
        if self.target_bytes > MAX_ALL_TARGETS_BYTES {
            return Err(Refused::TooManyTargets {
                limit: MAX_ALL_TARGETS_BYTES >> 20,
            });
        }
        Ok(())
    }

    /// A directory that unpacking makes for the entries under it, though none lists it.
    fn imply_dir(&mut self, parent: usize, name: &OsStr, layer: usize) -> Result<usize, Refused> {
        self.implied += 1;
        if self.implied > self.max_implied {
            return Err(Refused::TooManyDirectories {
                limit: self.max_implied,
            });
        }
        Ok(self.push(parent, name, Kind::Dir, layer))
    }

    fn push(&mut self, parent: usize, name: &OsStr, kind: Kind, layer: usize) -> usize {
        let id = self.nodes.len();
        self.nodes.push(Node {
            parent,
            name: name.to_os_string(),
            kind,
            layer,
            children: HashMap::new(),
        });
        self.nodes[parent].children.insert(name.to_os_string(), id);
        id
    }

    fn conflict(&mut self, layer: usize, refused: Refused) {
        self.conflict.get_or_insert(Misplaced { layer, refused });
    }

    /// The node at `path` (from the top, no link followed), when there is one.
    fn lookup(&self, path: &Path) -> Option<usize> {
        normal_names(path).try_fold(0, |at, name| self.nodes[at].children.get(name).copied())
    }

    fn is_file(&self, id: usize) -> bool {
        matches!(self.nodes[id].kind, Kind::File | Kind::HardLink(_))
    }

    /// The path of node `id`, for messages.
    fn path(&self, mut id: usize) -> String {
        let mut names = Vec::new();
        while id != 0 {
            names.push(self.nodes[id].name.as_os_str());
            id = self.nodes[id].parent;
        }
        names
            .iter()
            .rev()
            .collect::<PathBuf>()
            .display()
            .to_string()
    }

    /// Refuses the project when a link leads out of it or round in a loop, an entry lies
    /// under a link or a file, or an entry conflicts with one before it; in that order, each
    /// in the order the archives list them.
    pub fn check(&self) -> Result<(), Misplaced> {
        self.links_lead_inside()?;
        self.entries_under_directories()?;
        match &self.conflict {
            Some(first) => Err(first.clone()),
            None => Ok(()),
        }
    }

    fn links_lead_inside(&self) -> Result<(), Misplaced> {
        let mut resolver = Resolver {
            tree: self,
            done: HashMap::new(),
        };
        for (id, node) in self.nodes.iter().enumerate() {
            let Kind::Symlink(target) = &node.kind else {
                continue;
            };
            let (entry, target) = (self.path(id), target.display().to_string());
            let refused = match resolver.follow(id, 0) {
                Ok(_) => continue,
                Err(Astray::Out(via)) => Refused::LinksOut {
                    entry,
                    target,
                    via: via.map(|v| self.path(v)),
                },
                Err(Astray::Loop) => Refused::LinkLoop { entry, target },
            };
            return Err(Misplaced {
                layer: node.layer,
                refused,
            });
        }
        Ok(())
    }

    /// Every node's parent is a directory: since every path's parents are nodes, nothing lies
    /// under a link or a file.
    fn entries_under_directories(&self) -> Result<(), Misplaced> {
        let misplaced = self
            .nodes
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, node)| !self.nodes[node.parent].kind.is_dir());
        let Some((id, node)) = misplaced else {
            return Ok(());
        };
        Err(Misplaced {
            layer: node.layer,
            refused: Refused::UnderNonDirectory {
                entry: self.path(id),
                parent: self.path(node.parent),
                what: self.nodes[node.parent].kind.noun(),
            },
        })
    }
}

/// The names of `path`'s components (a path without `..`, `.` or a root).
fn normal_names(path: &Path) -> impl Iterator<Item = &OsStr> {
    path.components().filter_map(|c| match c {
        Component::Normal(name) => Some(name),
        _ => None,
    })
}

/// Why a link does not lead to a place inside the project.
#[derive(Debug, PartialEq, Eq)]
enum Astray {
    /// Above the project's top, or an absolute path; after following that link of the
    /// project, when one was followed on the way.
    Out(Option<usize>),
    /// More than [`MAX_HOPS`] links on the way (a loop, or a long chain).
    Loop,
}

/// A place in the project: a node, and how many components past it that the project does
/// not hold (a link may name a path that does not exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct At {
    node: usize,
    beyond: usize,
}

/// Follows links through a [`Tree`], remembering where each link leads.
struct Resolver<'a> {
    tree: &'a Tree,
    /// Where a link leads (no link on the way) and how many links reaching it took.
    done: HashMap<usize, (At, u32)>,
}

impl Resolver<'_> {
    /// Where node `id` leads when it is a link (else the node itself), and through how many
    /// links, itself included. `depth` is how many links are being followed around it.
    fn follow(&mut self, id: usize, depth: u32) -> Result<(At, u32), Astray> {
        if let Some(done) = self.done.get(&id) {
            return Ok(*done);
        }
        let node = &self.tree.nodes[id];
        let Kind::Symlink(target) = &node.kind else {
            return Ok((
                At {
                    node: id,
                    beyond: 0,
                },
                0,
            ));
        };
        if depth >= MAX_HOPS {
            return Err(Astray::Loop);
        }
        let from = At {
            node: node.parent,
            beyond: 0,
        };
        let (end, hops) = self.walk(from, target, depth + 1)?;
        let done = (end, hops + 1);
        if done.1 > MAX_HOPS {
            return Err(Astray::Loop);
        }
        self.done.insert(id, done);
        Ok(done)
    }

    /// Walks `path` from `from` one component at a time, a link being replaced by where it
    /// leads: the end, with no link on it, and the links followed.
    fn walk(&mut self, from: At, path: &Path, depth: u32) -> Result<(At, u32), Astray> {
        let (mut at, mut hops, mut via) = (from, 0u32, None);
        for component in path.components() {
            match component {
                Component::CurDir => {}
                Component::ParentDir if at.beyond > 0 => at.beyond -= 1,
                Component::ParentDir if at.node == 0 => return Err(Astray::Out(via)),
                Component::ParentDir => at.node = self.tree.nodes[at.node].parent,
                Component::RootDir | Component::Prefix(_) => return Err(Astray::Out(via)),
                Component::Normal(_) if at.beyond > 0 => at.beyond += 1,
                Component::Normal(name) => {
                    let Some(&child) = self.tree.nodes[at.node].children.get(name) else {
                        at.beyond = 1;
                        continue;
                    };
                    let (end, used) = self.follow(child, depth)?;
                    hops += used;
                    if hops > MAX_HOPS {
                        return Err(Astray::Loop);
                    }
                    if used > 0 {
                        via = Some(child);
                    }
                    at = end;
                }
            }
        }
        Ok((at, hops))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(entries: &[(&str, Kind)]) -> Tree {
        let mut t = Tree::new(u64::MAX);
        for (path, kind) in entries {
            t.add(Path::new(path), kind.clone(), 0).unwrap();
        }
        t
    }

    fn link(target: &str) -> Kind {
        Kind::Symlink(PathBuf::from(target))
    }

    fn refused(t: &Tree) -> Option<Refused> {
        t.check().err().map(|m| m.refused)
    }

    #[test]
    fn a_link_out_through_a_link_to_the_top_is_refused() {
        let t = tree(&[("m", link(".")), ("l", link("m/..")), ("l/x", Kind::File)]);
        assert_eq!(
            refused(&t),
            Some(Refused::LinksOut {
                entry: "l".into(),
                target: "m/..".into(),
                via: Some("m".into()),
            })
        );
        // Without `l/x`, the link alone is refused all the same.
        let t = tree(&[("m", link(".")), ("l", link("m/.."))]);
        assert!(matches!(refused(&t), Some(Refused::LinksOut { .. })));
    }

    #[test]
    fn a_chain_of_links_through_subdirectories_is_followed() {
        // `a/up` is the top; `b -> a/up/..` climbs above it.
        let t = tree(&[
            ("a/f", Kind::File),
            ("a/up", link("..")),
            ("b", link("a/up/..")),
        ]);
        assert!(matches!(refused(&t), Some(Refused::LinksOut { entry, .. }) if entry == "b"));
        // `d/sub -> ../a` is `a`: `c -> d/sub/..` is `d`'s parent, the top: inside.
        let t = tree(&[
            ("a/f", Kind::File),
            ("d/sub", link("../a")),
            ("c", link("d/sub/../a/f")),
        ]);
        assert_eq!(t.check(), Ok(()));
    }

    #[test]
    fn loops_and_long_chains_are_refused() {
        let t = tree(&[("a", link("b")), ("b", link("a"))]);
        assert!(matches!(refused(&t), Some(Refused::LinkLoop { entry, .. }) if entry == "a"));
        let t = tree(&[("self", link("self/x"))]);
        assert!(matches!(refused(&t), Some(Refused::LinkLoop { .. })));
        let mut chain: Vec<(String, Kind)> = (0..=MAX_HOPS)
            .map(|i| (format!("l{i}"), link(&format!("l{}", i + 1))))
            .collect();
        chain.push((format!("l{}", MAX_HOPS + 1), Kind::File));
        let entries: Vec<(&str, Kind)> =
            chain.iter().map(|(p, k)| (p.as_str(), k.clone())).collect();
        assert!(matches!(
            refused(&tree(&entries)),
            Some(Refused::LinkLoop { .. })
        ));
        // One link fewer is fine.
        assert_eq!(tree(&entries[1..]).check(), Ok(()));
    }

    #[test]
    fn absolute_targets_are_refused() {
        let t = tree(&[("etc", link("/etc"))]);
        assert!(matches!(refused(&t), Some(Refused::LinksOut { .. })));
        // Reached through another link too.
        let t = tree(&[("abs", link("/")), ("via", link("abs/etc"))]);
        assert!(matches!(refused(&t), Some(Refused::LinksOut { entry, .. }) if entry == "abs"));
    }

    #[test]
    fn links_that_climb_and_stay_inside_are_accepted() {
        let t = tree(&[
            ("predictor.py", Kind::File),
            ("a/b/c", link("../../predictor.py")),
            ("a/d", link("b/../../a/b")),
            ("top", link(".")),
            ("dangling", link("sub/missing")),
            ("e", Kind::HardLink(PathBuf::from("predictor.py"))),
        ]);
        assert_eq!(t.check(), Ok(()));
    }

    #[test]
    fn entries_under_a_link_or_a_file_are_refused() {
        // Even a link that stays inside: nothing is written through it.
        let t = tree(&[("d", link("sub")), ("d/x", Kind::File)]);
        assert_eq!(
            refused(&t),
            Some(Refused::UnderNonDirectory {
                entry: "d/x".into(),
                parent: "d".into(),
                what: "link"
            })
        );
        let t = tree(&[("w", Kind::File), ("w/x", Kind::File)]);
        assert!(matches!(
            refused(&t),
            Some(Refused::UnderNonDirectory { what: "file", .. })
        ));
    }

    #[test]
    fn a_directory_replaced_and_hard_links_to_no_file_are_refused() {
        let t = tree(&[("w", Kind::Dir), ("w", link("."))]);
        assert!(matches!(
            refused(&t),
            Some(Refused::Replaces {
                was: "directory",
                now: "link",
                ..
            })
        ));
        let t = tree(&[("f", Kind::File), ("f", Kind::Dir)]);
        assert!(matches!(refused(&t), Some(Refused::Replaces { .. })));
        let t = tree(&[
            ("s", link("f")),
            ("f", Kind::File),
            ("h", Kind::HardLink("s".into())),
        ]);
        assert!(matches!(
            refused(&t),
            Some(Refused::HardLinkToNoFile { .. })
        ));
        let t = tree(&[("h", Kind::HardLink("later".into())), ("later", Kind::File)]);
        assert!(matches!(
            refused(&t),
            Some(Refused::HardLinkToNoFile { .. })
        ));
        // A file replaced by a link, or a link by a file, is what unpacking does.
        let t = tree(&[
            ("f", Kind::File),
            ("f", link("g")),
            ("g", Kind::File),
            ("g", link("f")),
        ]);
        assert!(matches!(refused(&t), Some(Refused::LinkLoop { .. })));
    }

    #[test]
    fn what_a_check_holds_is_bounded() {
        // Deep paths imply a directory per component, counted against the limit.
        let mut t = Tree::new(1000);
        let deep = vec!["a"; 600].join("/");
        t.add(Path::new(&format!("x/{deep}")), Kind::File, 0)
            .unwrap();
        let refused = t.add(Path::new(&format!("y/{deep}")), Kind::File, 0);
        assert_eq!(refused, Err(Refused::TooManyDirectories { limit: 1000 }));
        let long = "a/".repeat(MAX_TARGET_BYTES / 2 + 1);
        let refused = Tree::new(10).add(Path::new("l"), link(&long), 0);
        assert_eq!(refused, Err(Refused::LongTarget { entry: "l".into() }));
        // Many links with long targets: time in proportion to their bytes.
        let mut t = Tree::new(u64::MAX);
        t.add(Path::new("d/f"), Kind::File, 0).unwrap();
        t.add(Path::new("up"), link("d/.."), 0).unwrap();
        let target = format!("up/{}d/f", "d/../".repeat(800));
        for i in 0..2000 {
            t.add(Path::new(&format!("l{i}")), link(&target), 0)
                .unwrap();
        }
        let started = std::time::Instant::now();
        assert_eq!(t.check(), Ok(()));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_refusal_names_the_archive_holding_the_entry() {
        let mut t = Tree::new(u64::MAX);
        t.add(Path::new("m"), Kind::Dir, 0).unwrap();
        t.add(Path::new("l"), link("m/.."), 0).unwrap();
        assert_eq!(t.check(), Ok(()));
        t.add(Path::new("m"), link("."), 1).unwrap();
        // `m` was a directory: the files over it conflict, and `l` (the base's) now leads out.
        let m = t.check().unwrap_err();
        assert_eq!(m.layer, 0);
        assert!(matches!(m.refused, Refused::LinksOut { entry, .. } if entry == "l"));
    }
}
