"""The replica's environment (`CORTEX_*`, see `main`'s doc) read into a settings dict,
`.env` loading, and the exit statuses."""

import json
import os

EXIT_OK = 0
EXIT_BAD_ENV = 2
EXIT_INIT_FAILED = 3
EXIT_BIND_FAILED = 4
EXIT_WORKER_DIED = 5

# request bodies: the default limit (the server's gateway has the same)
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024

# this package, and the file the cortex server runs (`python3 -u cortex_shim.py`) beside it
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
ENTRY_FILE = os.path.join(os.path.dirname(PACKAGE_DIR), "cortex_shim.py")


class EnvError(Exception):
    pass


def load_dotenv(path):
    """Loads KEY=VALUE lines from `path` into os.environ without overriding
    variables that are already set. `export ` prefixes, surrounding quotes,
    comments and blank lines are handled. Returns the names that were set."""
    loaded = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return loaded
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[len("export"):].strip()
        if "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip()
        if not key or not (key[0].isalpha() or key[0] == "_") or not all(
            c.isalnum() or c == "_" for c in key
        ):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        elif value and value[0] in "\"'" and value[0] in value[1:]:
            # quoted value followed by a comment: KEY="a b" # comment
            value = value[1 : value.index(value[0], 1)]
        else:
            # unquoted: ` # comment` ends the value, as in a shell
            for i, c in enumerate(value):
                if c == "#" and i > 0 and value[i - 1] in " \t":
                    value = value[:i].rstrip()
                    break
        if key not in os.environ:
            os.environ[key] = value
            loaded.append(key)
    return loaded


def _positive_int(env, name, default):
    """A whole number >= 1 from the environment; `default` when unset or empty."""
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise EnvError("%s is not an integer: %r" % (name, text)) from None
    if value < 1:
        raise EnvError("%s must be at least 1, got %d" % (name, value))
    return value


def _models(env):
    """`CORTEX_MODELS`: the predictor's `model_path` or `models` as JSON ({"model_path": ...},
    or {"paths": [{"name", "model_path"}...]} or {"dir": ...}, with "cache_size" and
    "disk_cache_size"), or None."""
    text = env.get("CORTEX_MODELS", "").strip()
    if not text:
        return None
    try:
        models = json.loads(text)
    except ValueError as e:
        raise EnvError("CORTEX_MODELS is not valid JSON: %s" % e) from None
    if not isinstance(models, dict) or not (models.get("model_path") or models.get("dir") or models.get("paths")):
        raise EnvError("CORTEX_MODELS must be an object with model_path, dir or paths")
    return models


def model_locations(settings):
    """Every location the API's models come from."""
    models = settings.get("models") or {}
    found = [models.get("model_path"), models.get("dir")]
    found += [p.get("model_path") for p in models.get("paths") or [] if isinstance(p, dict)]
    return [f for f in found if isinstance(f, str) and f]


def read_settings():
    env = os.environ
    port_text = env.get("CORTEX_PORT", "").strip()
    if not port_text:
        raise EnvError("CORTEX_PORT is not set")
    try:
        port = int(port_text)
    except ValueError:
        raise EnvError("CORTEX_PORT is not an integer: %r" % port_text) from None
    if not 0 <= port <= 65535:
        raise EnvError("CORTEX_PORT is out of range: %d" % port)

    project_dir = os.path.abspath(env.get("CORTEX_PROJECT_DIR") or os.getcwd())
    if not os.path.isdir(project_dir):
        raise EnvError("CORTEX_PROJECT_DIR is not a directory: %s" % project_dir)

    predictor_path = env.get("CORTEX_PREDICTOR_PATH", "").strip()
    if not predictor_path:
        raise EnvError("CORTEX_PREDICTOR_PATH is not set")

    config_text = env.get("CORTEX_PREDICTOR_CONFIG", "").strip() or "{}"
    try:
        config = json.loads(config_text)
    except ValueError as e:
        raise EnvError("CORTEX_PREDICTOR_CONFIG is not valid JSON: %s" % e) from None
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise EnvError("CORTEX_PREDICTOR_CONFIG is not a JSON object")

    threads = _positive_int(env, "CORTEX_THREADS_PER_PROCESS", 1)
    processes = _positive_int(env, "CORTEX_PROCESSES_PER_REPLICA", 1)
    max_body = _positive_int(env, "CORTEX_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)

    listen_fd = None
    fd_text = env.get("CORTEX_LISTEN_FD", "").strip()
    if fd_text:
        try:
            listen_fd = int(fd_text)
        except ValueError:
            raise EnvError("CORTEX_LISTEN_FD is not an integer: %r" % fd_text) from None
        if listen_fd < 0:
            raise EnvError("CORTEX_LISTEN_FD must be at least 0, got %d" % listen_fd)

    api_name = env.get("CORTEX_API_NAME", "").strip() or "api"

    predictor_type = env.get("CORTEX_PREDICTOR_TYPE", "").strip() or "python"
    if predictor_type not in ("python", "onnx"):
        raise EnvError("CORTEX_PREDICTOR_TYPE must be python or onnx, got %r" % predictor_type)
    models = _models(env)
    if predictor_type == "onnx" and models is None:
        raise EnvError("CORTEX_MODELS is not set (an onnx predictor needs its model)")

    batch = env.get("CORTEX_KIND", "").strip() == "BatchAPI"
    job_spec = None
    if batch:
        try:
            job_spec = json.loads(env.get("CORTEX_JOB_SPEC", "").strip() or "{}")
        except ValueError as e:
            raise EnvError("CORTEX_JOB_SPEC is not valid JSON: %s" % e) from None
        if not isinstance(job_spec, dict):
            raise EnvError("CORTEX_JOB_SPEC is not a JSON object")
    return {
        "batch": batch,
        "job_spec": job_spec,
        "listen_fd": listen_fd,
        "port": port,
        "project_dir": project_dir,
        "predictor_path": predictor_path,
        "predictor_type": predictor_type,
        "models": models,
        "config": config,
        "threads": threads,
        "processes": processes,
        "api_name": api_name,
        "max_body_bytes": max_body,
    }
