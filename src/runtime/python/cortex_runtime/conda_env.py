"""`conda-packages.txt` packages other than `python=3.X`: installed by the machine's conda
installer (`CORTEX_CONDA`: micromamba, mamba or conda, found by the server) into a conda
environment inside the API's virtualenv directory (`<venv>/.conda`), with the python the file
asks for (else this one's version). The virtualenv is then made from that environment's
python (`--system-site-packages`, so the conda packages are importable), and the
environment's `bin` follows the virtualenv's on `PATH` (programs such as ffmpeg)."""

import os
import subprocess
import sys

from .log import _flush_output, _log


class CondaError(Exception):
    pass


def _parse(text):
    """(python version or None, other package specs) of a conda-packages.txt."""
    python, others = None, []
    for line in text.splitlines():
        spec = line.split("#", 1)[0].strip()
        if not spec:
            continue
        end = len(spec)
        for i, c in enumerate(spec):
            if c in "=<>! ":
                end = i
                break
        if spec[:end].rsplit("::", 1)[-1] != "python":
            others.append(spec)
            continue
        parts = [p for p in spec[end:].lstrip("=<>! ").split(".") if p]
        if len(parts) >= 2 and parts[0].isdigit():
            minor = ""
            for c in parts[1]:
                if not c.isdigit():
                    break
                minor += c
            if minor:
                python = "%s.%s" % (parts[0], minor)
    return python, others


def conda_packages(project_dir):
    """The package specs to install with conda ([] when there are none, or no installer)."""
    path = os.path.join(project_dir, "conda-packages.txt")
    if not os.environ.get("CORTEX_CONDA") or not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8", errors="replace") as f:
        python, others = _parse(f.read())
    if not others:
        return []
    return ["python=%s" % (python or "%d.%d" % sys.version_info[:2])] + others


def conda_prefix(venv):
    return os.path.join(venv, ".conda")


def make_conda_env(wanted):
    """Makes the conda environment; returns its python."""
    tool, venv, api = os.environ["CORTEX_CONDA"], wanted["venv"], wanted["api"]
    prefix = conda_prefix(venv)
    specs = wanted["conda"]
    args = [tool, "create", "--yes", "--prefix", prefix]
    if os.path.basename(tool).startswith("micromamba") and not any("::" in s for s in specs):
        args += ["--channel", "conda-forge"]  # micromamba has no default channel
    env = dict(os.environ)
    # the installer's caches: the API's own directory, writable by the replica
    env["MAMBA_ROOT_PREFIX"] = os.path.join(wanted["venvs_dir"], ".mamba")
    env["CONDA_PKGS_DIRS"] = os.path.join(wanted["venvs_dir"], ".conda-pkgs")
    _log("INFO", "%s: installing %s with %s (conda-packages.txt)" % (api, ", ".join(specs), os.path.basename(tool)))
    _flush_output()
    made = subprocess.run(args + specs, env=env, stdin=subprocess.DEVNULL)
    python = os.path.join(prefix, "bin", "python")
    if made.returncode != 0 or not os.path.exists(python):
        raise CondaError(
            "%s exited with status %d and made no python in %s; its output is above (cortex logs %s)"
            % (os.path.basename(tool), made.returncode, prefix, api)
        )
    return python
