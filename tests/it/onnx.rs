//! `type: onnx`: an unchanged cortex 0.2x ONNXPredictor project (no requirements.txt) runs its
//! model with onnxruntime, which the server installs into the API's virtualenv (from PyPI: with
//! no network this fails, loudly). The model, y = x * 2 + 1 over a float tensor [None, 4], is
//! written here as ONNX protobuf bytes, so the test needs no package of its own.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

/// pip installs onnxruntime and numpy first: longer than a python API's start.
pub(crate) const INSTALL_DEADLINE: Duration = Duration::from_secs(600);

// Protobuf, just what an ONNX model needs.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn int_field(out: &mut Vec<u8>, field: u64, v: u64) {
    varint(out, field << 3);
    varint(out, v);
}

fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn message(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    f(&mut out);
    out
}

/// A float tensor value `name` of shape [None, 4] (the first dimension unknown, as skl2onnx
/// writes a batch).
fn value_info(name: &str) -> Vec<u8> {
    let unknown = message(|_| {});
    let four = message(|m| int_field(m, 1, 4)); // Dimension.dim_value
    let shape = message(|m| {
        bytes_field(m, 1, &unknown); // TensorShapeProto.dim
        bytes_field(m, 1, &four);
    });
    let tensor = message(|m| {
        int_field(m, 1, 1); // elem_type FLOAT
        bytes_field(m, 2, &shape);
    });
    let type_proto = message(|m| bytes_field(m, 1, &tensor)); // TypeProto.tensor_type
    message(|m| {
        bytes_field(m, 1, name.as_bytes());
        bytes_field(m, 2, &type_proto);
    })
}

/// A float scalar initializer.
fn scalar(name: &str, v: f32) -> Vec<u8> {
    message(|m| {
        int_field(m, 2, 1); // data_type FLOAT
        bytes_field(m, 4, &v.to_le_bytes()); // float_data, packed
        bytes_field(m, 8, name.as_bytes());
    })
}

fn node(op: &str, inputs: &[&str], output: &str) -> Vec<u8> {
    message(|m| {
        for i in inputs {
            bytes_field(m, 1, i.as_bytes());
        }
        bytes_field(m, 2, output.as_bytes());
        bytes_field(m, 3, format!("{op}-{output}").as_bytes());
        bytes_field(m, 4, op.as_bytes());
    })
}

/// The model: input `input` [None, 4] float, output `output` = input * 2 + 1.
fn model() -> Vec<u8> {
    affine(2.0, 1.0)
}

/// A model whose output is input * `mul` + `add`.
fn affine(mul: f32, add: f32) -> Vec<u8> {
    let graph = message(|m| {
        bytes_field(m, 1, &node("Mul", &["input", "two"], "doubled"));
        bytes_field(m, 1, &node("Add", &["doubled", "one"], "output"));
        bytes_field(m, 2, b"affine");
        bytes_field(m, 5, &scalar("two", mul));
        bytes_field(m, 5, &scalar("one", add));
        bytes_field(m, 11, &value_info("input"));
        bytes_field(m, 12, &value_info("output"));
    });
    let opset = message(|m| {
        bytes_field(m, 1, b"");
        int_field(m, 2, 13);
    });
    message(|m| {
        int_field(m, 1, 7); // ir_version
        bytes_field(m, 2, b"cortex-tests");
        bytes_field(m, 7, &graph);
        bytes_field(m, 8, &opset);
    })
}

/// As cortex 0.22's examples/onnx/iris-classifier wrote it: a flat list of four numbers.
const PREDICTOR: &str = "\
class ONNXPredictor:
    def __init__(self, onnx_client, config):
        self.client = onnx_client
        self.offset = config.get(\"offset\", 0)

    def predict(self, payload, headers):
        model_input = [
            payload[\"a\"],
            payload[\"b\"],
            payload[\"c\"],
            payload[\"d\"],
        ]
        prediction = self.client.predict(model_input)
        return {\"y\": [v + self.offset for v in prediction[0][0].tolist()], \"shape\": list(prediction[0].shape)}
";

/// Serves `body` at any path on a loopback port; counts the requests.
pub(crate) fn serve_file(body: Vec<u8>) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line == "\r\n" {
                    break;
                }
                line.clear();
            }
            counted.fetch_add(1, Ordering::SeqCst);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (port, count)
}

/// Waits for `api` to be live; an `error` (pip could not install, the model did not load) fails
/// at once with what the server says.
fn wait_live(s: &Server, api: &str) {
    wait_for(&format!("{api} to be live"), INSTALL_DEADLINE, || {
        let v = s.api_json(api)?;
        if v["status"] == "error" {
            panic!("{api} failed (is PyPI reachable for onnxruntime and numpy?): {v:#}");
        }
        (v["status"] == "live").then_some(())
    });
}

fn api(name: &str, model_path: &str, extra: &str) -> String {
    format!(
        "- name: {name}\n  kind: RealtimeAPI\n  predictor:\n    type: onnx\n    path: predictor.py\n    model_path: {model_path}\n    config: {{offset: 0.5}}\n{extra}"
    )
}

#[test]
fn onnx_predictor_runs_a_project_model_a_file_url_and_one_fetched_by_http() {
    let s = Server::start();
    let p = s.project("onnx-iris");
    let bytes = model();
    std::fs::write(p.join("model.onnx"), &bytes).unwrap();
    write(&p, "predictor.py", PREDICTOR);
    // Outside the project, where the replicas' user may read it.
    let outside = shared_tempdir();
    let file = outside.path().join("model.onnx");
    std::fs::write(&file, &bytes).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (port, requests) = serve_file(bytes);
    let url = format!("http://127.0.0.1:{port}/exported/model.onnx");
    write(
        &p,
        "cortex.yaml",
        &format!(
            "{}{}{}",
            api("iris-local", "model.onnx", ""),
            api("iris-url", &url, "    processes_per_replica: 2\n"),
            api("iris-file", &format!("file://{}", file.display()), ""),
        ),
    );
    assert!(!p.join("requirements.txt").exists());
    s.ok(&p, &["deploy"]);

    let input = json!({"a": 1.0, "b": 2.0, "c": 3.5, "d": -1.0});
    for name in ["iris-local", "iris-url", "iris-file"] {
        wait_live(&s, name);
        let r = s.predict(name, &input.to_string());
        assert_eq!(r.status(), 200, "{name}");
        let v: Value = r.json().unwrap();
        // x * 2 + 1, then the predictor's offset; a flat list became a batch of one.
        assert_eq!(v["y"], json!([3.5, 5.5, 8.5, -0.5]), "{name}: {v}");
        assert_eq!(v["shape"], json!([1, 4]), "{name}: {v}");

        // GET answers the model's input signature, as cortex did.
        let got: Value = http()
            .get(format!("{}/{name}", s.url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(
            got,
            json!({
                "message": "make a prediction by sending a post request to this endpoint with a json payload",
                "model_signatures": {"_cortex_default": {"input": {"shape": [null, 4], "type": "float32"}}}
            }),
            "{name}"
        );
    }
    // Downloaded once for the version, though two processes loaded it.
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    let logs = s.ok(&p, &["logs", "iris-url"]);
    assert!(logs.contains("installing onnxruntime, numpy"), "{logs}");
    assert!(
        logs.contains("downloading the model from http://127.0.0.1"),
        "{logs}"
    );
}

#[test]
fn onnx_model_path_problems_are_refused_at_deploy() {
    let s = Server::start();
    let p = s.project("onnx-refused");
    write(&p, "predictor.py", PREDICTOR);
    write(
        &p,
        "cortex.yaml",
        &api("iris", "s3://Cortex_Examples/onnx/iris-classifier/", ""),
    );
    let out = s.run(&p, &["deploy"]);
    assert_refused(&out, "cortex.yaml:6");
    assert_refused(&out, "is not a valid bucket name");

    write(&p, "cortex.yaml", &api("iris", "missing.onnx", ""));
    let out = s.run(&p, &["deploy"]);
    assert_refused(
        &out,
        "predictor.model_path: \"missing.onnx\" is not in the project",
    );

    write(
        &p,
        "cortex.yaml",
        "- name: iris\n  kind: RealtimeAPI\n  predictor:\n    type: onnx\n    path: predictor.py\n",
    );
    let out = s.run(&p, &["deploy"]);
    assert_refused(&out, "predictor.model_path: is required");
}

/// A BatchAPI's workers get an `onnx_client` too (and `job_spec`, and `batch_id` in predict).
const BATCH_PREDICTOR: &str = "\
import json, os

class ONNXPredictor:
    def __init__(self, onnx_client, config, job_spec):
        self.client = onnx_client
        self.out = config[\"results\"]
        self.job_id = job_spec[\"job_id\"]

    def predict(self, payload, batch_id):
        outputs = self.client.predict({\"input\": payload})
        with open(os.path.join(self.out, batch_id), \"w\") as f:
            json.dump({\"y\": outputs[0].tolist(), \"job\": self.job_id}, f)
";

#[test]
fn onnx_batch_api_workers_run_the_model() {
    let s = Server::start();
    let p = s.project("onnx-batch");
    std::fs::write(p.join("model.onnx"), model()).unwrap();
    write(&p, "predictor.py", BATCH_PREDICTOR);
    write(
        &p,
        "cortex.yaml",
        "- name: iris-batch\n  kind: BatchAPI\n  predictor:\n    type: onnx\n    path: predictor.py\n    model_path: model.onnx\n",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("iris-batch", "live");
    let results = p.join("results");
    std::fs::create_dir_all(&results).unwrap();
    // One batch: one item of four numbers.
    let resp = http()
        .post(format!("{}/iris-batch", s.url))
        .json(&json!({
            "workers": 1,
            "item_list": {"items": [[0.0, 1.0, 2.0, 3.0]], "batch_size": 1},
            "config": {"results": results}
        }))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.json::<Value>().unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ended = wait_for("the onnx job to end", INSTALL_DEADLINE, || {
        let j: Value = http()
            .get(format!("{}/iris-batch/{id}", s.url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let j = j["job_status"].clone();
        j.get("end_time").is_some().then_some(j)
    });
    assert_eq!(ended["status"], "status_succeeded", "{ended:#}");
    let written: Vec<Value> = std::fs::read_dir(&results)
        .unwrap()
        .map(|e| {
            serde_json::from_str(&std::fs::read_to_string(e.unwrap().path()).unwrap()).unwrap()
        })
        .collect();
    assert_eq!(
        written,
        [json!({"y": [[1.0, 3.0, 5.0, 7.0]], "job": id})],
        "{written:?}"
    );
}

/// As cortex 0.22's examples/onnx/multi-model-classifier called its client.
const MULTI_PREDICTOR: &str = "\
class ONNXPredictor:
    def __init__(self, onnx_client, config):
        self.client = onnx_client

    def predict(self, payload, query_params):
        model_name = query_params['model']
        model_version = query_params.get('version', 'latest')
        results = self.client.predict(payload, model_name, model_version)[0]
        return {'y': results[0].tolist(), 'model': {'name': model_name, 'version': model_version}}
";

#[test]
fn onnx_predictor_serves_several_models_and_their_versions() {
    let s = Server::start();
    let p = s.project("onnx-multi");
    write(&p, "predictor.py", MULTI_PREDICTOR);
    std::fs::create_dir_all(p.join("models/affine/1")).unwrap();
    std::fs::create_dir_all(p.join("models/affine/2")).unwrap();
    std::fs::write(p.join("models/affine/1/model.onnx"), affine(2.0, 1.0)).unwrap();
    std::fs::write(p.join("models/affine/2/m.onnx"), affine(3.0, 0.0)).unwrap();
    std::fs::write(p.join("models/plain.onnx"), affine(1.0, 0.0)).unwrap();
    write(
        &p,
        "cortex.yaml",
        "- name: multi\n  kind: RealtimeAPI\n  predictor:\n    type: onnx\n    path: predictor.py\n    \
         models:\n      paths:\n        - name: affine\n          model_path: models/affine/\n        \
         - name: plain\n          model_path: models/plain.onnx\n",
    );
    s.ok(&p, &["deploy"]);
    wait_live(&s, "multi");
    let ask = |query: &str| -> (u16, Value) {
        let resp = http()
            .post(format!("{}/multi?{query}", s.url))
            .json(&json!([1, 2, 3, 4]))
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
    };
    assert_eq!(ask("model=affine").1["y"], json!([3.0, 6.0, 9.0, 12.0]));
    assert_eq!(
        ask("model=affine&version=1").1["y"],
        json!([3.0, 5.0, 7.0, 9.0])
    );
    assert_eq!(ask("model=plain").1["y"], json!([1.0, 2.0, 3.0, 4.0]));
    let (status, body) = ask("model=affine&version=7");
    assert_eq!(status, 404, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("model 'affine' has no version 7; it has 1, 2"),
        "{body}"
    );
    // GET shows each model's input signature.
    let get: Value = http()
        .get(format!("{}/multi", s.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    for name in ["affine", "plain"] {
        assert_eq!(
            get["model_signatures"][name]["input"],
            json!({"shape": [null, 4], "type": "float32"}),
            "{get:#}"
        );
    }
}
