//! A cortex 0.2x project that relied on a package its image came with: the error says what to
//! do.

use crate::harness::*;

#[test]
fn a_missing_module_gets_a_hint_to_add_it_to_requirements() {
    let s = Server::start();
    let p = s.python_project(
        "needs-pkg",
        "RealtimeAPI",
        "import cortex_test_absent_pkg.sub\n\nclass PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return 1\n",
        "",
    );
    s.ok(&p, &["deploy"]);
    let api = s.wait_status("needs-pkg", "error");
    let errors = api["errors"].to_string();
    assert!(
        errors.contains("ModuleNotFoundError: No module named 'cortex_test_absent_pkg"),
        "{api}"
    );
    let text = s.ok(&p, &["get", "needs-pkg"]);
    assert!(
        text.contains(
            "hint: the predictor imports \"cortex_test_absent_pkg\", which is not installed"
        ) && text.contains("requirements.txt"),
        "{text}"
    );
}
