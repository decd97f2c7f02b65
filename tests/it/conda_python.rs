//! `conda-packages.txt` as cortex 0.2x users wrote it: a `python=3.X` line picks that
//! interpreter when the server has it; what it cannot honour is refused, saying what to do.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;

const VERSION_PREDICTOR: &str = "import sys\n\nclass PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return '%d.%d' % sys.version_info[:2]\n";

#[test]
fn conda_packages_that_cannot_be_honoured_are_refused_with_the_way_forward() {
    // A machine without a conda installer, whatever this one has.
    let s = Server::start_with(
        "127.0.0.1:0",
        &[("CORTEX_CONDA", "/nonexistent/micromamba")],
    );
    let p = s.python_project("old", "RealtimeAPI", VERSION_PREDICTOR, "");
    write(&p, "conda-packages.txt", "python=2.1\n");
    let out = s.run(&p, &["deploy"]);
    assert_eq!(out.status.code(), Some(1));
    assert_refused(
        &out,
        "conda-packages.txt asks for python=2.1, but this server has no python2.1",
    );
    assert_refused(&out, "remove the line to run on the server's python");

    write(
        &p,
        "conda-packages.txt",
        "# env\nconda-forge::rdkit\nnumpy=1.19\n",
    );
    let out = s.run(&p, &["deploy"]);
    assert_refused(
        &out,
        "conda-packages.txt lists conda-forge::rdkit, numpy=1.19, but this server's machine has no conda installer; install micromamba",
    );
    assert_refused(&out, "or move them to requirements.txt");
    assert_eq!(s.ok(&p, &["get"]), "no apis are deployed\n");
}

/// A copy of pyenv's python 3.8 that any user can run (pyenv's own lies under root's private
/// home here): its library path made relative with patchelf. `None` when the machine has no
/// python 3.8 in pyenv, or no patchelf.
fn runnable_python38(dir: &Path) -> Option<PathBuf> {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".pyenv")))?;
    let mut versions: Vec<PathBuf> = std::fs::read_dir(root.join("versions"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("3.8."))
        })
        .collect();
    versions.sort();
    let source = versions.pop()?;
    Command::new("patchelf").arg("--version").output().ok()?;
    let copy = dir.join("py38");
    let status = Command::new("cp")
        .args(["-a"])
        .arg(&source)
        .arg(&copy)
        .status()
        .ok()?;
    assert!(status.success());
    let _ = std::fs::remove_dir_all(copy.join("lib/python3.8/test"));
    let patched = Command::new("patchelf")
        .args(["--set-rpath", "$ORIGIN/../lib"])
        .arg(copy.join("bin/python3.8"))
        .status()
        .ok()?;
    assert!(patched.success());
    // Only `python3.8` on the server's PATH: its `python3` stays the machine's own.
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(copy.join("bin/python3.8"), bin.join("python3.8")).unwrap();
    Some(bin)
}

#[test]
fn a_python_line_runs_the_api_on_that_interpreter() {
    // Readable by every user, as an interpreter installed for all would be.
    let shared = tempfile::Builder::new()
        .prefix("cortex-py38-")
        .tempdir_in("/tmp")
        .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let Some(bin) = runnable_python38(shared.path()) else {
        eprintln!("skipped: no python 3.8 in pyenv or no patchelf on this machine");
        return;
    };
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let s = Server::start_with("127.0.0.1:0", &[("PATH", &path)]);
    let p = s.python_project("old", "RealtimeAPI", VERSION_PREDICTOR, "");
    write(&p, "conda-packages.txt", "python=3.8\n");
    s.ok(&p, &["deploy"]);
    s.wait_status("old", "live");
    assert_eq!(s.predict("old", "{}").text().unwrap(), "3.8");

    // Without the line, the server's own python.
    std::fs::remove_file(p.join("conda-packages.txt")).unwrap();
    let out = s.ok(&p, &["deploy"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let v = s.predict("old", "{}").text().unwrap();
        if v != "3.8" && v.starts_with("3.") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {v}: {out} {:?}",
            s.api_json("old")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A stand-in for micromamba, as `micromamba create --yes --prefix P [--channel C] SPECS...`
/// behaves for the server: it records its arguments, makes `P` an environment with a python
/// (a virtualenv of the system's) and puts an `ffmpeg` program in its `bin`, as the
/// `ffmpeg` package would.
const FAKE_MICROMAMBA: &str = r#"#!/bin/bash
set -e
prefix=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  if [ "${args[$i]}" = "--prefix" ]; then prefix="${args[$((i + 1))]}"; fi
done
echo "fake micromamba: $*"
[ -n "$prefix" ] || { echo "no --prefix" >&2; exit 2; }
case " $* " in *" broken-package "*) echo "nothing provides broken-package" >&2; exit 1;; esac
/usr/bin/python3 -m venv --without-pip "$prefix"
printf '#!/bin/sh\necho "ffmpeg version 4.2 (conda)"\n' > "$prefix/bin/ffmpeg"
chmod 755 "$prefix/bin/ffmpeg"
echo "MAMBA_ROOT_PREFIX=$MAMBA_ROOT_PREFIX" > "$prefix/made-by-fake"
"#;

const FFMPEG_PREDICTOR: &str = "import subprocess, sys\n\nclass PythonPredictor:\n    def __init__(self, config):\n        self.ffmpeg = subprocess.check_output(['ffmpeg']).decode().strip()\n\n    def predict(self, payload):\n        return {'ffmpeg': self.ffmpeg, 'prefix': sys.prefix}\n";

#[test]
fn other_conda_packages_are_installed_with_the_machines_installer() {
    let tools = shared_tempdir();
    std::fs::set_permissions(tools.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let micromamba = tools.path().join("micromamba");
    std::fs::write(&micromamba, FAKE_MICROMAMBA).unwrap();
    std::fs::set_permissions(&micromamba, std::fs::Permissions::from_mode(0o755)).unwrap();
    let conda = micromamba.display().to_string();
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_CONDA", conda.as_str())]);
    let p = s.python_project("video", "RealtimeAPI", FFMPEG_PREDICTOR, "");
    write(&p, "conda-packages.txt", "python=3.11\nffmpeg\n");
    s.ok(&p, &["deploy"]);
    let v = s.wait_status("video", "live");
    assert_eq!(v["status"], "live");
    let answer: serde_json::Value = s.predict("video", "{}").json().unwrap();
    assert_eq!(answer["ffmpeg"], "ffmpeg version 4.2 (conda)", "{answer}");
    let logs = s.ok(&p, &["logs", "video"]);
    assert!(
        logs.contains("installing python=3.11, ffmpeg with micromamba (conda-packages.txt)"),
        "{logs}"
    );
    assert!(
        logs.contains("fake micromamba: create --yes --prefix ")
            && logs.contains("--channel conda-forge python=3.11 ffmpeg"),
        "{logs}"
    );

    // A package the installer cannot install: the API is in error with the installer's word.
    write(&p, "conda-packages.txt", "broken-package\n");
    s.ok(&p, &["deploy"]);
    let v = s.wait_status("video", "error");
    let text = v.to_string();
    assert!(text.contains("micromamba exited with status 1"), "{text}");
}
