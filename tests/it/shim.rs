//! The python predictor shim's own unit tests (Python's unittest, stdlib only).

#[test]
fn python_shim_unit_tests_pass() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/runtime/python");
    let out = std::process::Command::new("python3")
        .args(["-m", "unittest", "-q", "test_cortex_shim"])
        .current_dir(&dir)
        .output()
        .expect("python3 must be installed to run the tests");
    assert!(
        out.status.success(),
        "python shim tests failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
