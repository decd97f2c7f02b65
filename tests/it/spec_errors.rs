//! The text of `cortex.yaml` errors as users see them (`file:line:column: message`).
//!
//! Each snapshot's description is the YAML that produced it.

use cortex::spec::parse_str;

/// Parses `yaml` (which must fail) and snapshots the error text under `name`.
fn check(name: &str, yaml: &str) {
    let err = match parse_str(yaml, "cortex.yaml") {
        Ok(specs) => panic!("{name}: expected an error, got {specs:?}"),
        Err(err) => err,
    };
    insta::with_settings!({ description => yaml, omit_expression => true }, {
        insta::assert_snapshot!(name, err.to_string());
    });
}

#[test]
fn unknown_key_suggests_the_nearest() {
    check(
        "unknown_key",
        "\
- name: iris
  kind: RealtimeAPI
  predictor:
    typ: python
    path: predictor.py
",
    );
}

#[test]
fn unknown_key_in_the_wrong_section() {
    check(
        "misplaced_key",
        "\
- name: iris
  kind: RealtimeAPI
  predictor:
    type: python
    path: predictor.py
  min_replicas: 2
",
    );
}

#[test]
fn wrong_type() {
    check(
        "wrong_type",
        "\
- name: iris
  kind: RealtimeAPI
  predictor:
    type: python
    path: predictor.py
    processes_per_replica: one
",
    );
}

#[test]
fn bad_name() {
    check(
        "bad_name",
        "\
- name: Iris_Classifier
  kind: RealtimeAPI
  predictor:
    type: python
    path: predictor.py
",
    );
}

#[test]
fn duplicate_name() {
    check(
        "duplicate_name",
        "\
- name: iris
  kind: RealtimeAPI
  predictor:
    type: python
    path: predictor.py

- name: iris
  kind: BatchAPI
  predictor:
    type: python
    path: batch.py
",
    );
}

#[test]
fn not_a_list() {
    check(
        "not_a_list",
        "\
name: iris
kind: RealtimeAPI
predictor:
  type: python
  path: predictor.py
",
    );
}

#[test]
fn missing_kind() {
    check(
        "missing_kind",
        "\
- name: iris
  predictor:
    type: python
    path: predictor.py
",
    );
}

#[test]
fn bad_quantity() {
    check(
        "bad_quantity",
        "\
- name: iris
  kind: RealtimeAPI
  predictor:
    type: python
    path: predictor.py
  compute:
    cpu: 1
    mem: 2GB
",
    );
}

#[test]
fn bad_kind() {
    check(
        "bad_kind",
        "\
- name: iris
  kind: TraficSplitter
  apis:
    - name: iris-a
      weight: 100
",
    );
}

#[test]
fn splitter_weights() {
    check(
        "splitter_weights",
        "\
- name: canary
  kind: TrafficSplitter
  apis:
    - name: blue
      weight: 80
    - name: green
      weight: 30
",
    );
}

#[test]
fn yaml_syntax_error() {
    check(
        "yaml_syntax",
        "\
- name: iris
  kind: RealtimeAPI
  predictor:
    type: python
   path: predictor.py
",
    );
}

#[test]
fn autoscaling_on_a_batch_api() {
    check(
        "batch_autoscaling",
        "\
- name: images
  kind: BatchAPI
  predictor:
    type: python
    path: batch.py
  autoscaling:
    max_replicas: 4
",
    );
}
