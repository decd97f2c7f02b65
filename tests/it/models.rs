//! A python predictor's models (cortex 0.22's `model_path` and `models`): `load_model` and
//! `python_client.get_model(name, version)`, numbered versions, "latest", a version added
//! while the API runs picked up (live reloading), models in the project, at `file:///` and
//! at `http://`, and the deploy-time refusals.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{json, Value};

use crate::harness::*;

/// cortex 0.22's examples/model-caching/python predictor, with `model.txt` standing for the
/// pickled model (so the test needs no package).
const PREDICTOR: &str = "\
class PythonPredictor:
    def __init__(self, config, python_client):
        self.client = python_client

    def load_model(self, model_path):
        with open(model_path + '/model.txt') as f:
            return f.read().strip()

    def predict(self, payload, query_params):
        model_name = query_params.get('model')
        model_version = query_params.get('version', 'latest')
        model = self.client.get_model(model_name, model_version)
        return {'prediction': model, 'model': {'name': model_name, 'version': model_version}}
";

/// Writes `text` at `rel` under `dir`, readable by the replicas' user.
fn put(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    let mut made = path.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&made).unwrap();
    while made.starts_with(dir) && made != dir {
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o755)).unwrap();
        made.pop();
    }
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

fn ask(s: &Server, api: &str, query: &str) -> (u16, Value) {
    let resp = http()
        .post(format!("{}/{api}?{query}", s.url))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

fn prediction(s: &Server, api: &str, query: &str) -> Value {
    let (status, body) = ask(s, api, query);
    assert_eq!(status, 200, "{body}");
    body["prediction"].clone()
}

#[test]
fn python_predictor_serves_named_versioned_models_and_picks_up_a_new_version() {
    let s = Server::start();
    let p = s.project("mpg");
    write(&p, "predictor.py", PREDICTOR);
    put(&p, "models/wine/model.txt", "wine");
    // Outside the project, where the replicas' user may read it and the test adds versions.
    let outside = shared_tempdir();
    std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    put(outside.path(), "iris/1/model.txt", "iris-1");
    write(
        &p,
        "cortex.yaml",
        &format!(
            "- name: mpg\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    \
             models:\n      paths:\n        - name: iris\n          model_path: file://{}/iris/\n        \
             - name: wine\n          model_path: models/wine\n    env:\n      CORTEX_MODEL_RELOAD_SECONDS: '0.3'\n",
            outside.path().display()
        ),
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("mpg", "live");

    assert_eq!(prediction(&s, "mpg", "model=iris"), json!("iris-1"));
    assert_eq!(prediction(&s, "mpg", "model=wine&version=1"), json!("wine"));
    let (status, body) = ask(&s, "mpg", "model=rose");
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["kind"], "model_not_found");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("there is no model named 'rose'; the models are: iris, wine"),
        "{body}"
    );
    let (status, body) = ask(&s, "mpg", "model=iris&version=newest");
    assert_eq!(status, 400, "{body}");

    put(outside.path(), "iris/2/model.txt", "iris-2");
    wait_for("version 2 of iris to be served", DEADLINE, || {
        (prediction(&s, "mpg", "model=iris") == json!("iris-2")).then_some(())
    });
    assert_eq!(
        prediction(&s, "mpg", "model=iris&version=1"),
        json!("iris-1")
    );
    let logs = s.ok(&p, &["logs", "mpg"]);
    assert!(logs.contains("model 'iris' has a new version 2"), "{logs}");
}

#[test]
fn python_predictor_with_one_model_path_from_http_and_a_models_dir() {
    let s = Server::start();
    let p = s.project("one");
    write(&p, "predictor.py", PREDICTOR);
    put(&p, "all/a/model.txt", "A");
    put(&p, "all/b/3/model.txt", "B3");
    let (port, _requests) = crate::onnx::serve_file(b"from http\n".to_vec());
    write(
        &p,
        "cortex.yaml",
        &format!(
            "- name: one\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    \
             model_path: http://127.0.0.1:{port}/exported/model.txt\n\
             - name: many\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    \
             models:\n      dir: all/\n      cache_size: 1\n      disk_cache_size: 1\n"
        ),
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("one", "live");
    s.wait_status("many", "live");
    assert_eq!(prediction(&s, "one", ""), json!("from http"));
    assert_eq!(
        prediction(&s, "one", "model=ignored&version=1"),
        json!("from http")
    );
    assert_eq!(prediction(&s, "many", "model=a"), json!("A"));
    assert_eq!(prediction(&s, "many", "model=b"), json!("B3"));
    assert_eq!(prediction(&s, "many", "model=b&version=3"), json!("B3"));
    let (status, body) = ask(&s, "many", "");
    assert_eq!(status, 404, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("model_name was not given; the models are: a, b"),
        "{body}"
    );
    // A cache of one: b pushed a out of memory, so asking for a loads it again.
    assert_eq!(prediction(&s, "many", "model=a"), json!("A"));
    let logs = s.ok(&p, &["logs", "many"]);
    assert_eq!(
        logs.matches("loading model 'a' version 1").count(),
        2,
        "{logs}"
    );
}

#[test]
fn model_locations_are_checked_at_deploy_and_a_predictor_without_load_model_is_told() {
    let s = Server::start();
    let p = s.project("refused");
    write(&p, "predictor.py", PREDICTOR);
    let yaml = |models: &str| {
        format!(
            "- name: refused\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n{models}"
        )
    };
    write(&p, "cortex.yaml", &yaml("    model_path: missing/\n"));
    assert_refused(
        &s.run(&p, &["deploy"]),
        "predictor.model_path: \"missing/\" is not in the project",
    );
    write(
        &p,
        "cortex.yaml",
        &yaml("    models:\n      paths:\n        - name: a\n          model_path: s3://Bad_Bucket/a/\n"),
    );
    let out = s.run(&p, &["deploy"]);
    assert_refused(&out, "cortex.yaml:9");
    assert_refused(&out, "\"Bad_Bucket\" is not a valid bucket name");
    write(
        &p,
        "cortex.yaml",
        &yaml("    models:\n      dir: all/\n      cache_size: 2\n"),
    );
    assert_refused(
        &s.run(&p, &["deploy"]),
        "predictor.models.cache_size: needs models.disk_cache_size too",
    );

    // A predictor written for cortex 0.21 (no load_model) with a model_path: said plainly.
    write(
        &p,
        "predictor.py",
        "class PythonPredictor:\n    def __init__(self, config, python_client):\n        pass\n\n    def predict(self, payload):\n        return 1\n",
    );
    put(&p, "m/model.txt", "x");
    write(&p, "cortex.yaml", &yaml("    model_path: m\n"));
    s.ok(&p, &["deploy"]);
    let v = s.wait_status("refused", "error");
    let text = v.to_string();
    assert!(
        text.contains("must define load_model(self, model_path)"),
        "{text}"
    );
}

#[test]
fn python_predictor_loads_versions_from_s3_and_picks_up_a_new_one() {
    let store = crate::s3_store::MotoServer::start();
    store.create_bucket("cortex-examples");
    store.put("cortex-examples", "sklearn/mpg/1/model.txt", b"mpg-1");
    store.put(
        "cortex-examples",
        "sklearn/mpg/1/data.txt",
        b"extra file of the version",
    );
    let s = Server::start();
    let p = s.project("s3-mpg");
    write(&p, "predictor.py", PREDICTOR);
    // The API's own credentials and endpoint, as a user of cortex 0.2x's local environment
    // gave them.
    let dotenv: String = store
        .env()
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    write(&p, ".env", &dotenv);
    write(
        &p,
        "cortex.yaml",
        "- name: s3-mpg\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    \
         model_path: s3://cortex-examples/sklearn/mpg/\n    env:\n      CORTEX_MODEL_RELOAD_SECONDS: '0.3'\n",
    );
    s.ok(&p, &["deploy"]);
    wait_for("s3-mpg to be live", crate::onnx::INSTALL_DEADLINE, || {
        let v = s.api_json("s3-mpg")?;
        assert_ne!(v["status"], "error", "(is PyPI reachable for boto3?) {v:#}");
        (v["status"] == "live").then_some(())
    });
    assert_eq!(prediction(&s, "s3-mpg", ""), json!("mpg-1"));
    store.put("cortex-examples", "sklearn/mpg/2/model.txt", b"mpg-2");
    wait_for("version 2 from s3 to be served", DEADLINE, || {
        (prediction(&s, "s3-mpg", "") == json!("mpg-2")).then_some(())
    });
    assert_eq!(prediction(&s, "s3-mpg", "version=1"), json!("mpg-1"));
    let logs = s.ok(&p, &["logs", "s3-mpg"]);
    assert!(logs.contains("installing boto3"), "{logs}");
}

#[test]
fn a_cortex_0_21_models_list_serves_its_models_as_models_paths() {
    let s = Server::start();
    let p = s.project("listed");
    write(&p, "predictor.py", PREDICTOR);
    put(&p, "models/iris/model.txt", "iris");
    put(&p, "models/wine/2/model.txt", "wine-2");
    let yaml = |wine: &str| {
        format!(
            "- name: listed\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    \
             models:\n      - name: iris\n        model_path: models/iris\n      \
             - name: wine\n        model_path: {wine}\n"
        )
    };
    // A missing path is named as it is written: the list's entry, at its line.
    write(&p, "cortex.yaml", &yaml("models/rose"));
    let out = s.run(&p, &["deploy"]);
    assert_refused(
        &out,
        "cortex.yaml:10:21: predictor.models[1].model_path: \"models/rose\" is not in the project",
    );
    write(&p, "cortex.yaml", &yaml("models/wine"));
    s.ok(&p, &["deploy"]);
    s.wait_status("listed", "live");
    assert_eq!(prediction(&s, "listed", "model=iris"), json!("iris"));
    assert_eq!(prediction(&s, "listed", "model=wine"), json!("wine-2"));
    let (status, body) = ask(&s, "listed", "model=rose");
    assert_eq!(status, 404, "{body}");
}
