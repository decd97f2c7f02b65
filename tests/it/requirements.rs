//! `requirements.txt`: installed into a virtualenv cached by its hash (offline: a local wheel).

use std::path::Path;

use crate::harness::*;

/// Builds a pure-python wheel `hello_cortex-0.1-py3-none-any.whl` in `dir` (no network).
fn build_wheel(dir: &Path) {
    let script = r#"
import base64, hashlib, sys, zipfile
files = {
    "hello_cortex/__init__.py": b"GREETING = 'hello from a wheel'\n",
    "hello_cortex-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: hello-cortex\nVersion: 0.1\n",
    "hello_cortex-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: cortex-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for name, data in files.items():
        z.writestr(name, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (name, digest, len(data)))
    record.append("hello_cortex-0.1.dist-info/RECORD,,")
    z.writestr("hello_cortex-0.1.dist-info/RECORD", "\n".join(record) + "\n")
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir.join("hello_cortex-0.1-py3-none-any.whl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const PREDICTOR: &str = "import sys\nimport hello_cortex\n\nclass PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return {'greeting': hello_cortex.GREETING, 'prefix': sys.prefix}\n";

fn config(name: &str) -> String {
    format!("- name: {name}\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n")
}

#[test]
fn requirements_are_installed_into_a_cached_virtualenv() {
    let s = Server::start();
    let p = s.project("withdeps");
    build_wheel(&p);
    write(
        &p,
        "requirements.txt",
        "# offline: a local wheel\n./hello_cortex-0.1-py3-none-any.whl\n",
    );
    write(&p, "predictor.py", PREDICTOR);
    write(
        &p,
        "cortex.yaml",
        &format!("{}{}", config("first"), config("second")),
    );
    s.ok(&p, &["deploy"]);
    let venvs = s.replica_tree().join("venvs");
    let prefix_of = |api: &str| {
        s.wait_status(api, "live");
        let v: serde_json::Value = s.predict(api, "{}").json().unwrap();
        assert_eq!(v["greeting"], "hello from a wheel");
        let prefix = v["prefix"].as_str().unwrap().to_string();
        assert!(Path::new(&prefix).starts_with(&venvs), "{prefix}");
        prefix
    };
    let (first, second) = (prefix_of("first"), prefix_of("second"));
    // Each api builds its own: one tenant never runs what another's install left.
    assert_ne!(first, second, "two apis share a virtualenv");
    for api in ["first", "second"] {
        let logs = s.ok(&p, &["logs", api]);
        assert_eq!(logs.matches("making a new virtualenv").count(), 1, "{logs}");
    }
    // A new version of an api with the same requirements reuses its virtualenv.
    write(&p, "predictor.py", &format!("{PREDICTOR}\n# version 2\n"));
    s.ok(&p, &["deploy"]);
    wait_for("the second version of first", DEADLINE, || {
        let logs = s.ok(&p, &["logs", "first"]);
        logs.contains("using the virtualenv").then_some(())
    });
    assert_eq!(prefix_of("first"), first);
}

#[test]
fn a_failed_install_makes_the_api_error_with_pips_output() {
    let s = Server::start();
    let p = s.project("baddeps");
    write(&p, "requirements.txt", "./no-such-dir\n");
    write(&p, "predictor.py", "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return 1\n");
    write(&p, "cortex.yaml", &config("baddeps"));
    s.ok(&p, &["deploy"]);
    let api = s.wait_status("baddeps", "error");
    let error = api["errors"][0].as_str().unwrap();
    assert!(
        error.starts_with("failed to prepare the virtualenv: pip exited with status"),
        "{error}"
    );
    assert!(
        error.contains("no-such-dir"),
        "pip's own words are shown: {error}"
    );
    // The hint is pip's, never that the predictor imports a module pip's build lacked.
    let hint = api["errors"][1].as_str().unwrap();
    assert!(
        hint.starts_with("hint: pip could not install requirements.txt"),
        "{api}"
    );
}

#[test]
fn virtualenvs_nothing_uses_are_removed_but_never_under_a_running_replica() {
    // Sweeps every second, and a virtualenv no replica holds counts as unused at once.
    let s = Server::start_with_args(
        "127.0.0.1:0",
        &[("CORTEX_SWEEP_SECS", "1"), ("CORTEX_VENV_UNUSED_SECS", "0")],
        &[],
    );
    let p = s.project("sweptdeps");
    build_wheel(&p);
    let requirements =
        |version: u32| format!("# version {version}\n./hello_cortex-0.1-py3-none-any.whl\n");
    write(&p, "requirements.txt", &requirements(1));
    write(&p, "predictor.py", PREDICTOR);
    write(&p, "cortex.yaml", &config("swept"));
    s.ok(&p, &["deploy"]);
    s.wait_status("swept", "live");
    let prefix = || -> Option<String> {
        let v: serde_json::Value = s.predict("swept", "{}").json().ok()?;
        Some(v["prefix"].as_str()?.to_string())
    };
    let first = prefix().unwrap();
    // Other requirements: a virtualenv of its own; the first goes once its replica stopped.
    write(&p, "requirements.txt", &requirements(2));
    s.ok(&p, &["deploy"]);
    let second = wait_for("the second version to answer", DEADLINE, || {
        prefix().filter(|p| *p != first)
    });
    wait_for("the first virtualenv to be removed", DEADLINE, || {
        (!Path::new(&first).exists()).then_some(())
    });
    // A sweep goes through the models by name: one that removes a decoy model named to come
    // last went through this model first, and found the running replica's virtualenv unused
    // too (at once), yet left it.
    let venvs = Path::new(&second).parent().unwrap().parent().unwrap();
    let decoy = venvs.join("zzzz-a-deleted-model");
    std::fs::create_dir(&decoy).unwrap();
    wait_for("a sweep after that", DEADLINE, || {
        (!decoy.exists()).then_some(())
    });
    assert!(Path::new(&second).join("bin").is_dir(), "{second} went");
    assert_eq!(prefix().as_deref(), Some(second.as_str()));
    // A delete takes the model's whole directory, its virtualenvs and lock files.
    let model_dir = Path::new(&second).parent().unwrap().to_path_buf();
    s.ok(&p, &["delete", "swept", "-y"]);
    wait_for("the model's virtualenvs to be removed", DEADLINE, || {
        (!model_dir.exists()).then_some(())
    });
}
