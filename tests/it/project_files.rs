//! What `cortex deploy` packs of a project's links: links the upload leaves out (hidden,
//! `.cortexignore`) are never followed, so a broken one stops nothing; a link that leads
//! outside the project is refused, naming it, instead of packing what it points to; links
//! inside the project are packed as what they name.

use std::os::unix::fs::symlink;

use crate::harness::*;

const PREDICTOR: &str = "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return payload\n";

#[test]
fn a_broken_link_the_upload_leaves_out_does_not_stop_a_deploy() {
    let s = Server::start();
    let p = s.python_project("editing", "RealtimeAPI", PREDICTOR, "");
    // What Emacs leaves while predictor.py is open, and other links that point nowhere.
    symlink("root@host.1234:1700", p.join(".#predictor.py")).unwrap();
    symlink("/nonexistent", p.join(".hidden")).unwrap();
    symlink("/nonexistent", p.join("scratch")).unwrap();
    write(&p, ".cortexignore", "scratch\n");
    s.ok(&p, &["deploy"]);
    s.wait_status("editing", "live");
}

#[test]
fn a_link_out_of_the_project_is_refused_naming_it() {
    let s = Server::start();
    let p = s.python_project("linked", "RealtimeAPI", PREDICTOR, "");
    symlink("/etc", p.join("linkdir")).unwrap();
    let out = s.run(&p, &["deploy"]);
    assert_refused(
        &out,
        "error: linkdir links to /etc, outside the project; cortex uploads only what is inside the project's directory: copy what it points to into the project, or add linkdir to .cortexignore",
    );
    assert!(s.api_json("linked").is_none(), "nothing was deployed");
    let outside = s.project("elsewhere");
    write(&outside, "weights.bin", "w");
    symlink(outside.join("weights.bin"), p.join("model.bin")).unwrap();
    write(&p, ".cortexignore", "linkdir\n");
    assert_refused(&s.run(&p, &["deploy"]), "model.bin links to ");
    // Once left out, the project deploys; links inside it are packed as what they name.
    write(&p, ".cortexignore", "linkdir\nmodel.bin\n");
    symlink("predictor.py", p.join("alias.py")).unwrap();
    s.ok(&p, &["deploy"]);
    s.wait_status("linked", "live");
    let projects = s.replica_tree().join("projects");
    let unpacked: Vec<_> = std::fs::read_dir(&projects)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|d| d.join("predictor.py").exists())
        .collect();
    assert_eq!(unpacked.len(), 1, "{unpacked:?}");
    let alias = std::fs::symlink_metadata(unpacked[0].join("alias.py")).unwrap();
    assert!(alias.is_file(), "{alias:?}");
    assert!(!unpacked[0].join("linkdir").exists());
    assert!(!unpacked[0].join("model.bin").exists());
}
