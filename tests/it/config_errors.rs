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

#[test]
fn every_problem_of_the_file_at_once() {
    insta::assert_snapshot!(deploy_error(
        "- name: iris\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    threads_per_proces: 2\n  compute:\n    cpu: lots\n- name: Second\n  kind: RealtimeAPI\n- name: third\n  kind: BatchAPI\n  predictor:\n    type: python\n    path: predictor.py\n  autoscaling:\n    min_replicas: 2\n"
    ));
}

#[test]
fn a_file_with_a_valid_api_and_a_refused_one_changes_nothing() {
    let s = Server::start();
    let p = s.project("mixed");
    write(&p, "predictor.py", "class PythonPredictor:\n    def __init__(self, config):\n        pass\n    def predict(self, payload):\n        return payload\n");
    write(
        &p,
        "cortex.yaml",
        "- name: good\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n- name: missing\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: nowhere.py\n- name: split\n  kind: TrafficSplitter\n  apis:\n    - name: good\n      weight: 50\n    - name: absent\n      weight: 50\n",
    );
    let out = s.run(&p, &["deploy"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    // Each refusal says why; the API that passed says it was not deployed because of them.
    assert!(
        text.contains("predictor.path: \"nowhere.py\" is not in the project"),
        "{text}"
    );
    assert!(
        text.contains("apis[1].name: absent is not deployed and not in this file"),
        "{text}"
    );
    assert!(
        text.contains("not deployed: missing, split of cortex.yaml could not be deployed"),
        "{text}"
    );
    assert_eq!(s.ok(&p, &["get"]), "no apis are deployed\n");
    // A script gets the error document every failed command prints, with or without --wait.
    for wait in [&[][..], &["--wait"]] {
        let out = s.run(&p, &[&["deploy", "-o", "json"][..], wait].concat());
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let doc: serde_json::Value = serde_json::from_str(&stdout(&out))
            .unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", stdout(&out)));
        assert_eq!(doc["error"]["kind"], "invalid_config", "{doc}");
        let message = doc["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("predictor.path: \"nowhere.py\" is not in the project"),
            "{message}"
        );
        assert!(message.contains("apis[1].name: absent"), "{message}");
    }
    assert_eq!(s.ok(&p, &["get"]), "no apis are deployed\n");
}

#[test]
fn a_duration_past_what_a_clock_can_count_is_refused_not_served() {
    // 2562047788015216h fits in the seconds counted, but not added to the server's clock:
    // it used to deploy, and every prediction then crashed its request's handler.
    let text = deploy_error(
        "- name: slow\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n  networking:\n    timeout: 2562047788015216h\n",
    );
    assert!(text.contains("exit: Some(1)"), "{text}");
    assert!(
        text.contains(
            "networking.timeout: \"2562047788015216h\" is too long; at most 876000h (100 years)"
        ),
        "{text}"
    );
}

#[test]
fn a_long_bad_name_gets_a_suggestion_that_can_be_copied_whole() {
    let name = format!("A{}", "b".repeat(41));
    let text = deploy_error(&format!(
        "- name: {name}\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n"
    ));
    assert!(
        text.contains(&format!("; try \"a{}\"", "b".repeat(41))),
        "{text}"
    );
}

#[test]
fn deploy_of_a_directory_deploys_its_cortex_yaml() {
    let s = Server::start();
    let p = s.project("dir");
    write(&p, "cortex.yaml", "- name: dir\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n");
    write(&p, "predictor.py", "class PythonPredictor:\n    def __init__(self, config):\n        pass\n    def predict(self, payload):\n        return payload\n");
    let out = s.run(s.dir.path(), &["deploy", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("creating dir (RealtimeAPI)"),
        "{}",
        stdout(&out)
    );
    // A directory without one says so.
    let empty = s.project("empty");
    let out = s.run(s.dir.path(), &["deploy", empty.to_str().unwrap()]);
    assert_refused(&out, "has no cortex.yaml");
}
