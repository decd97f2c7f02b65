//! The python predictor shim's own unit tests (Python's unittest, stdlib only).

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
