//! `networking.local_port` and `api_gateway`, as cortex 0.2x files write them: the local
//! server also answers an API at `http://localhost:<local_port>/` (the upstream local
//! tutorial's `curl http://localhost:8890 -X POST ...`), and what cannot hold is refused.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::harness::*;

const PREDICTOR: &str = "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload, query_params):\n        return {'echo': payload, 'q': dict(query_params)}\n";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn networking(port: u16) -> String {
    format!("  networking:\n    local_port: {port}\n    api_gateway: public\n")
}

fn wait_closed(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "port {port} is still open");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn post_local(port: u16, path: &str) -> reqwest::blocking::Response {
    http()
        .post(format!("http://localhost:{port}{path}"))
        .header("content-type", "application/json")
        .body(r#"{"x": 1}"#)
        .send()
        .unwrap()
}

#[test]
fn an_api_answers_at_its_local_port_until_it_no_longer_asks_for_it() {
    let mut s = Server::start();
    let port = free_port();
    let p = s.python_project("iris", "RealtimeAPI", PREDICTOR, &networking(port));
    s.ok(&p, &["deploy"]);
    s.wait_status("iris", "live");
    // As the upstream tutorial's curl: no token, POST to the port's root.
    let r = post_local(port, "/");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["echo"]["x"], 1);
    let v: serde_json::Value = post_local(port, "/?k=v").json().unwrap();
    assert_eq!(v["q"]["k"], "v", "the query reaches the predictor");
    // The server's own routes are not reachable there: everything is under the endpoint.
    let r = http()
        .get(format!("http://localhost:{port}/api/v2/apis"))
        .send()
        .unwrap();
    assert_ne!(r.status(), 200);

    // A restarted server opens it again.
    s.restart();
    s.wait_status("iris", "live");
    assert_eq!(post_local(port, "/").status(), 200);

    // A second api may not take the same port; nothing of its file is deployed.
    let q = s.python_project("other", "RealtimeAPI", PREDICTOR, &networking(port));
    let out = s.run(&q, &["deploy"]);
    assert_eq!(out.status.code(), Some(1));
    assert_refused(
        &out,
        &format!("networking.local_port: port {port} is already the local port of api iris"),
    );
    assert_refused(&out, "cortex.yaml:7:17");

    // Deployed without local_port, the port closes; the endpoint keeps answering.
    write(
        &p,
        "cortex.yaml",
        "- name: iris\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    config: {v: 2}\n",
    );
    s.ok(&p, &["deploy"]);
    wait_closed(port);
    s.wait_status("iris", "live");
    assert_eq!(s.predict("iris", "{}").status(), 200);

    // Back with a port, then deleted: the port closes with the api.
    let p2 = s.python_project("iris", "RealtimeAPI", PREDICTOR, &networking(port));
    s.ok(&p2, &["deploy"]);
    s.wait_status("iris", "live");
    assert_eq!(post_local(port, "/").status(), 200);
    s.ok(&p2, &["delete", "iris"]);
    wait_closed(port);
}

#[test]
fn ports_that_cannot_be_had_and_api_gateway_none_are_refused_with_the_way_out() {
    let s = Server::start();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let p = s.python_project("taken", "RealtimeAPI", PREDICTOR, &networking(port));
    let out = s.run(&p, &["deploy"]);
    assert_eq!(out.status.code(), Some(1));
    assert_refused(
        &out,
        &format!("networking.local_port: cannot listen on 127.0.0.1:{port}"),
    );
    assert_refused(&out, "choose a free port");

    let own = s.url.rsplit(':').next().unwrap().to_string();
    write(
        &p,
        "cortex.yaml",
        &format!("- name: taken\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n  networking:\n    local_port: {own}\n"),
    );
    assert_refused(&s.run(&p, &["deploy"]), "is the server's own port");

    write(
        &p,
        "cortex.yaml",
        "- name: taken\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n  networking:\n    api_gateway: none\n",
    );
    let out = s.run(&p, &["deploy"]);
    assert_refused(&out, "cortex.yaml:7:18");
    assert_refused(&out, "\"none\" is not supported");
    assert_eq!(s.ok(&p, &["get"]), "no apis are deployed\n");
}

#[test]
fn a_server_that_does_not_listen_on_loopback_only_opens_no_ports_for_apis() {
    let s = Server::start_on("0.0.0.0:0");
    let p = s.python_project("wide", "RealtimeAPI", PREDICTOR, &networking(free_port()));
    let out = s.run(&p, &["deploy"]);
    assert_eq!(out.status.code(), Some(1));
    assert_refused(&out, "does not listen on loopback only");
}
