"""The API's virtualenv: dependencies.sh run, then requirements.txt installed, in a cached
virtualenv (by the server's `--prepare` run, outside the replica's memory limit, or else by the
replica itself), in which the shim then runs again, activated (its python and pip first on
PATH, VIRTUAL_ENV set)."""

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys

from .log import _flush_output, _log
from .conda_env import CondaError, conda_packages, conda_prefix, make_conda_env
from .settings import ENTRY_FILE, model_locations


class RequirementsError(Exception):
    pass


# set in the environment of the re-executed shim, so it does not install again
_IN_VENV = "CORTEX_SHIM_IN_VENV"


def _has_requirements(text):
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return True
    return False


# What the predictor type's cortex image came with, installed into its virtualenv.
PACKAGES = {"onnx": ("onnxruntime", "numpy")}


def packages(settings):
    """The packages the API's virtualenv gets whatever its project says: its predictor type's,
    and boto3 when a model is on S3 (cortex's images had it)."""
    extra = list(PACKAGES.get(settings.get("predictor_type") or "python", ()))
    if any(loc.lower().startswith("s3://") for loc in model_locations(settings)):
        extra.append("boto3")
    return tuple(extra)


def _environment(settings):
    """The API's virtualenv for this project, or None when there is none to make: no
    requirements.txt, no dependencies.sh and no packages of its predictor type, or no
    CORTEX_VENVS_DIR.

    Named by the interpreter, both files' contents and those packages, so an unchanged project
    is prepared once and every replica of it shares the virtualenv."""
    venvs_dir = os.environ.get("CORTEX_VENVS_DIR", "").strip()
    project_dir = settings["project_dir"]
    requirements = os.path.join(project_dir, "requirements.txt")
    dependencies = os.path.join(project_dir, "dependencies.sh")
    has_requirements = os.path.isfile(requirements)
    has_dependencies = os.path.isfile(dependencies)
    extra = packages(settings)
    conda = conda_packages(project_dir)
    if not venvs_dir or not (has_requirements or has_dependencies or extra or conda):
        return None
    content = _read(requirements) if has_requirements else b""
    identity = ("%s\n%s\n" % (sys.version, os.path.realpath(sys.executable))).encode()
    digest = hashlib.sha256(identity + content)
    if has_dependencies:
        digest.update(b"\0dependencies.sh\0" + _read(dependencies))
    if extra:
        digest.update(b"\0packages\0" + " ".join(extra).encode())
    if conda:
        digest.update(b"\0conda\0" + " ".join(conda).encode())
    venv = os.path.join(venvs_dir, digest.hexdigest()[:24])
    return {
        "venvs_dir": venvs_dir,
        "venv": venv,
        "python": os.path.join(venv, "bin", "python"),
        "requirements": requirements if has_requirements else None,
        "requirements_text": content.decode("utf-8", "replace"),
        "dependencies": dependencies if has_dependencies else None,
        "packages": list(extra),
        "conda": conda,
        "project_dir": project_dir,
        "api": settings["api_name"],
    }


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _activated(venv):
    """The environment with `venv` active: its bin first on PATH (then its conda
    environment's, whose programs conda-packages.txt installed), VIRTUAL_ENV set."""
    env = dict(os.environ)
    env["VIRTUAL_ENV"] = venv
    paths = [os.path.join(venv, "bin")]
    if os.path.isdir(os.path.join(conda_prefix(venv), "bin")):
        paths.append(os.path.join(conda_prefix(venv), "bin"))
    env["PATH"] = os.pathsep.join(paths + [env.get("PATH", os.defpath)])
    env.pop("PYTHONHOME", None)
    return env


def prepare(settings):
    """Makes the API's virtualenv if it is not made yet, in cortex's order: dependencies.sh run
    in it (`bash -e`, in the project directory), then requirements.txt installed (so the script
    may install what pip's builds need). Returns it, or None.
    Raises RequirementsError when a step fails (the virtualenv is then removed)."""
    wanted = _environment(settings)
    if wanted is None:
        return None
    venv = wanted["venv"]
    ready = os.path.join(venv, ".cortex-ready")
    os.makedirs(wanted["venvs_dir"], exist_ok=True)
    # A made one is shared (replicas running in it hold the lock shared: see _hold); only a
    # build takes it for itself.
    for mode in (fcntl.LOCK_SH, fcntl.LOCK_EX):
        with open(venv + ".lock", "a") as lock:
            fcntl.flock(lock, mode)
            if os.path.exists(ready):
                _log("INFO", "%s: using the virtualenv %s" % (wanted["api"], venv))
                return wanted
            if mode == fcntl.LOCK_SH:
                continue
            _build(wanted, ready)
    return wanted


def _build(wanted, ready):
    """Makes the virtualenv (its lock held exclusively)."""
    _create_venv(wanted)
    if wanted["dependencies"]:
        _run_dependencies(wanted)
    _install_requirements(wanted)
    with open(ready, "w") as f:
        f.write(wanted["requirements_text"])


def use_requirements(settings):
    """Prepares the API's virtualenv (when the server has not yet) and re-executes the shim
    in it, activated. Returns only when there is nothing to do (no requirements.txt or
    dependencies.sh, no CORTEX_VENVS_DIR, or already running inside the virtualenv)."""
    if os.environ.get(_IN_VENV) == "1":
        return
    while True:
        wanted = prepare(settings)
        if wanted is None:
            return
        if _hold(wanted["venv"]):
            break
    _flush_output()
    env = _activated(wanted["venv"])
    env[_IN_VENV] = "1"
    python = wanted["python"]
    os.execve(python, [python, "-u", ENTRY_FILE] + sys.argv[1:], env)


def _hold(venv):
    """Marks the virtualenv in use for as long as this replica runs: a shared lock on its lock
    file, kept open across the exec into it and by every process it forks, and its last use
    (the time of its `.cortex-ready`). The server removes a virtualenv only once it can take
    that lock for itself and no replica has started from it for a while. False when it was
    removed before the lock was taken (it is then made again)."""
    fd = os.open(venv + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        os.utime(os.path.join(venv, ".cortex-ready"))
    except OSError:
        os.close(fd)
        return False
    os.set_inheritable(fd, True)
    return True


def _run_dependencies(wanted):
    _log("INFO", "%s: running dependencies.sh in the virtualenv" % wanted["api"])
    _flush_output()
    ran = subprocess.run(
        ["bash", "-e", wanted["dependencies"]],
        cwd=wanted["project_dir"],
        env=_activated(wanted["venv"]),
        stdin=subprocess.DEVNULL,
    )
    if ran.returncode != 0:
        shutil.rmtree(wanted["venv"], ignore_errors=True)
        raise RequirementsError(
            "dependencies.sh exited with status %d; its output is above (cortex logs %s)"
            % (ran.returncode, wanted["api"])
        )


def _create_venv(wanted):
    venv, python, api = wanted["venv"], wanted["python"], wanted["api"]
    shutil.rmtree(venv, ignore_errors=True)
    base = sys.executable
    if wanted["conda"]:
        try:
            base = make_conda_env(wanted)
        except CondaError as e:
            shutil.rmtree(venv, ignore_errors=True)
            raise RequirementsError(str(e)) from None
    _log("INFO", "%s: making a new virtualenv %s" % (api, venv))
    _flush_output()
    made = subprocess.run(
        [base, "-m", "venv", "--system-site-packages", venv],
        stdin=subprocess.DEVNULL,
    )
    if made.returncode != 0 or not os.path.exists(python):
        shutil.rmtree(venv, ignore_errors=True)
        raise RequirementsError(
            "`%s -m venv` failed (exit status %d); on Debian or Ubuntu install the python3-venv package"
            % (base, made.returncode)
        )


def _install_requirements(wanted):
    """requirements.txt and the predictor type's packages, in one pip run."""
    venv, python, api = wanted["venv"], wanted["python"], wanted["api"]
    args = []
    if wanted["requirements"] and _has_requirements(wanted["requirements_text"]):
        args += ["-r", wanted["requirements"]]
        _log("INFO", "%s: installing requirements.txt" % api)
    extra = wanted.get("packages") or []
    if extra:
        # one pip run with requirements.txt, so that its pins of these are honoured
        _log("INFO", "%s: installing %s (the predictor type's packages)" % (api, ", ".join(extra)))
        args += list(extra)
    if not args:
        return
    _flush_output()
    pip = subprocess.run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"] + args,
        cwd=wanted["project_dir"],
        env=_activated(venv),
        stdin=subprocess.DEVNULL,
    )
    if pip.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        raise RequirementsError(
            "pip exited with status %d; its output is above (cortex logs %s)" % (pip.returncode, api)
        )
