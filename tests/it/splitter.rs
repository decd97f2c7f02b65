//! TrafficSplitters: requests split by weight between RealtimeAPIs, their own table in
//! `cortex get`, bad weights refused naming the line, and APIs they use kept from deletion
//! until `-f`.

use std::path::PathBuf;

use crate::harness::{assert_refused, http, write, Server};

/// A project with two python RealtimeAPIs that answer their own name, and `splitter_yaml`.
fn project(s: &Server, splitter_yaml: &str) -> PathBuf {
    let p = s.project("split");
    write(
        &p,
        "predictor.py",
        "import os\n\nclass PythonPredictor:\n    def __init__(self, config):\n        self.name = config['name']\n\n    def predict(self, payload):\n        return self.name\n",
    );
    let api = |name: &str| {
        format!("- name: {name}\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    config: {{name: {name}}}\n")
    };
    write(
        &p,
        "cortex.yaml",
        &format!("{}{}{splitter_yaml}", api("blue"), api("green")),
    );
    p
}

const SPLIT_80_20: &str = "- name: canary\n  kind: TrafficSplitter\n  apis:\n    - name: blue\n      weight: 80\n    - name: green\n      weight: 20\n  networking:\n    endpoint: /shop\n";

#[test]
fn a_splitter_at_80_20_sends_each_api_its_share_and_has_its_own_table() {
    let s = Server::start();
    // The splitter first in the file: it is deployed after the apis it uses all the same.
    let p = project(&s, "");
    let apis = std::fs::read_to_string(p.join("cortex.yaml")).unwrap();
    write(&p, "cortex.yaml", &format!("{SPLIT_80_20}{apis}"));
    let out = s.ok(&p, &["deploy"]);
    assert!(out.contains("creating canary (TrafficSplitter)"), "{out}");
    assert!(out.contains(&format!("endpoint: {}/shop", s.url)), "{out}");
    s.wait_status("blue", "live");
    s.wait_status("green", "live");
    s.wait_status("canary", "live");

    let client = http();
    let (mut blue, mut green) = (0, 0);
    for _ in 0..2000 {
        let resp = client
            .post(format!("{}/shop", s.url))
            .body("{}")
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
        match resp.text().unwrap().as_str() {
            "blue" => blue += 1,
            "green" => green += 1,
            other => panic!("unexpected answer {other}"),
        }
    }
    assert!((1500..=1700).contains(&blue), "blue {blue}, green {green}");
    assert_eq!(blue + green, 2000);

    let list = s.ok(&p, &["get"]);
    let table = list
        .split("\n\n")
        .find(|t| t.starts_with("traffic splitter"))
        .expect(&list);
    let mut lines = table.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("traffic splitter   apis               last update"),
        "{list}"
    );
    let row = crate::harness::cells(lines.next().unwrap());
    assert_eq!(&row[..2], &["canary", "blue:80 green:20"], "{list}");
    assert!(
        !list.split("\n\n").next().unwrap().contains("canary"),
        "not in the realtime table: {list}"
    );

    let logs = s.run(&p, &["logs", "canary"]);
    assert_refused(
        &logs,
        "canary is a TrafficSplitter: it runs nothing, so it has no logs",
    );

    let one = s.ok(&p, &["get", "canary"]);
    let mut lines = one.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("apis    weights   status   requested   last update   avg request   2XX"),
        "{one}"
    );
    let blue_row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&blue_row[..4], &["blue", "80", "live", "1"], "{one}");
    assert!(one.contains(&format!("endpoint: {}/shop", s.url)), "{one}");
}

#[test]
fn bad_weights_and_unknown_apis_are_refused_naming_what_to_change() {
    let s = Server::start();
    let p = project(
        &s,
        "- name: canary\n  kind: TrafficSplitter\n  apis:\n    - name: blue\n      weight: 70\n    - name: green\n      weight: 20\n",
    );
    let out = s.run(&p, &["deploy"]);
    assert_refused(&out, "cortex.yaml:16:5");
    assert_refused(
        &out,
        "apis: the weights must add up to 100, got 70 + 20 (90)",
    );

    let p = project(
        &s,
        "- name: canary\n  kind: TrafficSplitter\n  apis:\n    - name: blue\n      weight: 50\n    - name: nowhere\n      weight: 50\n",
    );
    let out = s.run(&p, &["deploy"]);
    assert_refused(
        &out,
        "cortex.yaml:18:13: apis[1].name: nowhere is not deployed and not in this file",
    );
    // A file deploys all or nothing: blue and green passed their checks, but nothing changed.
    assert_refused(
        &out,
        "not deployed: canary of cortex.yaml could not be deployed, and a file deploys all or nothing",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(s.ok(&p, &["get"]), "no apis are deployed\n");
    // Fixed, the whole file deploys.
    let fixed = std::fs::read_to_string(p.join("cortex.yaml"))
        .unwrap()
        .replace("name: nowhere", "name: green");
    write(&p, "cortex.yaml", &fixed);
    s.ok(&p, &["deploy"]);
    s.wait_status("blue", "live");
    s.wait_status("canary", "live");
}

#[test]
fn an_api_a_splitter_uses_is_kept_from_deletion_until_forced() {
    let s = Server::start();
    let p = project(&s, SPLIT_80_20);
    s.ok(&p, &["deploy"]);
    // Both: blue answers its share once green is gone.
    s.wait_status("green", "live");
    s.wait_status("blue", "live");
    let refused = s.run(&p, &["delete", "green", "-y"]);
    assert_refused(
        &refused,
        "green is used by traffic splitter canary; delete it first, or delete green with -f",
    );
    assert!(s.api_json("green").is_some());

    s.ok(&p, &["delete", "green", "-f"]);
    // Green's share now gets a clear 503; blue's is answered.
    let client = http();
    let statuses: Vec<u16> = (0..10)
        .map(|_| {
            client
                .post(format!("{}/shop", s.url))
                .body("{}")
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    assert_eq!(
        statuses.iter().filter(|c| **c == 503).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|c| **c == 200).count(),
        8,
        "{statuses:?}"
    );
    let resp = (0..10)
        .map(|_| {
            client
                .post(format!("{}/shop", s.url))
                .body("{}")
                .send()
                .unwrap()
        })
        .find(|r| r.status() == 503)
        .unwrap();
    let body: serde_json::Value = resp.json().unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("green, one of traffic splitter canary's apis, is not deployed"),
        "{body}"
    );
}
