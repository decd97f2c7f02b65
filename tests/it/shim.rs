//! The python predictor shim's own unit tests (Python's unittest, stdlib only): on `python3`,
//! and on the oldest and the newest CPython (3.7 or later) this machine has.

use std::path::{Path, PathBuf};
use std::process::Command;

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/runtime/python")
}

/// Runs every test module under `tests/` with `python`.
fn run_suite(python: &str) {
    let out = Command::new(python)
        .args(["-m", "unittest", "discover", "-q", "-s", "tests", "-t", "."])
        .current_dir(python_dir())
        .output()
        .unwrap_or_else(|e| panic!("{python} must be installed to run the tests: {e}"));
    assert!(
        out.status.success(),
        "python shim tests failed on {python}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn python_shim_unit_tests_pass() {
    run_suite("python3");
}

/// `(major, minor)` and the real executable of `program`, if it runs.
fn version_of(program: &Path) -> Option<((u32, u32), PathBuf)> {
    let out = Command::new(program)
        .args([
            "-c",
            "import sys; print('%d %d' % sys.version_info[:2]); print(sys.executable)",
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let mut lines = text.lines();
    let mut version = lines.next()?.split(' ').map(|n| n.parse::<u32>().ok());
    let (major, minor) = (version.next()??, version.next()??);
    let executable = PathBuf::from(lines.next()?.trim());
    Some(((major, minor), executable))
}

/// Every CPython 3.7+ found: `python3.N` on `PATH`, and pyenv's versions. One per version.
fn interpreters() -> Vec<((u32, u32), PathBuf)> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for minor in 7..=20 {
            candidates.push(dir.join(format!("python3.{minor}")));
        }
    }
    let pyenv_root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv")));
    if let Some(Ok(versions)) = pyenv_root.map(|r| std::fs::read_dir(r.join("versions"))) {
        for entry in versions.flatten() {
            candidates.push(entry.path().join("bin/python3"));
        }
    }
    let mut found: Vec<((u32, u32), PathBuf)> = Vec::new();
    for candidate in candidates.into_iter().filter(|c| c.is_file()) {
        if let Some((version, executable)) = version_of(&candidate) {
            if version >= (3, 7) && !found.iter().any(|(v, _)| *v == version) {
                found.push((version, executable));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn python_shim_unit_tests_pass_on_the_oldest_and_newest_python() {
    let found = interpreters();
    let (Some(oldest), Some(newest)) = (found.first(), found.last()) else {
        eprintln!("note: no CPython 3.7+ found besides python3; the shim ran on python3 only");
        return;
    };
    if found.len() < 2 {
        eprintln!(
            "note: only one CPython 3.7+ found ({}.{}): no oldest and newest to run the shim's tests on besides python3",
            oldest.0 .0, oldest.0 .1
        );
        return;
    }
    for (_, python) in [oldest, newest] {
        run_suite(&python.display().to_string());
    }
}
