"""requirements.txt: installed into a cached virtualenv, in which the shim then runs again."""

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys

from .log import _flush_output, _log
from .settings import ENTRY_FILE


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


def use_requirements(settings):
    """Installs requirements.txt into a cached virtualenv and re-executes the shim with it.

    Returns only when there is nothing to do (no requirements.txt, no CORTEX_VENVS_DIR, or
    already running inside the virtualenv)."""
    path = os.path.join(settings["project_dir"], "requirements.txt")
    venvs_dir = os.environ.get("CORTEX_VENVS_DIR", "").strip()
    if os.environ.get(_IN_VENV) == "1" or not venvs_dir or not os.path.isfile(path):
        return
    with open(path, "rb") as f:
        content = f.read()
    identity = ("%s\n%s\n" % (sys.version, os.path.realpath(sys.executable))).encode()
    key = hashlib.sha256(identity + content).hexdigest()[:24]
    venv = os.path.join(venvs_dir, key)
    python = os.path.join(venv, "bin", "python")
    ready = os.path.join(venv, ".cortex-ready")
    api = settings["api_name"]
    os.makedirs(venvs_dir, exist_ok=True)
    with open(os.path.join(venvs_dir, key + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(ready):
            _log("INFO", "%s: using the virtualenv %s for requirements.txt" % (api, venv))
        else:
            _create_venv(api, venv, python, path, content, settings["project_dir"])
            with open(ready, "w") as f:
                f.write(content.decode("utf-8", "replace"))
    _flush_output()
    env = dict(os.environ)
    env[_IN_VENV] = "1"
    os.execve(python, [python, "-u", ENTRY_FILE] + sys.argv[1:], env)


def _create_venv(api, venv, python, path, content, project_dir):
    shutil.rmtree(venv, ignore_errors=True)
    _log("INFO", "%s: installing requirements.txt into a new virtualenv %s" % (api, venv))
    _flush_output()
    made = subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", venv],
        stdin=subprocess.DEVNULL,
    )
    if made.returncode != 0 or not os.path.exists(python):
        shutil.rmtree(venv, ignore_errors=True)
        raise RequirementsError(
            "`%s -m venv` failed (exit status %d); on Debian or Ubuntu install the python3-venv package"
            % (sys.executable, made.returncode)
        )
    if not _has_requirements(content.decode("utf-8", "replace")):
        return
    pip = subprocess.run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-r", path],
        cwd=project_dir,
        stdin=subprocess.DEVNULL,
    )
    if pip.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        raise RequirementsError(
            "pip exited with status %d; its output is above (cortex logs %s)" % (pip.returncode, api)
        )
