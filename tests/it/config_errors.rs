//! Bad `cortex.yaml` files: the CLI's error names the file, line, column and field, and
//! nothing is deployed.

use crate::harness::*;

fn deploy_error(config: &str) -> String {
    let s = Server::start();
    let p = s.project("bad");
    write(&p, "cortex.yaml", config);
    write(&p, "predictor.py", "class PythonPredictor:\n    pass\n");
    let out = s.run(&p, &["deploy"]);
    assert_eq!(s.ok(&p, &["get"]), "no apis are deployed\n");
    format!(
        "exit: {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(&out),
        stderr(&out)
    )
}

#[test]
fn unknown_key() {
    insta::assert_snapshot!(deploy_error(
        "- name: iris\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    pth: predictor.py\n"
    ));
}

#[test]
fn wrong_type() {
    insta::assert_snapshot!(deploy_error(
        "- name: iris\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    processes_per_replica: one\n"
    ));
}

#[test]
fn bad_name() {
    insta::assert_snapshot!(deploy_error(
        "- name: Iris_Classifier\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n"
    ));
}

#[test]
fn duplicate_name() {
    insta::assert_snapshot!(deploy_error(
        "- name: iris\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n- name: iris\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n"
    ));
}

#[test]
fn missing_predictor_file() {
    insta::assert_snapshot!(deploy_error(
        "- name: iris\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: model/predictor.py\n"
    ));
}
