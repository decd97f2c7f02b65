//! The files of a project, as `cortex deploy` packs them: the config file's directory without
//! hidden files and directories (except a top-level `.env`), `*.pyc`, `*.pyo`, `*.pyd`,
//! `__pycache__`, the config file itself, and whatever a `.cortexignore` (gitignore syntax;
//! one in any directory applies below it) matches.
//!
//! What is left out is decided before anything is opened, stat'ed or followed: a link the
//! upload leaves out (an editor's lock file `.#predictor.py`, which points nowhere) is never
//! looked at. Links: one that leads inside the project is packed as what it names (a file's
//! content, or a directory's files, under the link's own name), as the project reads it on
//! this machine. One that leads outside the project or nowhere, or to a directory that holds
//! it, is refused, naming it: cortex uploads what is inside the project's directory only.

use std::ffi::OsStr;
use std::fs::FileType;
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::Match;

/// Why a project's files cannot be listed; paths of links are relative to the project.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("cannot list the project's files: {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", .path.display())]
    Ignore {
        path: PathBuf,
        source: ignore::Error,
    },
    #[error("{} links to {}, outside the project; cortex uploads only what is inside the project's directory: copy what it points to into the project, or add {} to .cortexignore", .link.display(), .target.display(), .link.display())]
    LinksOut { link: PathBuf, target: PathBuf },
    #[error("{} links to {}, which {why}; remove the link, or add {} to .cortexignore", .link.display(), .target.display(), .link.display())]
    Unresolved {
        link: PathBuf,
        target: PathBuf,
        why: &'static str,
    },
    #[error("{} links to {}, a directory that holds the link, so it would be packed without end; remove the link, or add {} to .cortexignore", .link.display(), .target.display(), .link.display())]
    Loop { link: PathBuf, target: PathBuf },
}

/// The files of the project at `root` (the config file's directory, without links on the
/// way), relative to it, sorted.
pub fn project_files(root: &Path, config_file: &Path) -> Result<Vec<PathBuf>, ListError> {
    let top = root.canonicalize().map_err(|source| ListError::Read {
        path: root.to_path_buf(),
        source,
    })?;
    let mut walk = Walk {
        root,
        top: top.clone(),
        config_file: config_file.canonicalize().ok(),
        open: vec![top],
        files: Vec::new(),
    };
    walk.dir(Path::new(""), &mut Vec::new())?;
    walk.files.sort();
    Ok(walk.files)
}

/// One listing of a project.
struct Walk<'a> {
    root: &'a Path,
    /// The project's directory, with no link on the way.
    top: PathBuf,
    config_file: Option<PathBuf>,
    /// The directories being walked, outermost first, each with no link on the way: a link
    /// to one of them or above would be walked without end.
    open: Vec<PathBuf>,
    files: Vec<PathBuf>,
}

impl Walk<'_> {
    /// Lists the directory `rel` (through a link or not), under the `.cortexignore` rules of
    /// the directories above it (`rules`, innermost last).
    fn dir(&mut self, rel: &Path, rules: &mut Vec<Gitignore>) -> Result<(), ListError> {
        let path = self.root.join(rel);
        let read = |source| ListError::Read {
            path: path.clone(),
            source,
        };
        let own_rules = cortexignore(&path)?;
        let pushed = own_rules.is_some();
        rules.extend(own_rules);
        let mut entries = std::fs::read_dir(&path)
            .and_then(|d| d.collect::<Result<Vec<_>, _>>())
            .map_err(read)?;
        // In name order, so that the first link refused is always the same.
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            if left_out_by_name(&name, rel.as_os_str().is_empty()) {
                continue;
            }
            // The entry's own type: a link is not followed here.
            let kind = entry.file_type().map_err(read)?;
            self.entry(&rel.join(&name), kind, rules)?;
        }
        if pushed {
            rules.pop();
        }
        Ok(())
    }

    fn entry(
        &mut self,
        rel: &Path,
        kind: FileType,
        rules: &mut Vec<Gitignore>,
    ) -> Result<(), ListError> {
        let path = self.root.join(rel);
        // A rule for directories (`data/`) leaves out a link of that name too, wherever it
        // leads: what a link names is not looked at before the rules are.
        let dir_rule = kind.is_symlink() && ignored(rules, &path, true);
        if dir_rule || ignored(rules, &path, kind.is_dir()) {
            return Ok(());
        }
        if kind.is_symlink() {
            return self.link(rel, rules);
        }
        if kind.is_dir() {
            let real = self
                .open
                .last()
                .unwrap_or(&self.top)
                .join(path.file_name().unwrap_or_default());
            return self.walk_into(rel, real, rules);
        }
        if kind.is_file() {
            self.file(rel);
        }
        Ok(())
    }

    /// A link the rules keep: packed as what it names when that is inside the project.
    fn link(&mut self, rel: &Path, rules: &mut Vec<Gitignore>) -> Result<(), ListError> {
        let path = self.root.join(rel);
        let (link, target) = (
            rel.to_path_buf(),
            std::fs::read_link(&path).unwrap_or_default(),
        );
        let real = path
            .canonicalize()
            .map_err(|e| unresolved(&link, &target, &path, e))?;
        if !real.starts_with(&self.top) {
            return Err(ListError::LinksOut { link, target });
        }
        let kind = std::fs::metadata(&real)
            .map_err(|source| ListError::Read {
                path: path.clone(),
                source,
            })?
            .file_type();
        if !kind.is_dir() {
            if kind.is_file() {
                self.file(rel);
            }
            return Ok(());
        }
        if self.open.iter().any(|open| open.starts_with(&real)) {
            return Err(ListError::Loop { link, target });
        }
        self.walk_into(rel, real, rules)
    }

    /// Lists the directory `rel`, which is `real` with no link on the way.
    fn walk_into(
        &mut self,
        rel: &Path,
        real: PathBuf,
        rules: &mut Vec<Gitignore>,
    ) -> Result<(), ListError> {
        self.open.push(real);
        let listed = self.dir(rel, rules);
        self.open.pop();
        listed
    }

    /// A file (or a link to one inside the project), unless it is the config file.
    fn file(&mut self, rel: &Path) {
        let path = self.root.join(rel);
        if self.config_file.is_some() && path.canonicalize().ok() == self.config_file {
            return;
        }
        self.files.push(rel.to_path_buf());
    }
}

/// Why the link `link` (to `target`, at `path`) leads nowhere.
fn unresolved(link: &Path, target: &Path, path: &Path, e: std::io::Error) -> ListError {
    let why = match e.raw_os_error() {
        Some(libc::ELOOP) => "goes round a loop of links",
        _ if e.kind() == std::io::ErrorKind::NotFound => "does not exist",
        _ => {
            return ListError::Read {
                path: path.to_path_buf(),
                source: e,
            }
        }
    };
    ListError::Unresolved {
        link: link.to_path_buf(),
        target: target.to_path_buf(),
        why,
    }
}

/// Whether a file or directory is left out by its name alone: hidden (a top-level `.env`
/// aside) or Python's compiled files.
fn left_out_by_name(name: &OsStr, top: bool) -> bool {
    let name = name.to_string_lossy();
    if name.starts_with('.') {
        return !(top && name == ".env");
    }
    name == "__pycache__"
        || name.ends_with(".pyc")
        || name.ends_with(".pyo")
        || name.ends_with(".pyd")
}

/// The rules of `dir/.cortexignore`, when there is one.
fn cortexignore(dir: &Path) -> Result<Option<Gitignore>, ListError> {
    let path = dir.join(".cortexignore");
    if !path.is_file() {
        return Ok(None);
    }
    let bad = |source| ListError::Ignore {
        path: path.clone(),
        source,
    };
    let mut builder = GitignoreBuilder::new(dir);
    if let Some(e) = builder.add(&path) {
        return Err(bad(e));
    }
    builder.build().map(Some).map_err(bad)
}

/// Whether the innermost `.cortexignore` rule that matches `path` leaves it out.
fn ignored(rules: &[Gitignore], path: &Path, is_dir: bool) -> bool {
    for rule in rules.iter().rev() {
        match rule.matched(path, is_dir) {
            Match::Ignore(_) => return true,
            Match::Whitelist(_) => return false,
            Match::None => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn listed(root: &Path) -> Result<Vec<String>, ListError> {
        let files = project_files(root, &root.join("cortex.yaml"))?;
        Ok(files.iter().map(|p| p.display().to_string()).collect())
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
            "sub/keep.py",
            "sub/scratch.txt",
            "__pycache__/x.cpython-311.pyc",
            "a.pyc",
            "data/big.csv",
            "keep.txt",
        ] {
            write(root, f, "x");
        }
        write(root, ".cortexignore", "data/\n*.bin\n");
        write(root, "sub/.cortexignore", "*.txt\n");
        assert_eq!(
            listed(root).unwrap(),
            vec![".env", "keep.txt", "predictor.py", "sub/keep.py"]
        );
    }

    #[test]
    fn excluded_links_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "predictor.py", "p");
        // What Emacs leaves while a file is open, and other links that point nowhere.
        symlink("root@host.1234:1700", root.join(".#predictor.py")).unwrap();
        symlink("/nonexistent", root.join(".hidden")).unwrap();
        symlink("/nonexistent", root.join("sub.pyc")).unwrap();
        symlink("/nonexistent", root.join("ignored")).unwrap();
        symlink("/nonexistent", root.join("data")).unwrap();
        symlink("/etc", root.join("etc")).unwrap();
        write(root, ".cortexignore", "ignored\ndata/\netc/\n");
        assert_eq!(listed(root).unwrap(), vec!["predictor.py"]);
    }

    #[test]
    fn links_out_of_the_project_or_nowhere_are_refused_naming_them() {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "weights.bin", "w");
        let cases: [(&str, PathBuf, &str); 6] = [
            ("linkdir", "/etc".into(), "linkdir links to /etc, outside the project; cortex uploads only what is inside the project's directory: copy what it points to into the project, or add linkdir to .cortexignore"),
            ("model.bin", outside.path().join("weights.bin"), "outside the project"),
            ("up", "..".into(), "outside the project"),
            ("gone", "nowhere".into(), "gone links to nowhere, which does not exist; remove the link, or add gone to .cortexignore"),
            ("self", ".".into(), "self links to ., a directory that holds the link"),
            ("sub/back", "..".into(), "sub/back links to .., a directory that holds the link"),
        ];
        for (link, target, said) in cases {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), "sub/predictor.py", "p");
            symlink(&target, dir.path().join(link)).unwrap();
            let err = listed(dir.path()).unwrap_err().to_string();
            assert!(err.contains(said), "{link}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        symlink("b", dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        let err = listed(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("a links to b, which goes round a loop of links"),
            "{err}"
        );
    }

    #[test]
    fn links_inside_the_project_are_listed_as_what_they_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "cortex.yaml", "x");
        write(root, "predictor.py", "p");
        write(root, "models/v1/w.bin", "w");
        write(root, "models/v1/notes.tmp", "n");
        write(root, ".cortexignore", "*.tmp\n");
        symlink("predictor.py", root.join("alias.py")).unwrap();
        symlink(root.join("models/v1"), root.join("current")).unwrap();
        symlink("../../cortex.yaml", root.join("models/v1/config.yaml")).unwrap();
        assert_eq!(
            listed(root).unwrap(),
            vec![
                "alias.py",
                "current/w.bin",
                "models/v1/w.bin",
                "predictor.py"
            ]
        );
    }
}
