"""cortex python predictor shim (realtime).

Runs one user `PythonPredictor` (cortex v0.2x interface) behind a small HTTP
server. Python standard library only: this file ships inside the cortex binary
and is written to disk by the cortex server, which starts it as

    python3 -u cortex_shim.py

with the project directory as the working directory and these variables:

    CORTEX_PORT                  port to serve on (bound on 127.0.0.1), required
    CORTEX_PROJECT_DIR           absolute project directory (default: cwd)
    CORTEX_PREDICTOR_PATH        predictor file, relative to the project dir, required
    CORTEX_PREDICTOR_CONFIG      JSON object passed as `config` to __init__ (default {})
    CORTEX_THREADS_PER_PROCESS   threads running the predictor per process, >= 1 (default 1)
    CORTEX_PROCESSES_PER_REPLICA worker processes serving the port, >= 1 (default 1)
    CORTEX_API_NAME              the API's name, for log lines (default "api")
    CORTEX_VENVS_DIR             where virtualenvs for requirements.txt are kept (optional)
    CORTEX_MAX_BODY_BYTES        largest request body accepted, >= 1 (default 64 MiB,
                                 the limit of the server's gateway)
    CORTEX_SERVER_URL            the cortex server, for the Model Bazaar job routes (optional)
    CORTEX_JOB_TOKEN             this deployment's job token for those routes (optional)
    CORTEX_MODEL_ID              the model this replica serves (for save_model, optional)
    CORTEX_KIND                  "BatchAPI" for a worker of a batch job: predict takes
                                 payload (the batch) and batch_id, __init__ may take
                                 job_spec, and POST /on-job-complete calls on_job_complete
    CORTEX_JOB_SPEC              the job's fields as a JSON object (batch workers)
    CORTEX_LISTEN_FD             a TCP socket already bound to 127.0.0.1:$CORTEX_PORT,
                                 not listening, to serve on instead of binding the port
                                 (optional; the cortex server hands one on fd 3 so that no
                                 other program can take the port before the shim serves)

requirements.txt: when the project has one and CORTEX_VENVS_DIR is set, the
shim installs it (pip) into a virtualenv under CORTEX_VENVS_DIR named by the
hash of the file and of this Python, created with --system-site-packages and
reused by every replica with the same requirements, then re-executes itself
with that virtualenv's python. A failed install exits 3 with the first stderr
line `cortex: error: failed to install requirements.txt: ...`.

Exit status: 0 after SIGTERM/SIGINT, 2 if the environment above is invalid,
3 if the predictor could not be imported or initialised (the first stderr line
is then `cortex: error: failed to initialise the predictor: <Type>: <message>`),
4 if the port could not be bound, 5 (several processes only) if a worker process
could not be started or died after the replica became ready.

Threads (as in upstream cortex): each serving process has ONE thread pool of
CORTEX_THREADS_PER_PROCESS threads, and only that pool runs user code: the
import of the predictor file and `__init__` (submitted first, before the port
serves), every `predict` and every `post_predict`. So at most that many
predictions (and post_predicts) run at once per process, and with one thread
everything runs on the same thread, one call at a time: a sqlite3 connection or
a `threading.local` made in `__init__` can be used in `predict`. HTTP is served
by one asyncio event loop per process with a lean HTTP/1.1 parser: with one
thread the loop runs on the pool's thread and calls the predictor itself
(`predict` then runs with no event loop running, so it may use `asyncio.run`);
with more, the loop has its own thread and hands each call to the pool. The
loop only reads and parses requests and serialises and writes responses.
`post_predict` runs on the pool after the response is written.

Processes: with CORTEX_PROCESSES_PER_REPLICA=1 the predictor runs in this
process. With N > 1 this process binds the port (without listening yet) and
forks N worker processes; each imports the predictor, constructs its own
PythonPredictor (in its own pool) and serves on the shared socket. The socket
starts listening (so /healthz answers) only once every worker is initialised;
if one fails, the others are killed and the shim exits 3 with that worker's
error. A worker whose pool threads are all taken waits (up to 1 s) before
accepting a new connection, so that an idle worker gets it. This process then
only supervises: SIGTERM/SIGINT are forwarded to the workers (SIGKILL after
4 s), and if a worker dies the others are stopped and the shim exits 5 (the
server restarts the whole replica). Workers die with this process
(PR_SET_PDEATHSIG on Linux; elsewhere they stop when their pipe to this process
closes).

Shutdown: the server sends SIGTERM and SIGKILLs 5 s later. On SIGTERM a process
stops accepting, /healthz answers 503, new predictions get 503, and in-flight
requests get at most 3 s to finish; then the process exits at once (queued
post_predicts are dropped and running ones are not waited for; atexit handlers
get 0.5 s).

HTTP (HTTP/1.1, keep-alive; Content-Length is sent on every response but 204/304):
    GET  /healthz      200 {"status": "ok"} (503 while shutting down)
    GET  /health       200 {"status": "success"} (Model Bazaar's health probe)
    POST <any path>    prediction
    POST /batches      batch workers: a stream of batches in, a stream of outcomes out
                       (see `BatchStream`)
    GET  <other path>  200 {"message": "make a prediction by sending a post request ..."}
    PUT, DELETE, ...   405
Errors are JSON objects {"kind": ..., "message": ...}.

Request bodies (every method; GET/HEAD/405 bodies are read and discarded) are
framed by Content-Length or chunked transfer encoding. A request line and
headers over 64 KiB get 431. A body larger than CORTEX_MAX_BODY_BYTES gets 413
{"kind": "payload_too_large"} with `Connection: close` as soon as that is known
(from Content-Length, Expect: 100-continue, or the chunk sizes) without reading
the rest (before closing, what the client still sends is dropped for up to 1 s
so that it is not reset before it reads the 413). Bad framing (an invalid Content-Length, a chunk size line that is not
hex or has more than 16 significant digits, a truncated body, a transfer coding
other than chunked) gets 400 {"kind": "bad_request"} with `Connection: close`.

predict(payload, query_params, headers) (each optional, passed by name):
    payload       by the request's Content-Type (as in upstream cortex):
                    application/json (and */*+json): the parsed JSON; invalid -> 400
                    application/x-www-form-urlencoded: a FormData of str values
                    multipart/form-data: a FormData of str values (plain fields) and
                      UploadFile objects (file parts: .filename, .content_type,
                      .headers, .file (a BytesIO), .read(), .seek(), .close())
                    anything else (or none): the raw body, bytes
                  a malformed form body (or one that is not UTF-8) -> 400
    query_params  a QueryParams: a read-only dict of the last value of each
                  parameter; .getlist(name) gives every value
    headers       a Headers: a read-only dict with lower-case keys whose lookups
                  (`[]`, .get, `in`) ignore case; a repeated header's value is its
                  first one (as Starlette's) and .getlist(name) gives every value
    FormData is a read-only dict too ([], .get, .getlist, `in`, iteration; the
    last value of a repeated field wins); all three are dict subclasses, so
    json.dumps and dict() work on them.

Return value of predict:
    bytes -> application/octet-stream; str -> text/plain; charset=utf-8;
    an object like a Starlette Response (a `body` of bytes and an int
    `status_code`; optional `media_type` and `headers` mapping) -> sent with that
    status, content type and headers (hop-by-hop and framing headers are
    dropped); anything else -> JSON (500 if it is not serialisable).
    An exception in predict -> 500 {"kind": "internal", "message": "internal
    server error"}, with the traceback on stderr.
"""

import asyncio
import atexit
import collections
import concurrent.futures
import datetime
import email.parser
import email.policy
import email.utils
import fcntl
import hashlib
import http
import importlib.util
import inspect
import io
import json
import os
import select
import signal
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
import traceback
import types
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

EXIT_OK = 0
EXIT_BAD_ENV = 2
EXIT_INIT_FAILED = 3
EXIT_BIND_FAILED = 4
EXIT_WORKER_DIED = 5

INIT_ARGS = ("config", "job_spec", "python_client")
PREDICT_ARGS = ("payload", "query_params", "headers")
BATCH_PREDICT_ARGS = ("payload", "batch_id")
POST_PREDICT_ARGS = ("response", "payload", "query_params", "headers")

GET_MESSAGE = "make a prediction by sending a post request to this endpoint with a json payload"

# idle keep-alive connections are closed after this many seconds; well above the
# idle timeout of common client pools so that a pooled connection is not closed
# under a client's feet
KEEP_ALIVE_TIMEOUT = 900

# the server SIGKILLs a replica 5 s after its SIGTERM: in-flight requests get
# this long to finish after SIGTERM
REQUEST_STOP_GRACE = 3.0
# ... then atexit handlers get this long before the process exits anyway
EXIT_HOOKS_GRACE = 0.5
# several processes: how long the supervisor lets workers finish after SIGTERM
# before it SIGKILLs them
WORKER_STOP_GRACE = 4.0
# several processes: a worker whose pool threads are all taken waits up to this
# long before accepting a new connection, so that an idle worker gets it
# (CORTEX_ACCEPT_DEFER_SECS changes it; the shim's tests use a longer wait, so
# that a loaded test machine does not make them flaky)
def _accept_defer():
    try:
        value = float(os.environ.get("CORTEX_ACCEPT_DEFER_SECS", "1"))
    except ValueError:
        return 1.0
    return value if 0 <= value <= 60 else 1.0


ACCEPT_DEFER = _accept_defer()

# request bodies: the default limit (the server's gateway has the same), the
# longest chunk size or trailer line
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_LINE = 8192
# after a 413 the connection is closed; first the shim keeps reading (and
# dropping) what the client still sends for up to this long, so that the
# client is not reset before it has read the response
LINGER_SECONDS = 1.0

_SHIM_FILE = os.path.abspath(__file__)
_output_lock = threading.Lock()


# ---------------------------------------------------------------------------
# logging


def _log(level, msg, extra=""):
    """Writes `<timestamp>:cortex:pid-<pid>:<LEVEL>:<msg>` (plus `extra`, e.g. a
    traceback, verbatim) in one write. INFO and WARNING go to stdout, ERROR to
    stderr."""
    ts = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")
    text = "%s:cortex:pid-%d:%s:%s\n" % (ts, os.getpid(), level, msg)
    if extra:
        text += extra if extra.endswith("\n") else extra + "\n"
    stream = sys.stderr if level == "ERROR" else sys.stdout
    with _output_lock:
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            pass


def _one_line(text, limit=1000):
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _describe(exc):
    """`<ExceptionType>: <message>` on one line (just the type if no message)."""
    msg = _one_line(exc)
    name = type(exc).__name__
    return "%s: %s" % (name, msg) if msg else name


def _keep_frame(frame):
    filename = frame.filename or ""
    if filename.startswith("<"):
        return not filename.startswith("<frozen importlib")
    return os.path.abspath(filename) != _SHIM_FILE


def _project_roots():
    """The project directory as this replica runs it (the server's unpacked copy), both as
    written and with links resolved."""
    root = os.environ.get("CORTEX_PROJECT_DIR") or os.getcwd()
    return {os.path.abspath(root), os.path.realpath(root)}


def _as_in_project(filename):
    """`filename` relative to the project when it lies in it, as its author knows it
    (`predictor.py`), not as the server's copy's path; other paths as they are."""
    if not filename or filename.startswith("<"):
        return filename
    path = os.path.abspath(filename)
    for root in _project_roots():
        if path.startswith(root.rstrip(os.sep) + os.sep):
            return os.path.relpath(path, root)
    return filename


def _relative_frame(frame):
    frame.line  # read the source line while the real path still names the file
    frame.filename = _as_in_project(frame.filename)
    return frame


def _trim(te, seen):
    if te is None or id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list(
        [_relative_frame(f) for f in te.stack if _keep_frame(f)]
    )
    if getattr(te, "filename", None):  # a SyntaxError names its file itself
        te.filename = _as_in_project(te.filename)
    _trim(te.__cause__, seen)
    _trim(te.__context__, seen)


def _format_traceback(exc):
    """The traceback of `exc` without the shim's own frames and importlib's."""
    try:
        te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
        _trim(te, set())
        return "".join(te.format())
    except Exception:  # never fail while reporting a failure
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


# ---------------------------------------------------------------------------
# environment


class EnvError(Exception):
    pass


class PredictorError(Exception):
    """A problem with the user's predictor detected by the shim itself."""


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
        "config": config,
        "threads": threads,
        "processes": processes,
        "api_name": api_name,
        "max_body_bytes": max_body,
    }


# ---------------------------------------------------------------------------
# predictor


def _parameters(fn):
    """(names, required names, accepts **kwargs) of a callable's parameters."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return [], [], False
    names, required, var_kw = [], [], False
    for p in sig.parameters.values():
        if p.kind == p.VAR_KEYWORD:
            var_kw = True
        elif p.kind == p.VAR_POSITIONAL:
            continue
        else:
            names.append(p.name)
            if p.default is p.empty:
                required.append(p.name)
    return names, required, var_kw


def _select_args(fn, allowed, what):
    """Returns the argument names among `allowed` that `fn` declares; raises
    PredictorError if `fn` requires an argument that cortex does not provide."""
    names, required, var_kw = _parameters(fn)
    unknown = [n for n in required if n not in allowed]
    if unknown:
        raise PredictorError(
            "%s has unexpected required argument%s %s (allowed: %s)"
            % (
                what,
                "s" if len(unknown) > 1 else "",
                ", ".join(repr(n) for n in unknown),
                ", ".join(allowed),
            )
        )
    if var_kw:
        return list(allowed)
    return [n for n in allowed if n in names]


class Predictor:
    def __init__(self, instance, predict_args, post_predict, post_predict_args):
        self.instance = instance
        self.predict_args = predict_args
        self.post_predict = post_predict
        self.post_predict_args = post_predict_args


def load_predictor(settings):
    path = os.path.join(settings["project_dir"], settings["predictor_path"])
    rel = settings["predictor_path"]
    if not os.path.isfile(path):
        raise PredictorError("predictor file %s does not exist" % rel)

    spec = importlib.util.spec_from_file_location("cortex_predictor", path)
    if spec is None or spec.loader is None:
        raise PredictorError("cannot import %s as a python module" % rel)
    module = importlib.util.module_from_spec(spec)
    sys.modules["cortex_predictor"] = module
    spec.loader.exec_module(module)

    cls = getattr(module, "PythonPredictor", None)
    if cls is None:
        raise PredictorError("%s does not define a class named PythonPredictor" % rel)
    if not inspect.isclass(cls):
        raise PredictorError("PythonPredictor in %s is not a class" % rel)
    if not callable(getattr(cls, "predict", None)):
        raise PredictorError("class PythonPredictor in %s has no predict method" % rel)

    init_args = _select_args(cls, INIT_ARGS, "PythonPredictor.__init__")
    values = {"config": settings["config"], "job_spec": settings.get("job_spec"), "python_client": None}
    instance = cls(**{n: values[n] for n in init_args})

    allowed = BATCH_PREDICT_ARGS if settings.get("batch") else PREDICT_ARGS
    predict_args = _select_args(instance.predict, allowed, "PythonPredictor.predict")
    post_predict = getattr(instance, "post_predict", None)
    post_predict_args = []
    if post_predict is not None:
        if not callable(post_predict):
            post_predict = None
        else:
            post_predict_args = _select_args(
                post_predict, POST_PREDICT_ARGS, "PythonPredictor.post_predict"
            )
    return Predictor(instance, predict_args, post_predict, post_predict_args)


# ---------------------------------------------------------------------------
# the thread pool that runs the user's code


def _make_pool(settings):
    return ThreadPoolExecutor(max_workers=settings["threads"], thread_name_prefix="cortex-predictor")


def _call_guarded(fn, *args, **kwargs):
    """Runs in the pool: (result, None), or (None, exception) so that the
    exception's traceback holds the user's frames only, not the pool's."""
    try:
        return fn(*args, **kwargs), None
    except BaseException as e:  # SystemExit in user code too: reported, not fatal
        return None, e


def _load_in_pool(pool, settings):
    """Imports and constructs the predictor on the pool (its first task), and
    waits for it here: in short waits, so that this (main) thread runs signal
    handlers promptly whichever thread the kernel delivered the signal to."""
    future = pool.submit(_call_guarded, load_predictor, settings)
    while True:
        try:
            predictor, exc = future.result(timeout=0.1)
            break
        except concurrent.futures.TimeoutError:
            continue
    if exc is not None:
        raise exc
    return predictor


def _run_post_predict(fn, args, api_name):
    try:
        fn(**args)
    except BaseException as e:
        _log("ERROR", "%s: exception in post_predict: %s" % (api_name, _describe(e)), _format_traceback(e))


# ---------------------------------------------------------------------------
# what predict() receives


class _ReadOnlyDict(dict):
    """A read-only dict built from (key, value) pairs that keeps every pair for
    getlist(). A dict subclass so that json.dumps and dict() work on it."""

    __slots__ = ("_list",)
    _first_wins = False

    def __init__(self, items=()):
        if hasattr(items, "multi_items"):
            items = items.multi_items()
        elif hasattr(items, "items"):
            items = items.items()
        pairs = [(self._key(k), v) for k, v in items]
        values = {}
        for k, v in pairs:
            if not (self._first_wins and k in values):
                values[k] = v
        dict.__init__(self, values)
        self._list = pairs

    @staticmethod
    def _key(key):
        return key

    def __getitem__(self, key):
        return dict.__getitem__(self, self._key(key))

    def __contains__(self, key):
        try:
            return dict.__contains__(self, self._key(key))
        except TypeError:  # unhashable
            return False

    def get(self, key, default=None):
        try:
            return dict.get(self, self._key(key), default)
        except TypeError:
            return default

    def getlist(self, key):
        """Every value of `key`, in request order ([] if none)."""
        key = self._key(key)
        return [v for k, v in self._list if k == key]

    def multi_items(self):
        """Every (key, value) pair, repeated keys included, in request order."""
        return list(self._list)

    def copy(self):
        return type(self)(self._list)

    def __copy__(self):
        return self.copy()

    def __reduce__(self):
        return (type(self), (list(self._list),))

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, dict.__repr__(self))

    def _read_only(self, *args, **kwargs):
        raise TypeError("%s is read-only" % type(self).__name__)

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only


class Headers(_ReadOnlyDict):
    """The request headers: keys are lower case and lookups ignore case; a
    repeated header's value is its first one (getlist gives all of them)."""

    __slots__ = ()
    _first_wins = True

    @staticmethod
    def _key(key):
        return key.lower() if isinstance(key, str) else key


class QueryParams(_ReadOnlyDict):
    """The query parameters: the last value of a repeated one wins (getlist
    gives all of them)."""

    __slots__ = ()


class FormData(_ReadOnlyDict):
    """A form body (like Starlette's FormData): str values for plain fields,
    UploadFile for files; the last value of a repeated field wins."""

    __slots__ = ()

    def close(self):
        for _, v in self._list:
            if isinstance(v, UploadFile):
                v.close()


class UploadFile:
    """A file part of a multipart/form-data body (like Starlette's UploadFile,
    with synchronous methods)."""

    def __init__(self, filename, content_type, data, headers=None):
        self.filename = filename
        self.content_type = content_type
        self.headers = headers if headers is not None else Headers()
        self.size = len(data)
        self.file = io.BytesIO(data)

    def read(self, size=-1):
        return self.file.read(size)

    def seek(self, offset, whence=0):
        return self.file.seek(offset, whence)

    def close(self):
        self.file.close()

    def __repr__(self):
        return "UploadFile(filename=%r, content_type=%r, size=%d)" % (self.filename, self.content_type, self.size)


class BadRequest(Exception):
    pass


class PayloadTooLarge(Exception):
    pass


def _media_type(content_type):
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(content_type):
    media = _media_type(content_type)
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def parse_payload(content_type, body):
    """The `payload` for a request body (see the module doc); raises BadRequest."""
    if _is_json(content_type):
        try:
            return json.loads(body)
        except ValueError as e:
            raise BadRequest("the request body is not valid JSON: %s" % e) from None
    media = _media_type(content_type)
    if media == "application/x-www-form-urlencoded":
        return parse_urlencoded(body)
    if media == "multipart/form-data":
        return parse_multipart(content_type, body)
    return body


def parse_urlencoded(body):
    try:
        text = body.decode("utf-8")
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("the application/x-www-form-urlencoded body is not valid UTF-8") from None
    except ValueError as e:
        raise BadRequest("the application/x-www-form-urlencoded body is malformed: %s" % e) from None
    return FormData(pairs)


_MULTIPART_DEFECTS = {
    "NoBoundaryInMultipartDefect": "the Content-Type has no boundary parameter",
    "StartBoundaryNotFoundDefect": "the boundary was not found in the body",
    "CloseBoundaryNotFoundDefect": "the closing boundary is missing (truncated body?)",
}


def _text(value):
    """A header parameter as str: RFC 2231 values collapsed, undecodable bytes replaced."""
    if isinstance(value, tuple):
        value = email.utils.collapse_rfc2231_value(value)
    value = str(value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # surrogate escapes from bytes that were not UTF-8
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


def parse_multipart(content_type, body):
    what = "the multipart/form-data body is malformed"
    header = " ".join(content_type.split())  # no line breaks into the synthetic message
    raw = b"Content-Type: " + header.encode("latin-1", "replace") + b"\r\n\r\n" + body
    try:
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    except Exception as e:  # the email package reports defects, but be safe
        raise BadRequest("%s: %s" % (what, _describe(e))) from None
    boundary = msg.get_boundary()
    if boundary is None:
        raise BadRequest("%s: %s" % (what, _MULTIPART_DEFECTS["NoBoundaryInMultipartDefect"]))
    stripped = body.strip()
    if not stripped or stripped == b"--" + boundary.encode("latin-1", "replace") + b"--":
        return FormData()  # no fields at all
    for defect in msg.defects:
        name = type(defect).__name__
        if name in _MULTIPART_DEFECTS:
            raise BadRequest("%s: %s" % (what, _MULTIPART_DEFECTS[name]))
    if not msg.is_multipart() or msg.defects:
        raise BadRequest("%s: %s" % (what, ", ".join(type(d).__name__ for d in msg.defects) or "no parts"))

    pairs = []
    for index, part in enumerate(msg.get_payload(), 1):
        if part.is_multipart():
            raise BadRequest("%s: part %d is itself multipart, which is not supported" % (what, index))
        if part.get_content_disposition() != "form-data":
            raise BadRequest("%s: part %d has no `Content-Disposition: form-data` header" % (what, index))
        name = part.get_param("name", header="content-disposition")
        if name is None:
            raise BadRequest("%s: part %d has no name" % (what, index))
        name = _text(name)
        if part.defects:
            raise BadRequest(
                "%s: part %d (%r): %s" % (what, index, name, ", ".join(type(d).__name__ for d in part.defects))
            )
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            ctype = part.get("Content-Type")
            value = UploadFile(
                _text(filename),
                _text(ctype) if ctype is not None else "",
                data,
                Headers((k, _text(v)) for k, v in part.items()),
            )
        else:
            charset = part.get_content_charset() or "utf-8"
            try:
                value = data.decode(charset)
            except (LookupError, UnicodeDecodeError):
                raise BadRequest("%s: the field %r is not valid %s" % (what, name, charset)) from None
        pairs.append((name, value))
    return FormData(pairs)


# ---------------------------------------------------------------------------
# what predict() returns

# not passed through from a returned Response: they describe the connection
# or the framing, which the shim does itself
_HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "content-length")
)
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _is_response(result):
    """True for objects that look like a starlette.responses.Response."""
    if isinstance(result, (bytes, bytearray, memoryview, str, dict, list, tuple, int, float)) or result is None:
        return False
    try:
        body = getattr(result, "body", None)
        status = getattr(result, "status_code", None)
    except Exception:
        return False
    return isinstance(body, (bytes, bytearray, memoryview)) and isinstance(status, int) and not isinstance(status, bool)


def _header_text(value, what):
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1")
    elif not isinstance(value, str):
        value = str(value)
    if any(c in value for c in "\r\n\0"):
        raise ValueError("the response %s %r contains a line break" % (what, value))
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("the response %s %r is not latin-1" % (what, value)) from None
    return value


def _response_headers(result):
    """The headers of a returned Response-like object as (name, value) pairs."""
    headers = getattr(result, "headers", None)
    if headers is None:
        return []
    if hasattr(headers, "multi_items"):
        items = headers.multi_items()
    elif hasattr(headers, "items"):
        items = headers.items()
    else:
        items = headers
    pairs = []
    for item in items:
        name, value = item
        name = _header_text(name, "header name")
        if not name or any(c not in _TOKEN_CHARS for c in name):
            raise ValueError("invalid response header name %r" % name)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            pairs.append((name, _header_text(v, "header %s" % name)))
    return pairs


def render(result):
    """(status, body, [(header, value)]) for what predict() returned; raises
    TypeError or ValueError if it cannot be sent."""
    if isinstance(result, (bytes, bytearray, memoryview)):
        return 200, bytes(result), [("Content-Type", "application/octet-stream")]
    if isinstance(result, str):
        return 200, result.encode("utf-8"), [("Content-Type", "text/plain; charset=utf-8")]
    if _is_response(result):
        status = result.status_code
        if not 200 <= status <= 599:
            raise ValueError("the Response returned by predict() has an invalid status_code %d" % status)
        headers = [(k, v) for k, v in _response_headers(result) if k.lower() not in _HOP_BY_HOP]
        if not any(k.lower() == "content-type" for k, _ in headers):
            media_type = getattr(result, "media_type", None)
            if media_type:
                media_type = _header_text(media_type, "media_type")
                if media_type.lower().startswith("text/") and "charset=" not in media_type.lower():
                    charset = getattr(result, "charset", None) or "utf-8"
                    media_type += "; charset=%s" % _header_text(charset, "charset")
                headers.insert(0, ("Content-Type", media_type))
        return status, bytes(result.body), headers
    try:
        body = json.dumps(result).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise TypeError("the value returned by predict() is not JSON serialisable: %s" % e) from e
    return 200, body, [("Content-Type", "application/json")]


# ---------------------------------------------------------------------------
# HTTP


def open_socket(settings):
    """The socket to serve on, bound but not listening: the one handed on
    CORTEX_LISTEN_FD, or a new one bound to 127.0.0.1:CORTEX_PORT."""
    fd = settings.get("listen_fd")
    if fd is not None:
        sock = socket.socket(fileno=fd)
        if sock.type != socket.SOCK_STREAM:
            sock.detach()
            raise OSError("CORTEX_LISTEN_FD=%d is not a TCP socket" % fd)
        return sock
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", settings["port"]))
    except OSError:
        sock.close()
        raise
    return sock


# The request line and headers may take up to this many bytes (431 beyond)
HEAD_LIMIT = 64 * 1024
# a connection reading (or answering) nothing for this long is closed
IDLE_SWEEP_SECONDS = 30.0
# what a connection buffers beyond the request it is answering before it stops reading
BUFFER_HIGH_WATER = 1024 * 1024

_REASONS = {s.value: s.phrase for s in http.HTTPStatus}
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_METHODS_NOT_ALLOWED = frozenset(("PUT", "DELETE", "PATCH", "OPTIONS"))


class HeadTooLarge(Exception):
    """The request line and headers are longer than HEAD_LIMIT."""


class RequestHead:
    """A request's line and headers (as sent: a list of (name, value) pairs; `by_name` holds
    each lower-case name's values)."""

    __slots__ = ("method", "target", "version", "headers", "by_name", "path", "query", "keep_alive")

    def __init__(self, method, target, version, headers):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        by_name = {}
        for k, v in headers:
            by_name.setdefault(k.lower(), []).append(v)
        self.by_name = by_name
        if target.startswith("/"):
            path, _, query = target.partition("?")
            self.path, self.query = path, query.partition("#")[0]
        else:  # absolute form (or "*")
            split = urllib.parse.urlsplit(target)
            self.path, self.query = split.path or "/", split.query
        connection = by_name.get("connection")
        tokens = {t.strip().lower() for v in connection for t in v.split(",")} if connection else ()
        if version == "HTTP/1.0":
            self.keep_alive = "keep-alive" in tokens
        else:
            self.keep_alive = "close" not in tokens

    def get(self, name, default=None):
        values = self.by_name.get(name.lower())
        return values[0] if values else default

    def get_all(self, name):
        return self.by_name.get(name.lower(), [])


def _head_end(buf):
    """(end of the head's last line, bytes the head takes with its blank line) or None."""
    crlf = buf.find(b"\n\r\n")
    lf = buf.find(b"\n\n")
    if crlf < 0 and lf < 0:
        return None
    if lf < 0 or 0 <= crlf < lf:
        return crlf, crlf + 3
    return lf, lf + 2


def parse_head(buf):
    """Parses a request head from the start of `buf` (a bytearray; empty lines before it
    are dropped): (RequestHead, bytes it takes), or None until it is complete. Raises
    HeadTooLarge, or BadRequest for a malformed request line or header."""
    while buf[:2] == b"\r\n" or buf[:1] == b"\n":
        del buf[: 2 if buf[:1] == b"\r" else 1]
    found = _head_end(buf)
    if found is None:
        if len(buf) > HEAD_LIMIT:
            raise HeadTooLarge()
        return None
    end, taken = found
    if taken > HEAD_LIMIT:
        raise HeadTooLarge()
    lines = bytes(buf[:end]).decode("latin-1").split("\n")
    words = lines[0].rstrip("\r").split(" ")
    if len(words) != 3 or not words[0] or not words[1]:
        raise BadRequest("malformed request line %r" % _one_line(lines[0].rstrip("\r"), 80))
    method, target, version = words
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest("unsupported HTTP version %r (HTTP/1.1 and HTTP/1.0 are)" % _one_line(version, 20))
    if any(c not in _TOKEN_CHARS for c in method):
        raise BadRequest("malformed method %r" % _one_line(method, 20))
    headers = []
    for line in lines[1:]:
        line = line.rstrip("\r")
        name, sep, value = line.partition(":")
        if not sep or not name or any(c not in _TOKEN_CHARS for c in name):
            raise BadRequest("malformed header line %r" % _one_line(line, 80))
        headers.append((name, value.strip(" \t")))
    return RequestHead(method, target, version, headers), taken


def request_body(head, limit):
    """A reader of the body of `head` as its framing says: a LengthBody (its Content-Length,
    0 without a body), or a ChunkedBody. Raises BadRequest or PayloadTooLarge."""
    codings = [c.strip().lower() for v in head.get_all("Transfer-Encoding") for c in v.split(",") if c.strip()]
    if codings:
        if codings != ["chunked"]:
            raise BadRequest("unsupported Transfer-Encoding: %s (only chunked is)" % ", ".join(codings))
        return ChunkedBody(limit, both_framings=bool(head.get_all("Content-Length")))
    values = head.get_all("Content-Length")
    if not values:
        return LengthBody(0)
    texts = {v.strip() for v in values}
    text = texts.pop()
    if texts or not text or not (text.isascii() and text.isdigit()):
        raise BadRequest("invalid Content-Length")
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(limit)) or int(digits) > limit:
        raise PayloadTooLarge()
    return LengthBody(int(digits))


class LengthBody:
    """A request body of a known length."""

    both_framings = False
    incomplete = "incomplete request body"

    def __init__(self, length):
        self.length = length

    def take(self, buf):
        """The body, taken from `buf`, once it is all in; else None."""
        n = self.length
        if len(buf) < n:
            return None
        body = bytes(buf[:n])
        del buf[:n]
        return body

    def missing(self, buf):
        """Whether more of it is to come than `buf` holds."""
        return len(buf) < self.length


class ChunkedBody:
    """Decodes a chunked request body as it arrives."""

    incomplete = "incomplete chunked request body"

    def __init__(self, limit, both_framings=False):
        self.limit = limit
        # both framings: the connection is never reused
        self.both_framings = both_framings
        self.state = "size"
        self.remaining = 0
        self.total = 0
        self.trailers = 0
        self.chunks = []

    def _line(self, buf, what):
        i = buf.find(b"\n", 0, MAX_LINE + 1)
        if i < 0:
            if len(buf) > MAX_LINE:
                raise BadRequest("%s line is too long" % what)
            return None
        line = bytes(buf[: i + 1])
        del buf[: i + 1]
        return line

    def feed(self, buf):
        """Takes what it can from `buf`; True once the body and its trailers are in.
        Raises BadRequest or PayloadTooLarge."""
        while True:
            if self.state == "size":
                line = self._line(buf, "a chunk size")
                if line is None:
                    return False
                digits = line.split(b";", 1)[0].strip()
                if not digits or any(c not in _HEX_DIGITS for c in digits):
                    raise BadRequest(
                        "invalid chunk size %r in the request body" % _one_line(digits.decode("latin-1"), 40)
                    )
                significant = digits.lstrip(b"0")
                if len(significant) > 16:
                    raise BadRequest(
                        "absurd chunk size %r in the request body" % _one_line(digits.decode("latin-1"), 40)
                    )
                size = int(significant, 16) if significant else 0
                if size == 0:
                    self.state = "trailer"
                    continue
                if self.total + size > self.limit:
                    raise PayloadTooLarge()
                self.total += size
                self.remaining = size
                self.state = "data"
            elif self.state == "data":
                if not buf:
                    return False
                n = min(self.remaining, len(buf))
                self.chunks.append(bytes(buf[:n]))
                del buf[:n]
                self.remaining -= n
                if self.remaining:
                    return False
                self.state = "crlf"
            elif self.state == "crlf":
                if buf[:1] == b"\n":
                    del buf[:1]
                elif buf[:2] == b"\r\n":
                    del buf[:2]
                elif not buf or buf == b"\r":
                    return False
                else:
                    raise BadRequest("a chunk of the request body does not end with CRLF")
                self.state = "size"
            else:  # trailers, up to the empty line
                line = self._line(buf, "a trailer")
                if line is None:
                    return False
                if line in (b"\r\n", b"\n"):
                    return True
                self.trailers += len(line)
                if self.trailers > MAX_LINE:
                    raise BadRequest("the trailers of the chunked request body are too long")

    def take(self, buf):
        """The body, decoded from what `buf` holds (taken from it), once it is all in;
        else None. Raises BadRequest or PayloadTooLarge."""
        return b"".join(self.chunks) if self.feed(buf) else None

    def missing(self, buf):
        return True


_date_cache = [0, ""]


def _http_date():
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0], _date_cache[1] = now, email.utils.formatdate(now, usegmt=True)
    return _date_cache[1]


class BatchStream:
    """A POST /batches of a batch worker (the cortex server's own protocol with the shim): the
    request body is a stream of batches, one JSON object per line
    (`{"batch_id": "...", "payload": [...]}`), sent chunked; the answer streams (chunked,
    `application/x-ndjson`) one line per batch, in order, as soon as it is done:
    `{"batch_id": "...", "ok": true, "ms": 1.2}` or `{..., "ok": false, "error": "..."}`.

    Each batch runs as soon as its line is in and the one before it has run, so the sender
    decides how far ahead of the outcomes the worker may go: the cortex server sends the line
    of batch k+1 only once the outcome of batch k-1 is committed, which bounds what a server
    SIGKILL runs again (see `feeder.rs`). The answer ends once the body has ended and every
    batch in it has run; it ends early (fewer lines than batches, then the connection closes)
    when the worker is shutting down: the batches without a line never ran. A line that is not
    a batch gets `{"ok": false, "error": ...}` in its place; a body whose framing breaks (or a
    line longer than the body limit) gets one such line, then the connection closes."""

    __slots__ = ("limit", "partial", "lines", "body_done")

    def __init__(self, limit):
        self.limit = limit
        self.partial = bytearray()  # the start of a line not complete yet
        self.lines = collections.deque()
        self.body_done = False

    def push(self, body, buf):
        """Takes what has come of `body` (a LengthBody or ChunkedBody) from `buf`. Raises
        BadRequest or PayloadTooLarge."""
        if isinstance(body, ChunkedBody):
            self.body_done = body.feed(buf)
            data, body.chunks = b"".join(body.chunks), []
        else:
            n = min(body.length, len(buf))
            data = bytes(buf[:n])
            del buf[:n]
            body.length -= n
            self.body_done = body.length == 0
        partial = self.partial
        partial += data
        start = 0
        while True:
            end = partial.find(b"\n", start)
            if end < 0:
                break
            line = bytes(partial[start:end]).strip()
            if line:
                self.lines.append(line)
            start = end + 1
        del partial[:start]
        if len(partial) > self.limit:
            raise PayloadTooLarge()
        if self.body_done and partial.strip():
            self.lines.append(bytes(partial).strip())
            partial.clear()

    def next_line(self):
        return self.lines.popleft() if self.lines else None


class _ShutDown(Exception):
    """The pool was shut down before the call ran."""


class Server:
    """Serves HTTP on `sock` (bound; `server_activate` makes it listen, or a supervisor
    does) from one asyncio event loop. With one thread per process the loop runs on the
    pool's thread, the one that ran `__init__`, and calls the predictor itself (one call
    at a time, as the pool would); with more, the loop has its own thread and the pool runs
    the predictor. `gate_accept`: this process shares the socket with other workers."""

    request_queue_size = 256

    def __init__(self, settings, predictor, pool, sock, gate_accept=False):
        self.settings = settings
        self.predictor = predictor
        self.pool = pool
        self.inline = settings["threads"] == 1
        self.socket = sock
        self.fd = sock.fileno()
        self.server_address = sock.getsockname()
        self.shutting_down = threading.Event()
        self.stop_time = None
        self.loop = None
        self.loop_ended = threading.Event()
        # POST requests being answered, and post_predict calls queued or running:
        # together the pool's busy slots (besides connections whose first request
        # has not been read yet, `pending`)
        self.in_flight = 0
        self.post_busy = 0
        self.in_flight_cond = threading.Condition()
        # worker processes share the listening socket: a worker whose threads are all
        # taken defers accepting (up to ACCEPT_DEFER), so that an idle worker gets it
        self.gate_accept = gate_accept
        self.pending = 0
        self.accepting = False
        self.defer_until = None
        self.defer_handle = None
        self.connections = set()

    def server_activate(self):
        self.socket.listen(self.request_queue_size)

    def busy(self):
        """Taken slots (call with in_flight_cond held, or on the loop)."""
        return self.in_flight + self.post_busy + self.pending

    # -- the loop
    def start(self):
        """Runs the loop on its thread: the pool's (one thread), or a new one."""
        if self.inline:
            self.pool.submit(self._run)
        else:
            threading.Thread(target=self._run, name="cortex-http", daemon=True).start()

    def _run(self):
        try:
            loop = asyncio.new_event_loop()
            self.loop = loop
            self.socket.setblocking(False)
            loop.call_soon(self._listen)
            loop.call_later(IDLE_SWEEP_SECONDS, self._sweep_idle)
            if self.shutting_down.is_set():
                loop.call_soon(self._begin_shutdown)
            loop.run_forever()
        except BaseException as e:
            _log("ERROR", "%s: the HTTP server failed: %s" % (self.settings["api_name"], _describe(e)),
                 _format_traceback(e))
        finally:
            self.loop_ended.set()
            with self.in_flight_cond:
                self.in_flight_cond.notify_all()

    def shutdown(self):
        """Stops accepting and closes idle connections (any thread)."""
        loop = self.loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._begin_shutdown)
            except RuntimeError:  # the loop is closed
                pass

    def _begin_shutdown(self):
        self._stop_accepting()
        try:
            self.socket.close()
        except OSError:
            pass
        for conn in list(self.connections):
            if conn.batches is not None and not conn.busy:
                conn._process()  # a stream waiting for its next batch ends now
            conn.close_if_idle()

    # -- accepting
    def _listen(self):
        if not self.shutting_down.is_set():
            self.loop.add_reader(self.fd, self._accept)
            self.accepting = True

    def _stop_accepting(self):
        if self.accepting:
            self.loop.remove_reader(self.fd)
            self.accepting = False
        if self.defer_handle is not None:
            self.defer_handle.cancel()
            self.defer_handle = None

    def _accept(self):
        if self.gate_accept and self.busy() >= self.settings["threads"]:
            now = time.monotonic()
            if self.defer_until is None:
                self.defer_until = now + ACCEPT_DEFER
            if now < self.defer_until:
                # wait for a free slot (`slot_freed`) or the end of the deferral
                self._stop_accepting()
                self.defer_handle = self.loop.call_later(self.defer_until - now, self._resume_accept)
                return
        self.defer_until = None
        for _ in range(1 if self.gate_accept else 16):
            try:
                conn, _ = self.socket.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # another worker took it, or the client went away first
            except OSError as e:
                # out of descriptors (EMFILE, ENFILE) or memory: the socket stays readable, so
                # accepting pauses a moment instead of spinning; said once per pause
                _log("WARNING", "%s: cannot accept a connection: %s; retrying in 0.1 s" % (self.settings["api_name"], e))
                self._stop_accepting()
                self.defer_handle = self.loop.call_later(0.1, self._resume_accept)
                return
            conn.setblocking(False)
            self.pending += 1
            self.loop.create_task(self._connect(conn))

    async def _connect(self, conn):
        protocol = Connection(self)
        try:
            await self.loop.connect_accepted_socket(lambda: protocol, conn)
        except OSError:
            protocol.release_pending()
            conn.close()

    def _resume_accept(self):
        self.defer_handle = None
        if not self.accepting and not self.shutting_down.is_set():
            self._listen()

    def slot_freed(self):
        """A slot was given back (on the loop): a deferred accept may go on."""
        if self.gate_accept and not self.accepting and self.defer_until is not None:
            if self.defer_handle is not None:
                self.defer_handle.cancel()
            self._resume_accept()

    def _sweep_idle(self):
        deadline = time.monotonic() - KEEP_ALIVE_TIMEOUT
        for conn in list(self.connections):
            if conn.last_active < deadline and not conn.busy:
                conn.close()
        self.loop.call_later(IDLE_SWEEP_SECONDS, self._sweep_idle)

    # -- running user code
    def _outside_loop(self, fn, *args, **kwargs):
        """fn(...) on the loop's thread, with the loop not running meanwhile: a predictor may
        run an event loop of its own (asyncio.run)."""
        asyncio._set_running_loop(None)
        try:
            return fn(*args, **kwargs)
        finally:
            asyncio._set_running_loop(self.loop)

    def call(self, fn, args, kwargs, then, conn):
        """fn(*args, **kwargs) on the predictor's thread, then `then(result)` on the loop
        (`then(_ShutDown)` if the pool is shut down before it runs)."""
        if self.inline:
            then(self._outside_loop(fn, *args, **kwargs))
            return
        loop = self.loop
        try:
            future = self.pool.submit(fn, *args, **kwargs)
        except RuntimeError:
            then(_ShutDown)
            return
        conn.busy = True

        def done(f):
            try:
                loop.call_soon_threadsafe(conn.called, f, then)
            except RuntimeError:  # the loop is closed: the process is exiting
                pass

        future.add_done_callback(done)

    def enter(self):
        """A request starts (counted for a graceful stop; see `Connection.enter`)."""
        with self.in_flight_cond:
            self.in_flight += 1

    def leave(self):
        with self.in_flight_cond:
            self.in_flight -= 1
            self.in_flight_cond.notify_all()
        self.slot_freed()

    def post_predict(self, fn, args, conn):
        """Runs post_predict after the answer `conn` just wrote: on the pool, or (one thread)
        on this thread once the answer has gone out."""
        api_name = self.settings["api_name"]
        if self.inline:
            conn.after_flush(lambda: self._outside_loop(_run_post_predict, fn, args, api_name))
            return
        with self.in_flight_cond:
            self.post_busy += 1
        try:
            future = self.pool.submit(_run_post_predict, fn, args, api_name)
        except RuntimeError:  # the pool is shut down
            self.post_predict_done(None)
            return
        future.add_done_callback(self.post_predict_done)

    def post_predict_done(self, future):
        with self.in_flight_cond:
            self.post_busy -= 1
            self.in_flight_cond.notify_all()
        loop = self.loop
        if loop is not None and self.gate_accept:
            try:
                loop.call_soon_threadsafe(self.slot_freed)
            except RuntimeError:
                pass

    def flushed(self):
        """Whether every answer written has gone out (any thread: a glance, not a lock)."""
        for conn in list(self.connections):
            transport = conn.transport
            if transport is not None and transport.get_write_buffer_size():
                return False
        return True


class Connection(asyncio.Protocol):
    """One client connection: reads requests one after another (keep-alive), answers
    each before reading the next."""

    def __init__(self, server):
        self.server = server
        self.transport = None
        self.buf = bytearray()
        self.head = None  # the request being read
        self.body = None  # its body's reader: a LengthBody or a ChunkedBody
        self.busy = False  # the pool runs a call for it
        self.eof = False
        self.closed = False
        self.lingering = False
        self.reading_paused = False
        self.write_paused = False  # the client reads slower than answers are written
        self.flush_waiters = []  # called once what is written has gone out
        self.pending = True
        self.counted = False  # its POST counts as in flight (from its head to its answer)
        self.must_close = False
        self.streaming = False  # an answer is being streamed (start_stream .. end_stream)
        self.batches = None  # the BatchStream of a POST /batches being read and answered
        self.method = "GET"
        self.last_active = time.monotonic()

    # -- asyncio callbacks
    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        try:
            # responses go out in one write, but a client's delayed ACK must not hold them
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
        self.server.connections.add(self)
        if self.server.shutting_down.is_set():
            self.close()

    def connection_lost(self, exc):
        self.closed = True
        self.server.connections.discard(self)
        self.release_pending()
        self.leave()
        self._run_flush_waiters()

    def pause_writing(self):
        self.write_paused = True
        self._update_reading()

    def resume_writing(self):
        self.write_paused = False
        self._update_reading()
        if not self.transport.get_write_buffer_size():
            self._run_flush_waiters()
        if not self.closed and not self.busy:
            self._process()

    def data_received(self, data):
        if self.lingering or self.closed:
            return
        self.buf += data
        self.last_active = time.monotonic()
        if self.busy or self.write_paused:
            self._update_reading()
            return
        self._process()

    def eof_received(self):
        self.eof = True
        if self.lingering:
            self.close()
        elif not self.busy:
            self._process()
        return True  # half-closed: the answer may still be written

    # -- state
    def _update_reading(self):
        """Stops reading while answers wait to go out, or while a request is answered with
        much more already buffered; reads again once neither holds."""
        pause = self.write_paused or (self.busy and len(self.buf) > BUFFER_HIGH_WATER)
        if pause != self.reading_paused and not self.closed:
            self.reading_paused = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def enter(self):
        """Its request counts as in flight (a graceful stop waits for it)."""
        if not self.counted:
            self.counted = True
            self.server.enter()

    def leave(self):
        if self.counted:
            self.counted = False
            self.server.leave()

    def after_flush(self, fn):
        """Calls `fn` once what is written has gone out (at once if it has)."""
        if self.closed or not self.transport.get_write_buffer_size():
            fn()
            return
        self.flush_waiters.append(fn)
        if len(self.flush_waiters) == 1:
            self.server.loop.call_later(0.005, self._check_flushed)

    def _check_flushed(self):
        if not self.flush_waiters:
            return
        if self.closed or not self.transport.get_write_buffer_size():
            self._run_flush_waiters()
        elif not self.write_paused:  # paused: resume_writing says when
            self.server.loop.call_later(0.005, self._check_flushed)

    def _run_flush_waiters(self):
        waiters, self.flush_waiters = self.flush_waiters, []
        for fn in waiters:
            try:
                fn()
            except Exception as e:
                _log("ERROR", "error after an answer: %s" % _describe(e), _format_traceback(e))

    def release_pending(self):
        if self.pending:
            self.pending = False
            self.server.pending -= 1
            self.server.slot_freed()

    def close(self):
        if not self.closed:
            self.closed = True
            self.transport.close()

    def close_if_idle(self):
        """At shutdown: closes the connection unless a request is being read or answered."""
        if not self.busy and self.head is None and not self.buf:
            self.close()

    def called(self, future, then):
        """A pool call ended (on the loop)."""
        self.busy = False
        try:
            result = future.result()
        except (concurrent.futures.CancelledError, RuntimeError):
            result = _ShutDown
        try:
            then(result)
        except Exception as e:
            _log("ERROR", "error while answering a request: %s" % _describe(e), _format_traceback(e))
            self.leave()
            self.close()
        self._update_reading()
        if not self.closed and not self.write_paused:
            self._process()

    # -- reading requests
    def _process(self):
        try:
            self._read_requests()
        except Exception as e:
            _log("ERROR", "error while handling a connection: %s" % _describe(e), _format_traceback(e))
            self.close()

    def _read_requests(self):
        server = self.server
        limit = server.settings["max_body_bytes"]
        while not self.busy and not self.closed and not self.lingering and not self.write_paused:
            if self.head is None:
                try:
                    parsed = parse_head(self.buf)
                except HeadTooLarge:
                    self.method = "GET"
                    self.send_json(431, {"kind": "bad_request", "message": "the request headers are too large"},
                                   close=True)
                    return
                except BadRequest as e:
                    self.method = "GET"
                    self.send_json(400, {"kind": "bad_request", "message": str(e)}, close=True)
                    return
                if parsed is None:
                    if self.eof:
                        self.close()
                    elif server.shutting_down.is_set() and not self.buf:
                        self.close()
                    return
                head, taken = parsed
                del self.buf[:taken]
                self.head, self.method = head, head.method
                self.must_close = not head.keep_alive
                if head.method == "POST" and server.shutting_down.is_set():
                    self.release_pending()
                    message = "the worker is shutting down" if server.settings.get("batch") else "the api is shutting down"
                    self.send_json(503, {"kind": "not_ready", "message": message}, close=True)
                    return
                if head.method == "POST":
                    # in flight from its head on (its body may still be coming), counted
                    # before it stops being pending so the accept gate never sees it idle
                    self.enter()
                self.release_pending()
                try:
                    self.body = request_body(head, limit)
                except PayloadTooLarge:
                    self.send_too_large()
                    return
                except BadRequest as e:
                    self.send_json(400, {"kind": "bad_request", "message": str(e)}, close=True)
                    return
                if self.body.both_framings:
                    self.must_close = True
                if (
                    head.version == "HTTP/1.1"
                    and (head.get("Expect") or "").strip().lower() == "100-continue"
                    and self.body.missing(self.buf)
                ):
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                if head.method == "POST" and head.path == "/batches" and server.settings.get("batch"):
                    # read as it comes, a batch per line, each run as soon as it is in
                    self.batches = BatchStream(limit)
                    self.start_stream(200, "application/x-ndjson")
            if self.batches is not None:
                if not self._stream_batches():
                    return
                continue
            try:
                body = self.body.take(self.buf)
            except BadRequest as e:
                self.send_json(400, {"kind": "bad_request", "message": str(e)}, close=True)
                return
            except PayloadTooLarge:
                self.send_too_large()
                return
            if body is None:
                if self.eof:
                    self.send_json(400, {"kind": "bad_request", "message": self.body.incomplete}, close=True)
                return
            head, self.head, self.body = self.head, None, None
            self._dispatch(head, body)

    # -- responses
    def send(self, status, body, headers, close=False, linger=False):
        """Sends a response in one write; `headers` is a list of (name, value), or a
        content type. `linger`: after the answer, FIN, then what the client still sends is
        dropped (until it closes or LINGER_SECONDS pass), so that it is not reset before it
        reads the answer."""
        if self.closed:
            self.leave()
            return
        if isinstance(body, str):
            body = body.encode("utf-8")
        if isinstance(headers, str):
            headers = [("Content-Type", headers)]
        close = close or linger or self.must_close or self.server.shutting_down.is_set()
        lines = ["HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, ""))]
        names = {name.lower() for name, _ in headers}
        if "server" not in names:  # a returned Response may set its own
            lines.append("Server: cortex\r\n")
        if "date" not in names:
            lines.append("Date: %s\r\n" % _http_date())
        for name, value in headers:
            lines.append("%s: %s\r\n" % (name, value))
        if status not in (204, 304):
            lines.append("Content-Length: %d\r\n" % len(body))
        else:
            body = b""
        if close:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        data = "".join(lines).encode("latin-1")
        if self.method != "HEAD" and body:
            data += body
        self.transport.write(data)
        self.leave()  # the request is answered
        if linger and not self.server.shutting_down.is_set():
            self.lingering = True
            self.head, self.buf = None, bytearray()
            try:
                self.transport.write_eof()
            except (OSError, RuntimeError):
                pass
            self.server.loop.call_later(LINGER_SECONDS, self.close)
        elif close:
            self.close()

    def start_stream(self, status, content_type):
        """Starts an answer whose body follows in chunks (`write_chunk`, then `end_stream`)."""
        self.streaming = True
        head = "HTTP/1.1 %d %s\r\nServer: cortex\r\nDate: %s\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n" % (
            status,
            _REASONS.get(status, ""),
            _http_date(),
            content_type,
        )
        if not self.closed:
            self.transport.write(head.encode("latin-1"))

    def write_chunk(self, data):
        if data and not self.closed:
            self.transport.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self):
        """Ends a streamed answer: the request is answered."""
        if not self.streaming:
            return
        self.streaming = False
        if not self.closed:
            self.transport.write(b"0\r\n\r\n")
        self.leave()
        if self.must_close or self.server.shutting_down.is_set():
            self.close()

    def send_json(self, status, obj, close=False, linger=False):
        self.send(status, json.dumps(obj), "application/json", close=close, linger=linger)

    def send_too_large(self):
        limit = self.server.settings["max_body_bytes"]
        self.send_json(
            413,
            {"kind": "payload_too_large", "message": "the request body is larger than the limit of %d bytes" % limit},
            linger=True,
        )

    # -- routes
    def _dispatch(self, head, body):
        method = head.method
        if method in ("GET", "HEAD"):
            if head.path == "/healthz":
                if self.server.shutting_down.is_set():
                    self.send_json(503, {"status": "shutting down"}, close=True)
                else:
                    self.send_json(200, {"status": "ok"})
                return
            if head.path.split("?", 1)[0] == "/health":
                # What Model Bazaar deployments answer (its SDK waits for it through
                # `/<model_id>/health`).
                if self.server.shutting_down.is_set():
                    self.send_json(503, {"status": "shutting down"}, close=True)
                else:
                    self.send_json(200, {"status": "success"})
                return
            self.send_json(200, {"message": GET_MESSAGE})
        elif method == "POST":
            settings = self.server.settings
            if settings.get("batch") and head.path == "/on-job-complete":
                self._on_job_complete()
            else:
                self._predict(head, body)
        elif method in _METHODS_NOT_ALLOWED:
            self.send(
                405,
                json.dumps(
                    {
                        "kind": "method_not_allowed",
                        "message": "method %s is not allowed; send a POST to predict" % method,
                    }
                ),
                [("Allow", "GET, HEAD, POST"), ("Content-Type", "application/json")],
            )
        else:
            self.send_json(
                501,
                {"kind": "not_implemented", "message": "method %s is not supported; send a POST to predict" % method},
            )

    def _shut_down(self, message):
        self.send_json(503, {"kind": "not_ready", "message": message}, close=True)

    def _predict(self, head, body):
        server = self.server
        predictor = server.predictor
        api_name = server.settings["api_name"]
        try:
            payload = parse_payload(head.get("Content-Type", ""), body)
        except BadRequest as e:
            self.send_json(400, {"kind": "bad_request", "message": str(e)})
            return
        values = {
            "payload": payload,
            "query_params": QueryParams(urllib.parse.parse_qsl(head.query, keep_blank_values=True))
            if head.query
            else QueryParams(),
            "headers": Headers(head.headers),
            "batch_id": head.get("X-Cortex-Batch-ID", ""),
        }
        kwargs = {n: values[n] for n in predictor.predict_args}

        def predicted(outcome):
            if outcome is _ShutDown:
                self._shut_down("the api is shutting down")
                return
            result, exc = outcome
            if exc is None:
                try:
                    status, out, response_headers = render(result)
                except Exception as e:
                    exc = e
            if exc is not None:
                _log("ERROR", "%s: exception in predict: %s" % (api_name, _describe(exc)), _format_traceback(exc))
                # A batch's failure is kept with the job (its dead letters): say what it was.
                message = (
                    "predict raised %s" % _describe(exc) if server.settings.get("batch") else "internal server error"
                )
                self.send_json(500, {"kind": "internal", "message": message})
                return
            self.send(status, out, response_headers)
            if predictor.post_predict is not None:
                values["response"] = result
                args = {n: values[n] for n in predictor.post_predict_args}
                server.post_predict(predictor.post_predict, args, self)

        server.call(_call_guarded, (predictor.instance.predict,), kwargs, predicted, self)

    def _stream_batches(self):
        """Reads the batches of a POST /batches as they come and runs each once it is in
        (see `BatchStream`). True when the stream is over (the connection may read its next
        request); False while it waits for more of the body or for a batch to run."""
        stream, server = self.batches, self.server
        while not self.busy and not self.closed:
            if not stream.body_done:
                try:
                    stream.push(self.body, self.buf)
                except (BadRequest, PayloadTooLarge) as e:
                    # the framing is lost: say why in place of the next outcome, and close
                    message = str(e) or "the batches are larger than the limit of %d bytes" % stream.limit
                    self.write_chunk((json.dumps({"ok": False, "error": message}) + "\n").encode("utf-8"))
                    return self._end_batches(close=True)
            if server.shutting_down.is_set():
                # the batches not started never run: the server delivers them again
                return self._end_batches(close=not stream.body_done)
            line = stream.next_line()
            if line is not None:
                self._run_batch(line)
                continue
            if stream.body_done:
                return self._end_batches()
            if self.eof:
                return self._end_batches(close=True)
            return False
        return False

    def _end_batches(self, close=False):
        self.batches, self.head, self.body = None, None, None
        if close:
            self.must_close = True
        self.end_stream()
        return not self.closed

    def _run_batch(self, line):
        """Runs one batch of a POST /batches on the predictor's thread and streams its
        outcome line."""
        server = self.server
        predictor = server.predictor
        api_name = server.settings["api_name"]
        try:
            batch = json.loads(line)
            if not isinstance(batch, dict) or "payload" not in batch:
                raise ValueError("expected {\"batch_id\": ..., \"payload\": ...}")
        except ValueError as e:
            self.write_chunk((json.dumps({"ok": False, "error": "the batch is not valid: %s" % e}) + "\n").encode())
            return
        batch_id = str(batch.get("batch_id", ""))

        def run_one():
            values = {"payload": batch["payload"], "batch_id": batch_id}
            kwargs = {n: values[n] for n in predictor.predict_args}
            start = time.perf_counter()
            try:
                predictor.instance.predict(**kwargs)
                return {"batch_id": batch_id, "ok": True, "ms": (time.perf_counter() - start) * 1000}
            except BaseException as e:  # SystemExit in user code too: this batch failed
                _log("ERROR", "%s: exception in predict: %s" % (api_name, _describe(e)), _format_traceback(e))
                return {
                    "batch_id": batch_id,
                    "ok": False,
                    "error": "predict raised %s" % _describe(e),
                    "ms": (time.perf_counter() - start) * 1000,
                }

        def ran(outcome):
            if outcome is _ShutDown:
                # the pool is shut down: this batch never ran, nor will the others
                self._end_batches(close=True)
                return
            self.write_chunk((json.dumps(outcome) + "\n").encode("utf-8"))

        server.call(run_one, (), {}, ran, self)

    def _on_job_complete(self):
        """POST /on-job-complete of a batch worker: runs the predictor's
        on_job_complete() once every batch of the job is done; 404 when it has
        none."""
        server = self.server
        hook = getattr(server.predictor.instance, "on_job_complete", None)
        if hook is None or not callable(hook):
            self.send_json(404, {"kind": "not_found", "message": "the predictor has no on_job_complete"})
            return
        api_name = server.settings["api_name"]

        def done(outcome):
            if outcome is _ShutDown:
                self._shut_down("the worker is shutting down")
                return
            _, exc = outcome
            if exc is not None:
                _log(
                    "ERROR", "%s: exception in on_job_complete: %s" % (api_name, _describe(exc)), _format_traceback(exc)
                )
                self.send_json(500, {"kind": "internal", "message": "on_job_complete raised %s" % _describe(exc)})
                return
            self.send_json(200, {"message": "on_job_complete ran"})

        server.call(_call_guarded, (hook,), {}, done, self)


# ---------------------------------------------------------------------------
# main


_stop_requested = threading.Event()


def _early_signal(signum, frame):
    _stop_requested.set()
    raise SystemExit(EXIT_OK)


def _init_failure_text(exc):
    """The text reported when the predictor cannot be loaded: the
    `cortex: error: ...` line, then the traceback (unless the shim found the
    problem itself)."""
    text = "cortex: error: failed to initialise the predictor: %s\n" % _describe(exc)
    if not isinstance(exc, PredictorError):
        text += _format_traceback(exc)
    return text


def _write_stderr(text):
    with _output_lock:
        try:
            sys.stderr.write(text if text.endswith("\n") else text + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def _install_stop(server):
    """SIGTERM/SIGINT stop `server` gracefully; returns the stop function."""

    def stop(signum=None, frame=None):
        if not server.shutting_down.is_set():
            server.stop_time = time.monotonic()
            server.shutting_down.set()
            server.shutdown()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return stop


def _serve(server):
    """Serves until stopped (this thread waits, running the signal handlers), then lets
    in-flight requests finish and their answers go out for up to REQUEST_STOP_GRACE after
    the stop signal. Queued post_predicts are dropped and running ones are not waited for:
    the caller exits with _finish. Returns the exit status."""
    server.start()
    failed = False
    try:
        while not server.shutting_down.wait(0.2):
            if server.loop_ended.is_set():
                failed = True
                break
    finally:
        start = server.stop_time if server.stop_time is not None else time.monotonic()
        deadline = start + REQUEST_STOP_GRACE
        with server.in_flight_cond:
            while not server.loop_ended.is_set() and (server.in_flight > 0 or not server.flushed()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                server.in_flight_cond.wait(min(remaining, 0.05))
        # (the loop closed the listening socket when the stop began; the process exits next)
        server.pool.shutdown(wait=False, cancel_futures=True)
    return 1 if failed else EXIT_OK


def _finish(code):
    """Exits the process now with `code`. atexit handlers get EXIT_HOOKS_GRACE;
    the pool's threads (a predict or post_predict still running, an __init__
    interrupted by SIGTERM) are not waited for, unlike in a normal interpreter
    exit, so that the process stops within the server's budget."""

    def run_hooks():
        try:
            atexit._run_exitfuncs()
        except BaseException:
            pass

    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGTERM, signal.SIGINT))
        hooks = threading.Thread(target=run_hooks, name="atexit", daemon=True)
        hooks.start()
        hooks.join(EXIT_HOOKS_GRACE)
    finally:
        try:
            _flush_output()
        finally:
            os._exit(code)


def main():
    signal.signal(signal.SIGTERM, _early_signal)
    signal.signal(signal.SIGINT, _early_signal)

    project_dir = os.path.abspath(os.environ.get("CORTEX_PROJECT_DIR") or os.getcwd())
    try:
        load_dotenv(os.path.join(project_dir, ".env"))
    except Exception as e:  # a broken .env must not hide the real problem
        _log("WARNING", "could not load .env: %s" % _describe(e))

    try:
        settings = read_settings()
    except EnvError as e:
        _log("ERROR", "invalid environment: %s" % e)
        return EXIT_BAD_ENV

    try:
        use_requirements(settings)
    except RequirementsError as e:
        text = "cortex: error: failed to install requirements.txt: %s\n" % e
        _write_stderr(text)
        report_init_failure(text)
        return EXIT_INIT_FAILED

    # The handed socket crossed the exec into a virtualenv above; from here on it is this
    # process's (and its forked workers') alone: no program the predictor starts may inherit
    # it and keep the port after the replica is gone.
    if settings["listen_fd"] is not None:
        try:
            os.set_inheritable(settings["listen_fd"], False)
        except OSError:
            pass  # not a valid descriptor: open_socket says so
        os.environ.pop("CORTEX_LISTEN_FD", None)

    if sys.path[:1] != [settings["project_dir"]]:
        sys.path.insert(0, settings["project_dir"])

    if settings["processes"] > 1:
        return Supervisor(settings).run()

    api_name = settings["api_name"]
    _log("INFO", "%s: loading the predictor from %s" % (api_name, settings["predictor_path"]))
    pool = _make_pool(settings)
    try:
        predictor = _load_in_pool(pool, settings)
    except BaseException as e:
        if _stop_requested.is_set():
            return EXIT_OK
        text = _init_failure_text(e)
        _write_stderr(text)
        report_init_failure(text)
        return EXIT_INIT_FAILED

    try:
        server = Server(settings, predictor, pool, open_socket(settings))
        server.server_activate()
    except OSError as e:
        _log("ERROR", "%s: could not listen on 127.0.0.1:%d: %s" % (api_name, settings["port"], e))
        return EXIT_BIND_FAILED

    _install_stop(server)

    port = server.server_address[1]
    _log("INFO", "%s is ready on port %d" % (api_name, port))
    code = _serve(server)
    _log("INFO", "%s: shut down" % api_name)
    return code


# ---------------------------------------------------------------------------
# reporting to the cortex server (Model Bazaar job routes)

REPORT_TIMEOUT = 10.0
# saving waits for the server's deploy lock, which an API being stopped holds for seconds
SAVE_TIMEOUT = 120.0


class ServerError(Exception):
    """The cortex server refused a request, or could not be reached."""


def _call_server(method, path, data=None, token=None, content_type="application/json", timeout=REPORT_TIMEOUT):
    """Sends `data` (bytes) to the cortex server's `path` with `token` (default:
    the replica's job token); the parsed JSON answer. Raises ServerError."""
    url = os.environ.get("CORTEX_SERVER_URL", "")
    token = token or os.environ.get("CORTEX_JOB_TOKEN", "")
    if not url or not token:
        raise ServerError("CORTEX_SERVER_URL and CORTEX_JOB_TOKEN are not set (is this replica run by cortex?)")
    headers = {"Authorization": "Bearer " + token}
    if data is not None:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(url.rstrip("/") + path, data=data, headers=headers, method=method)
    # loopback or not, a proxy meant for the outside world must not see this
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("message", detail)
        except (ValueError, AttributeError):
            pass
        raise ServerError("%s %s: %d %s" % (method, path, e.code, _one_line(detail)))
    except (OSError, ValueError) as e:
        raise ServerError("%s %s: %s" % (method, path, e))
    try:
        return json.loads(body or b"null")
    except ValueError:
        return None


def _report(path, body):
    """POSTs `body` (JSON) to the cortex server's `path` with the replica's job
    token; True when it was accepted. Best effort: without CORTEX_SERVER_URL and
    CORTEX_JOB_TOKEN (a shim run by hand) nothing is sent, and a refusal is only
    logged (the engine tells the server what the replica does anyway)."""
    if not os.environ.get("CORTEX_SERVER_URL") or not os.environ.get("CORTEX_JOB_TOKEN"):
        return False
    try:
        _call_server("POST", path, json.dumps(body).encode("utf-8"))
        return True
    except ServerError as e:
        _log("WARNING", "the cortex server did not take a report: %s" % e)
        return False


def save_model(name, directory):
    """Saves `directory` as a new model named `name`: this model's spec and files,
    with the directory's files over them. Returns the new model's id; it is
    private to this model's owner and can be deployed once this returns."""
    model = os.environ.get("CORTEX_MODEL_ID", "")
    if not model:
        raise ServerError("CORTEX_MODEL_ID is not set (is this replica run by cortex?)")
    if not os.path.isdir(directory):
        raise ValueError("%r is not a directory" % (directory,))
    answer = _call_server(
        "POST",
        "/api/v2/deploy/%s/save" % model,
        json.dumps({"model_name": name}).encode("utf-8"),
        timeout=SAVE_TIMEOUT,
    )
    new_id, update_token = answer["model_id"], answer["update_token"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for entry in sorted(os.listdir(directory)):
            tar.add(os.path.join(directory, entry), arcname=entry)
    _call_server(
        "PUT",
        "/api/v2/deploy/%s/files" % new_id,
        buf.getvalue(),
        update_token,
        "application/gzip",
        timeout=SAVE_TIMEOUT,
    )
    _call_server(
        "POST",
        "/api/v2/deploy/update-status",
        json.dumps({"status": "complete"}).encode("utf-8"),
        update_token,
    )
    return new_id


def report_log(level, message):
    """Records a warning or an error of this deployment (`cortex get`, and the
    Model Bazaar status route, show it)."""
    return _report("/api/v2/deploy/log", {"level": level, "message": str(message)})


def report_status(status):
    return _report("/api/v2/deploy/update-status", {"status": status})


def report_init_failure(text):
    """Tells the server why the replica could not start: the `cortex: error:`
    line as an error of the deployment, and the status `failed`."""
    first = text.splitlines()[0] if text else "the predictor could not be initialised"
    if first.startswith("cortex: error: "):
        first = first[len("cortex: error: "):]
    report_log("error", first)
    report_status("failed")


def _runtime_module():
    """`import cortex_runtime` in predictor code: warn(message) and
    error(message) record messages of the deployment; save_model(name,
    directory) saves a new model."""
    module = types.ModuleType("cortex_runtime")
    module.__doc__ = "Helpers the cortex shim gives predictor code."

    def warn(message):
        """Records a warning of this deployment; shown by `cortex get <api>`."""
        return report_log("warning", message)

    def error(message):
        """Records an error of this deployment (it does not stop the replica)."""
        return report_log("error", message)

    module.warn = warn
    module.error = error
    module.save_model = save_model
    module.ServerError = ServerError
    return module


sys.modules.setdefault("cortex_runtime", _runtime_module())


# ---------------------------------------------------------------------------
# requirements.txt


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
    os.execve(python, [python, "-u", _SHIM_FILE] + sys.argv[1:], env)


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


# ---------------------------------------------------------------------------
# several processes per replica


def _exit_text(status):
    """A wait status in words: `exit status 1`, `killed by signal 9 (SIGKILL)`."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            return "killed by signal %d" % sig
        return "killed by signal %d (%s)" % (sig, name)
    if os.WIFEXITED(status):
        return "exit status %d" % os.WEXITSTATUS(status)
    return "wait status %d" % status


def _pdeathsig_setter():
    """A function that asks the kernel to SIGKILL the calling process when its
    parent dies (Linux), or None. Resolved before forking."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None).prctl
    except Exception:
        return None

    def set_pdeathsig():
        prctl(1, ctypes.c_ulong(signal.SIGKILL))  # PR_SET_PDEATHSIG

    return set_pdeathsig


def _flush_output():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _close_quietly(fd):
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Worker:
    """The supervisor's view of one worker process."""

    def __init__(self, pid, status_r, control_w):
        self.pid = pid
        self.status_r = status_r  # worker -> supervisor: b"ok\n" or b"fail\n<text>"
        self.control_w = control_w  # supervisor -> worker: b"g" once listening; EOF = supervisor gone
        self.buf = bytearray()
        self.ready = False
        self.status = None  # wait status once reaped

    @property
    def alive(self):
        return self.status is None

    def failure_text(self):
        if self.buf.startswith(b"fail\n"):
            return bytes(self.buf[5:]).decode("utf-8", "replace")
        return None


class Supervisor:
    """Binds the port, forks the worker processes, makes the socket listen once
    all of them are initialised, and supervises them (see the module doc)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)

    def __init__(self, settings):
        self.settings = settings
        self.api_name = settings["api_name"]
        self.workers = []
        self.stop_requested = False
        self.sock = None
        self.wake_r = self.wake_w = None

    # -- signals: handlers only set a flag; the wakeup fd interrupts select()
    def _on_signal(self, signum, frame):
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stop_requested = True

    def run(self):
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        for sig in self.SIGNALS:
            signal.signal(sig, self._on_signal)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        if _stop_requested.is_set():
            return EXIT_OK
        try:
            return self._run()
        finally:
            # every path out of _run has reaped the workers
            for w in self.workers:
                _close_quietly(w.status_r)
                _close_quietly(w.control_w)
            if self.sock is not None:
                self.sock.close()

    def _run(self):
        settings, api_name = self.settings, self.api_name
        n = settings["processes"]
        try:
            self.sock = open_socket(settings)
        except OSError as e:
            _log("ERROR", "%s: could not listen on 127.0.0.1:%d: %s" % (api_name, settings["port"], e))
            return EXIT_BIND_FAILED
        # non-blocking: every worker wakes up for a new connection, one gets it
        self.sock.setblocking(False)
        port = self.sock.getsockname()[1]

        set_pdeathsig = _pdeathsig_setter()
        for index in range(1, n + 1):
            if self.stop_requested:
                return self._stop()
            try:
                self._spawn(index, n, set_pdeathsig)
            except OSError as e:
                _log("ERROR", "%s: could not start worker process %d of %d: %s" % (api_name, index, n, e))
                self._terminate()
                return EXIT_WORKER_DIED

        # initialisation: wait for every worker's report
        while True:
            if self.stop_requested:
                return self._stop()
            failed = self._first_init_failure()
            if failed is not None:
                return self._init_failed(failed)
            if all(w.ready for w in self.workers):
                break
            self._wait([w.status_r for w in self.workers if w.status_r is not None])
            self._reap()

        try:
            self.sock.listen(Server.request_queue_size)
        except OSError as e:
            _log("ERROR", "%s: could not listen on 127.0.0.1:%d: %s" % (api_name, port, e))
            self._terminate()
            return EXIT_BIND_FAILED
        for w in self.workers:
            try:
                os.write(w.control_w, b"g")
            except OSError:
                pass  # it died: reaped below
        # the workers hold the socket; this process only supervises
        self.sock.close()
        self.sock = None
        _log("INFO", "%s is ready on port %d (processes_per_replica=%d)" % (api_name, port, n))

        while True:
            if self.stop_requested:
                return self._stop()
            dead = [w for w in self.workers if not w.alive]
            if dead:
                for w in dead:
                    _log(
                        "ERROR",
                        "%s: worker process %d died unexpectedly (%s); stopping the replica"
                        % (api_name, w.pid, _exit_text(w.status)),
                    )
                self._terminate()
                return EXIT_WORKER_DIED
            self._wait([], timeout=1.0)
            self._reap()

    # -- worker processes
    def _spawn(self, index, n, set_pdeathsig):
        status_r, status_w = os.pipe()
        try:
            control_r, control_w = os.pipe()
        except OSError:
            _close_quietly(status_r)
            _close_quietly(status_w)
            raise
        parent_pid = os.getpid()
        inherited = [status_r, control_w, self.wake_r, self.wake_w]
        for w in self.workers:
            inherited += [w.status_r, w.control_w]
        _flush_output()
        # signals stay blocked until the worker has installed its own handlers
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, self.SIGNALS)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            for fd in (status_r, status_w, control_r, control_w):
                _close_quietly(fd)
            raise
        if pid == 0:
            code = 1
            try:
                code = _worker_main(
                    self.settings, self.sock, index, n, status_w, control_r,
                    parent_pid, set_pdeathsig, old_mask, inherited,
                )
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException as e:
                _log("ERROR", "%s: worker process failed: %s" % (self.api_name, _describe(e)), _format_traceback(e))
            finally:
                # never return into the supervisor's code, even if a signal
                # handler raises while exiting (_finish never returns)
                try:
                    signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGTERM, signal.SIGINT))
                finally:
                    _finish(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.close(status_w)
        os.close(control_r)
        self.workers.append(Worker(pid, status_r, control_w))

    def _wait(self, fds, timeout=1.0):
        """Waits for a signal (wakeup fd), a worker report or the timeout, and
        reads the reports that arrived."""
        try:
            readable, _, _ = select.select([self.wake_r] + fds, [], [], timeout)
        except InterruptedError:
            readable = []
        if self.wake_r in readable:
            try:
                while os.read(self.wake_r, 512):
                    pass
            except (BlockingIOError, InterruptedError):
                pass
        for w in self.workers:
            if w.status_r is not None and w.status_r in readable:
                self._read_report(w, block=True)

    def _read_report(self, w, block):
        """Reads what worker `w` has sent: once if `block` (select said it is
        readable), else everything available without blocking."""
        if not block:
            os.set_blocking(w.status_r, False)
        while w.status_r is not None:
            try:
                data = os.read(w.status_r, 65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if data:
                w.buf += data
                if w.buf.startswith(b"ok\n"):
                    w.ready = True
            if not data or w.ready:
                os.close(w.status_r)
                w.status_r = None
                return
            if block:
                return

    def _reap(self):
        for w in self.workers:
            if not w.alive:
                continue
            try:
                pid, status = os.waitpid(w.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = w.pid, 0
            if pid == w.pid:
                w.status = status

    def _first_init_failure(self):
        """The first worker whose initialisation failed (its report complete),
        or that died before the socket listened."""
        for w in self.workers:
            if not w.alive and w.status_r is not None:
                self._read_report(w, block=False)
            if not w.alive or (w.status_r is None and not w.ready and w.failure_text() is not None):
                return w
        return None

    def _init_failed(self, failed):
        # kill the others first so that nothing else reaches stderr
        for w in self.workers:
            if w.alive:
                try:
                    os.kill(w.pid, signal.SIGKILL)
                except OSError:
                    pass
        text = failed.failure_text()
        if text is None:
            if failed.alive:
                what = "closed its pipe to the supervisor"
            else:
                what = "ended (%s)" % _exit_text(failed.status)
            text = (
                "cortex: error: failed to initialise the predictor: WorkerError: worker process %d %s "
                "before the replica became ready\n" % (failed.pid, what)
            )
        _write_stderr(text)
        report_init_failure(text)
        self._reap_all()
        return EXIT_INIT_FAILED

    def _terminate(self):
        """SIGTERM to the live workers, SIGKILL to those left after the grace period."""
        for w in self.workers:
            if w.alive:
                try:
                    os.kill(w.pid, signal.SIGTERM)
                except OSError:
                    pass
        deadline = time.monotonic() + WORKER_STOP_GRACE
        self._reap()
        while any(w.alive for w in self.workers):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wait([], timeout=min(remaining, 0.5))
            self._reap()
        for w in self.workers:
            if w.alive:
                _log("WARNING", "%s: worker process %d did not stop in time; killing it" % (self.api_name, w.pid))
                try:
                    os.kill(w.pid, signal.SIGKILL)
                except OSError:
                    pass
        self._reap_all()

    def _reap_all(self):
        for w in self.workers:
            if w.alive:
                try:
                    _, w.status = os.waitpid(w.pid, 0)
                except ChildProcessError:
                    w.status = 0

    def _stop(self):
        self._terminate()
        _log("INFO", "%s: shut down" % self.api_name)
        return EXIT_OK


def _worker_main(settings, sock, index, n, status_w, control_r, parent_pid, set_pdeathsig, old_mask, inherited):
    """A worker process, right after fork (signals still blocked); returns its
    exit status."""
    signal.set_wakeup_fd(-1)
    for fd in inherited:
        _close_quietly(fd)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, _early_signal)
    signal.signal(signal.SIGINT, _early_signal)
    if set_pdeathsig is not None:
        try:
            set_pdeathsig()
        except Exception:
            pass
    if os.getppid() != parent_pid:  # the supervisor died before prctl
        return 1
    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    api_name = settings["api_name"]
    _log(
        "INFO",
        "%s: loading the predictor from %s (process %d of %d)" % (api_name, settings["predictor_path"], index, n),
    )
    pool = _make_pool(settings)
    try:
        predictor = _load_in_pool(pool, settings)
    except BaseException as e:
        if _stop_requested.is_set():
            return EXIT_OK
        _write_all(status_w, b"fail\n" + _init_failure_text(e).encode("utf-8", "replace"))
        return EXIT_INIT_FAILED
    _write_all(status_w, b"ok\n")
    os.close(status_w)

    # wait until the supervisor makes the socket listen; EOF: it is gone (short
    # waits: this thread must run the signal handlers promptly)
    while not select.select([control_r], [], [], 0.2)[0]:
        pass
    if os.read(control_r, 1) != b"g":
        return 1

    server = Server(settings, predictor, pool, sock, gate_accept=True)
    stop = _install_stop(server)

    def watch_supervisor():
        # the supervisor never writes again: EOF means it is gone
        try:
            os.read(control_r, 1)
        except OSError:
            pass
        stop()

    threading.Thread(target=watch_supervisor, name="watch_supervisor", daemon=True).start()
    return _serve(server)


if __name__ == "__main__":
    try:
        _code = main()
    except SystemExit as e:  # a signal before the handlers that do not raise
        _code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        _code = 1
    _finish(_code)
