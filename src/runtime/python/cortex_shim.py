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
    CORTEX_THREADS_PER_PROCESS   max concurrent `predict` calls per process, >= 1 (default 1)
    CORTEX_PROCESSES_PER_REPLICA worker processes serving the port, >= 1 (default 1)
    CORTEX_API_NAME              the API's name, for log lines (default "api")
    CORTEX_VENVS_DIR             where virtualenvs for requirements.txt are kept (optional)

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

Processes: with CORTEX_PROCESSES_PER_REPLICA=1 the predictor runs in this
process. With N > 1 this process binds the port (without listening yet) and
forks N worker processes; each imports the predictor, constructs its own
PythonPredictor and serves up to CORTEX_THREADS_PER_PROCESS concurrent
predictions on the shared socket. The socket starts listening (so /healthz
answers) only once every worker is initialised; if one fails, the others are
killed and the shim exits 3 with that worker's error. This process then only
supervises: SIGTERM/SIGINT are forwarded to the workers (SIGKILL after 10 s),
and if a worker dies the others are stopped and the shim exits 5 (the server
restarts the whole replica). Workers die with this process (PR_SET_PDEATHSIG on
Linux; elsewhere they stop when their pipe to this process closes).

HTTP (HTTP/1.1, keep-alive, Content-Length always sent):
    GET  /healthz      200 {"status": "ok"} (503 while shutting down)
    POST <any path>    prediction
    GET  <other path>  200 {"message": "make a prediction by sending a post request ..."}
"""

import datetime
import fcntl
import hashlib
import http.server
import importlib.util
import inspect
import json
import os
import select
import signal
import shutil
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

EXIT_OK = 0
EXIT_BAD_ENV = 2
EXIT_INIT_FAILED = 3
EXIT_BIND_FAILED = 4
EXIT_WORKER_DIED = 5

INIT_ARGS = ("config", "job_spec", "python_client")
PREDICT_ARGS = ("payload", "query_params", "headers")
POST_PREDICT_ARGS = ("response", "payload", "query_params", "headers")

GET_MESSAGE = "make a prediction by sending a post request to this endpoint with a json payload"

# idle keep-alive connections are closed after this many seconds; well above the
# idle timeout of common client pools so that a pooled connection is not closed
# under a client's feet
KEEP_ALIVE_TIMEOUT = 900

# several processes: how long the supervisor lets workers finish after SIGTERM
# before it SIGKILLs them
WORKER_STOP_GRACE = 10.0
# several processes: a worker whose prediction slots are all taken waits up to
# this long before accepting a new connection, so that an idle worker gets it
ACCEPT_DEFER = 1.0

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


def _trim(te, seen):
    if te is None or id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if _keep_frame(f)])
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

    threads_text = env.get("CORTEX_THREADS_PER_PROCESS", "").strip() or "1"
    try:
        threads = int(threads_text)
    except ValueError:
        raise EnvError("CORTEX_THREADS_PER_PROCESS is not an integer: %r" % threads_text) from None
    if threads < 1:
        raise EnvError("CORTEX_THREADS_PER_PROCESS must be at least 1, got %d" % threads)

    processes_text = env.get("CORTEX_PROCESSES_PER_REPLICA", "").strip() or "1"
    try:
        processes = int(processes_text)
    except ValueError:
        raise EnvError("CORTEX_PROCESSES_PER_REPLICA is not an integer: %r" % processes_text) from None
    if processes < 1:
        raise EnvError("CORTEX_PROCESSES_PER_REPLICA must be at least 1, got %d" % processes)

    api_name = env.get("CORTEX_API_NAME", "").strip() or "api"
    return {
        "port": port,
        "project_dir": project_dir,
        "predictor_path": predictor_path,
        "config": config,
        "threads": threads,
        "processes": processes,
        "api_name": api_name,
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

    def predict(self, values):
        return self.instance.predict(**{n: values[n] for n in self.predict_args})


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
    values = {"config": settings["config"], "job_spec": None, "python_client": None}
    instance = cls(**{n: values[n] for n in init_args})

    predict_args = _select_args(instance.predict, PREDICT_ARGS, "PythonPredictor.predict")
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
# HTTP


class BadRequest(Exception):
    pass


def _is_json(content_type):
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address, settings, predictor, sock=None):
        """Binds and listens on `address`, or, with `sock` (a worker process),
        serves on that already bound socket, which its supervisor makes listen."""
        self.settings = settings
        self.predictor = predictor
        self.semaphore = threading.BoundedSemaphore(settings["threads"])
        self.post_pool = None
        if predictor.post_predict is not None:
            self.post_pool = ThreadPoolExecutor(
                max_workers=settings["threads"], thread_name_prefix="post_predict"
            )
        self.shutting_down = threading.Event()
        self.in_flight = 0
        self.in_flight_cond = threading.Condition()
        # worker processes share the listening socket: a worker whose prediction
        # slots are taken (predictions in flight plus connections accepted but
        # whose first request has not been read yet) defers accepting, so that
        # concurrent connections spread over the workers
        self.gate_accept = sock is not None
        self.pending = set()
        if sock is None:
            super().__init__(address, Handler)
        else:
            super().__init__(address, Handler, bind_and_activate=False)
            self.socket.close()
            self.socket = sock
            self.server_address = sock.getsockname()
            self.server_name, self.server_port = self.server_address[:2]

    def get_request(self):
        if not self.gate_accept:
            return super().get_request()
        deadline = time.monotonic() + ACCEPT_DEFER
        with self.in_flight_cond:
            while (
                self.in_flight + len(self.pending) >= self.settings["threads"]
                and not self.shutting_down.is_set()
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.in_flight_cond.wait(remaining)
        # the socket is non-blocking: another worker may have taken the
        # connection (BlockingIOError, an OSError, makes the caller skip it)
        conn, addr = self.socket.accept()
        with self.in_flight_cond:
            self.pending.add(conn)
        return conn, addr

    def release_pending(self, conn):
        """Marks an accepted connection as no longer waiting for its first
        request (call with in_flight_cond held)."""
        if conn in self.pending:
            self.pending.discard(conn)
            self.in_flight_cond.notify_all()

    def shutdown_request(self, request):
        if self.gate_accept:
            with self.in_flight_cond:
                self.release_pending(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        _log("ERROR", "error while handling a connection: %s" % _describe(exc), _format_traceback(exc))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body are separate writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every keep-alive response
    disable_nagle_algorithm = True
    server_version = "cortex"
    timeout = KEEP_ALIVE_TIMEOUT

    def version_string(self):
        return self.server_version

    # -- logging: quiet per request, errors only
    def log_message(self, format, *args):
        pass

    def log_error(self, format, *args):
        msg = format % args if args else format
        if msg.startswith("Request timed out"):
            return
        _log("ERROR", "%s: %s" % (self.server.settings["api_name"], _one_line(msg)))

    # -- helpers
    def _send(self, status, body, content_type, close=False):
        if isinstance(body, str):
            body = body.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _send_json(self, status, obj, close=False):
        self._send(status, json.dumps(obj), "application/json", close=close)

    def _read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise BadRequest("incomplete chunked request body")
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise BadRequest("invalid chunk size in request body") from None
                if size == 0:
                    # trailers, up to the empty line
                    while True:
                        trailer = self.rfile.readline(65537)
                        if trailer in (b"\r\n", b"\n", b""):
                            break
                    return b"".join(chunks)
                data = self.rfile.read(size)
                if len(data) < size:
                    raise BadRequest("incomplete chunked request body")
                chunks.append(data)
                self.rfile.readline(3)  # CRLF after the chunk
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            raise BadRequest("invalid Content-Length") from None
        data = self.rfile.read(n) if n else b""
        if len(data) < n:
            raise BadRequest("incomplete request body")
        return data

    def _release_pending(self):
        server = self.server
        if server.gate_accept:
            with server.in_flight_cond:
                server.release_pending(self.request)

    # -- routes
    def do_GET(self):
        self._release_pending()
        path = urllib.parse.urlsplit(self.path).path
        if path == "/healthz":
            if self.server.shutting_down.is_set():
                self._send_json(503, {"status": "shutting down"}, close=True)
            else:
                self._send_json(200, {"status": "ok"})
            return
        self._send_json(200, {"message": GET_MESSAGE})

    do_HEAD = do_GET

    def _not_allowed(self):
        self._release_pending()
        try:
            self._read_body()
        except BadRequest:
            self.close_connection = True
        body = json.dumps({"kind": "method_not_allowed", "message": "method %s is not allowed; send a POST to predict" % self.command}).encode()
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD, POST")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def do_POST(self):
        server = self.server
        if server.shutting_down.is_set():
            self._release_pending()
            self._send_json(503, {"kind": "not_ready", "message": "the api is shutting down"}, close=True)
            return
        with server.in_flight_cond:
            server.in_flight += 1
            if server.gate_accept:
                server.release_pending(self.request)
        try:
            self._predict()
        finally:
            with server.in_flight_cond:
                server.in_flight -= 1
                server.in_flight_cond.notify_all()

    def _predict(self):
        server = self.server
        api_name = server.settings["api_name"]
        try:
            body = self._read_body()
        except BadRequest as e:
            self._send_json(400, {"kind": "bad_request", "message": str(e)}, close=True)
            return

        content_type = self.headers.get("Content-Type", "")
        if _is_json(content_type):
            try:
                payload = json.loads(body)
            except ValueError as e:
                self._send_json(400, {"kind": "bad_request", "message": "the request body is not valid JSON: %s" % e})
                return
        else:
            payload = body

        query = urllib.parse.urlsplit(self.path).query
        query_params = {}
        for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True):
            query_params[k] = v  # the last value wins when repeated
        headers = {k.lower(): v for k, v in self.headers.items()}
        values = {"payload": payload, "query_params": query_params, "headers": headers}

        try:
            with server.semaphore:
                result = server.predictor.predict(values)
            if isinstance(result, (bytes, bytearray, memoryview)):
                body, ctype = bytes(result), "application/octet-stream"
            elif isinstance(result, str):
                body, ctype = result.encode("utf-8"), "text/plain; charset=utf-8"
            else:
                try:
                    body, ctype = json.dumps(result).encode("utf-8"), "application/json"
                except (TypeError, ValueError) as e:
                    raise TypeError(
                        "the value returned by predict() is not JSON serialisable: %s" % e
                    ) from e
        except Exception as e:
            _log("ERROR", "%s: exception in predict: %s" % (api_name, _describe(e)), _format_traceback(e))
            self._send_json(500, {"kind": "internal", "message": "internal server error"})
            return

        self._send(200, body, ctype)

        if server.post_pool is not None:
            values["response"] = result
            args = {n: values[n] for n in server.predictor.post_predict_args}
            try:
                server.post_pool.submit(_run_post_predict, server.predictor.post_predict, args, api_name)
            except RuntimeError:  # pool shut down
                pass


def _run_post_predict(fn, args, api_name):
    try:
        fn(**args)
    except Exception as e:
        _log("ERROR", "%s: exception in post_predict: %s" % (api_name, _describe(e)), _format_traceback(e))


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
            server.shutting_down.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return stop


def _serve(server):
    """Serves until stopped, then lets in-flight predictions finish (bounded)."""
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        with server.in_flight_cond:
            server.in_flight_cond.wait_for(lambda: server.in_flight == 0, timeout=10)
        if server.post_pool is not None:
            server.post_pool.shutdown(wait=False, cancel_futures=True)
        server.server_close()


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
        _write_stderr("cortex: error: failed to install requirements.txt: %s\n" % e)
        return EXIT_INIT_FAILED

    if sys.path[:1] != [settings["project_dir"]]:
        sys.path.insert(0, settings["project_dir"])

    if settings["processes"] > 1:
        return Supervisor(settings).run()

    api_name = settings["api_name"]
    _log("INFO", "%s: loading the predictor from %s" % (api_name, settings["predictor_path"]))
    try:
        predictor = load_predictor(settings)
    except BaseException as e:
        if _stop_requested.is_set():
            return EXIT_OK
        _write_stderr(_init_failure_text(e))
        return EXIT_INIT_FAILED

    try:
        server = Server(("127.0.0.1", settings["port"]), settings, predictor)
    except OSError as e:
        _log("ERROR", "%s: could not listen on 127.0.0.1:%d: %s" % (api_name, settings["port"], e))
        return EXIT_BIND_FAILED

    _install_stop(server)

    port = server.server_address[1]
    _log("INFO", "%s is ready on port %d" % (api_name, port))
    _serve(server)
    _log("INFO", "%s: shut down" % api_name)
    return EXIT_OK


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
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(("127.0.0.1", settings["port"]))
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
                # handler raises while flushing
                try:
                    signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGTERM, signal.SIGINT))
                    _flush_output()
                finally:
                    os._exit(code)
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
    try:
        predictor = load_predictor(settings)
    except BaseException as e:
        if _stop_requested.is_set():
            return EXIT_OK
        _write_all(status_w, b"fail\n" + _init_failure_text(e).encode("utf-8", "replace"))
        return EXIT_INIT_FAILED
    _write_all(status_w, b"ok\n")
    os.close(status_w)

    # wait until the supervisor makes the socket listen; EOF: it is gone
    if os.read(control_r, 1) != b"g":
        return 1

    server = Server(None, settings, predictor, sock=sock)
    stop = _install_stop(server)

    def watch_supervisor():
        # the supervisor never writes again: EOF means it is gone
        try:
            os.read(control_r, 1)
        except OSError:
            pass
        stop()

    threading.Thread(target=watch_supervisor, name="watch_supervisor", daemon=True).start()
    _serve(server)
    if server.post_pool is not None:
        server.post_pool.shutdown(wait=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
