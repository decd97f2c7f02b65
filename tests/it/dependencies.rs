//! What a replica's environment is prepared with, as cortex 0.2x projects expect:
//! `requirements.txt` and `dependencies.sh` in the API's virtualenv, whose `python` and `pip`
//! come first on `PATH`; prepared outside `compute.mem`, which limits the predictor only.

use crate::harness::*;

const WHERE: &str = "import os, shutil, sys\n\nclass PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        venv = os.environ.get('VIRTUAL_ENV', '')\n        marker = os.path.join(venv, 'from-dependencies.txt')\n        return {\n            'venv': venv,\n            'prefix': sys.prefix,\n            'python': shutil.which('python'),\n            'python3': shutil.which('python3'),\n            'pip': shutil.which('pip'),\n            'marker': open(marker).read() if os.path.exists(marker) else None,\n        }\n";

#[test]
fn dependencies_sh_runs_in_the_apis_virtualenv_outside_its_memory_limit() {
    let s = Server::start();
    let p = s.python_project(
        "prepared",
        "RealtimeAPI",
        WHERE,
        "  compute:\n    mem: 150Mi\n",
    );
    write(&p, "requirements.txt", "# nothing to install\n");
    // More memory than compute.mem allows: the preparation is not the predictor.
    write(
        &p,
        "dependencies.sh",
        "echo \"dependencies.sh runs in $PWD with $(command -v python)\"\npython -c \"x = bytearray(300 << 20); x[::4096] = b'1' * len(x[::4096]); print('held', len(x) >> 20, 'MiB')\"\necho installed > \"$VIRTUAL_ENV/from-dependencies.txt\"\n",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("prepared", "live");
    let v: serde_json::Value = s.predict("prepared", "{}").json().unwrap();
    let venv = v["venv"].as_str().unwrap();
    assert!(!venv.is_empty(), "VIRTUAL_ENV is set: {v}");
    assert_eq!(
        v["prefix"], venv,
        "the predictor runs in the virtualenv: {v}"
    );
    for program in ["python", "python3", "pip"] {
        assert!(
            v[program].as_str().is_some_and(|p| p.starts_with(venv)),
            "{program} on PATH is the virtualenv's: {v}"
        );
    }
    assert_eq!(v["marker"], "installed\n", "{v}");
    let logs = s.ok(&p, &["logs", "prepared", "--no-follow"]);
    assert!(logs.contains("dependencies.sh runs in "), "{logs}");
    assert!(logs.contains("held 300 MiB"), "{logs}");
}

#[test]
fn a_failing_dependencies_sh_makes_the_api_error_with_its_last_lines() {
    let s = Server::start();
    let p = s.python_project("unprepared", "RealtimeAPI", WHERE, "");
    write(
        &p,
        "dependencies.sh",
        "echo 'fetching the model weights'\nfalse\necho 'never printed'\n",
    );
    s.ok(&p, &["deploy"]);
    let api = s.wait_status("unprepared", "error");
    let errors = api["errors"].to_string();
    assert!(errors.contains("dependencies.sh"), "{api}");
    assert!(errors.contains("fetching the model weights"), "{api}");
    assert!(
        !errors.contains("never printed"),
        "bash -e stops at the failure: {api}"
    );
}

/// Writes a pure-python wheel `hello_cortex-0.1-py3-none-any.whl` into `sys.argv[1]`.
const BUILD_WHEEL: &str = r#"import base64, hashlib, os, sys, zipfile
files = {
    "hello_cortex/__init__.py": b"GREETING = 'built by dependencies.sh'\n",
    "hello_cortex-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: hello-cortex\nVersion: 0.1\n",
    "hello_cortex-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: cortex-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
with zipfile.ZipFile(os.path.join(sys.argv[1], "hello_cortex-0.1-py3-none-any.whl"), "w") as z:
    for name, data in files.items():
        z.writestr(name, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (name, digest, len(data)))
    record.append("hello_cortex-0.1.dist-info/RECORD,,")
    z.writestr("hello_cortex-0.1.dist-info/RECORD", "\n".join(record) + "\n")
print("dependencies.sh built the wheel")
"#;

#[test]
fn dependencies_sh_runs_before_requirements_txt_is_installed() {
    let s = Server::start();
    let p = s.python_project(
        "buildfirst",
        "RealtimeAPI",
        "import hello_cortex\n\nclass PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return hello_cortex.GREETING\n",
        "",
    );
    write(&p, "build_wheel.py", BUILD_WHEEL);
    // What pip installs exists only once dependencies.sh has run (offline: a local wheel).
    write(
        &p,
        "dependencies.sh",
        "python build_wheel.py \"$VIRTUAL_ENV\"\n",
    );
    write(
        &p,
        "requirements.txt",
        "${VIRTUAL_ENV}/hello_cortex-0.1-py3-none-any.whl\n",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("buildfirst", "live");
    let answer = s.predict("buildfirst", "{}").text().unwrap();
    assert_eq!(answer, "built by dependencies.sh");
    let logs = s.ok(&p, &["logs", "buildfirst", "--no-follow"]);
    let built = logs.find("dependencies.sh built the wheel");
    let installed = logs.find("installing requirements.txt");
    assert!(
        built.is_some() && installed.is_some() && built < installed,
        "dependencies.sh runs first: {logs}"
    );
}

#[test]
fn a_failed_preparation_is_in_the_log_once_with_a_hint_when_it_needed_root() {
    let s = Server::start();
    let p = s.python_project("needsroot", "RealtimeAPI", WHERE, "");
    // cortex 0.2x's system-packages example: a replica's user is not root here.
    write(
        &p,
        "dependencies.sh",
        "echo 'installing tree'\napt-get update && apt-get install -y tree\n",
    );
    s.ok(&p, &["deploy"]);
    let api = s.wait_status("needsroot", "error");
    let errors = api["errors"].to_string();
    assert!(
        errors.contains("dependencies.sh runs as the replica's unprivileged user"),
        "{api}"
    );
    // The first attempt, up to the next one (it keeps being retried).
    let logs = s.ok(&p, &["logs", "needsroot", "--no-follow"]);
    let starting = "'s preparation (";
    let first = logs.split(starting).nth(1).unwrap_or_default();
    assert_eq!(first.matches("installing tree").count(), 1, "{logs}");
    assert_eq!(
        first
            .matches("cortex: error: failed to prepare the virtualenv")
            .count(),
        1,
        "{logs}"
    );
    assert!(
        first.contains("'s preparation exited with status 3"),
        "{logs}"
    );
}
