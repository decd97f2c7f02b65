//! `cortex delete -c/--keep-cache`, as upstream cortex had it: the deleted API's uploaded
//! project stays on the server, so deploying it again uploads nothing.

use crate::harness::*;

fn bundles(s: &Server) -> Vec<String> {
    let dir = s.data_dir().join("bundles");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".tar.gz"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn delete_keep_cache_keeps_the_bundle_and_plain_delete_removes_it() {
    let s = Server::start();
    let p = s.python_project(
        "kept",
        "RealtimeAPI",
        "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return 'ok'\n",
        "",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("kept", "live");
    let stored = bundles(&s);
    assert_eq!(stored.len(), 1, "one bundle after the deploy: {stored:?}");

    assert_eq!(s.ok(&p, &["delete", "kept", "-c"]), "deleting kept\n");
    assert_eq!(bundles(&s), stored, "--keep-cache keeps the bundle");

    // Deploying it again finds the bundle on the server, and serves.
    s.ok(&p, &["deploy"]);
    s.wait_status("kept", "live");
    assert_eq!(s.predict("kept", "{}").text().unwrap(), "ok");

    assert_eq!(s.ok(&p, &["delete", "kept"]), "deleting kept\n");
    assert!(
        bundles(&s).is_empty(),
        "a plain delete removes the bundle at once: {:?}",
        bundles(&s)
    );
}
