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
    CORTEX_THREADS_PER_PROCESS   max concurrent `predict` calls, >= 1 (default 1)
    CORTEX_API_NAME              the API's name, for log lines (default "api")

Exit status: 0 after SIGTERM/SIGINT, 2 if the environment above is invalid,
3 if the predictor could not be imported or initialised (the first stderr line
is then `cortex: error: failed to initialise the predictor: <Type>: <message>`),
4 if the port could not be bound.

HTTP (HTTP/1.1, keep-alive, Content-Length always sent):
    GET  /healthz      200 {"status": "ok"} (503 while shutting down)
    POST <any path>    prediction
    GET  <other path>  200 {"message": "make a prediction by sending a post request ..."}
"""

import datetime
import http.server
import importlib.util
import inspect
import json
import os
import signal
import sys
import threading
import traceback
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

EXIT_OK = 0
EXIT_BAD_ENV = 2
EXIT_INIT_FAILED = 3
EXIT_BIND_FAILED = 4

INIT_ARGS = ("config", "job_spec", "python_client")
PREDICT_ARGS = ("payload", "query_params", "headers")
POST_PREDICT_ARGS = ("response", "payload", "query_params", "headers")

GET_MESSAGE = "make a prediction by sending a post request to this endpoint with a json payload"

# idle keep-alive connections are closed after this many seconds; well above the
# idle timeout of common client pools so that a pooled connection is not closed
# under a client's feet
KEEP_ALIVE_TIMEOUT = 900

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

    api_name = env.get("CORTEX_API_NAME", "").strip() or "api"
    return {
        "port": port,
        "project_dir": project_dir,
        "predictor_path": predictor_path,
        "config": config,
        "threads": threads,
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

    def __init__(self, address, settings, predictor):
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
        super().__init__(address, Handler)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        _log("ERROR", "error while handling a connection: %s" % _describe(exc), _format_traceback(exc))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
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

    # -- routes
    def do_GET(self):
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
        try:
            self._read_body()
        except BadRequest:
            self.close_connection = True
        body = json.dumps({"error": "method %s is not allowed" % self.command}).encode()
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
            self._send_json(503, {"error": "the api is shutting down"}, close=True)
            return
        with server.in_flight_cond:
            server.in_flight += 1
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
            self._send_json(400, {"error": str(e)}, close=True)
            return

        content_type = self.headers.get("Content-Type", "")
        if _is_json(content_type):
            try:
                payload = json.loads(body)
            except ValueError as e:
                self._send_json(400, {"error": "the request body is not valid JSON: %s" % e})
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
            self._send_json(500, {"error": "internal server error"})
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

    if sys.path[:1] != [settings["project_dir"]]:
        sys.path.insert(0, settings["project_dir"])

    api_name = settings["api_name"]
    _log("INFO", "%s: loading the predictor from %s" % (api_name, settings["predictor_path"]))
    try:
        predictor = load_predictor(settings)
    except BaseException as e:
        if _stop_requested.is_set():
            return EXIT_OK
        with _output_lock:
            sys.stderr.write("cortex: error: failed to initialise the predictor: %s\n" % _describe(e))
            if not isinstance(e, PredictorError):
                sys.stderr.write(_format_traceback(e))
            sys.stderr.flush()
        return EXIT_INIT_FAILED

    try:
        server = Server(("127.0.0.1", settings["port"]), settings, predictor)
    except OSError as e:
        _log("ERROR", "%s: could not listen on 127.0.0.1:%d: %s" % (api_name, settings["port"], e))
        return EXIT_BIND_FAILED

    def stop(signum, frame):
        if not server.shutting_down.is_set():
            server.shutting_down.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    port = server.server_address[1]
    _log("INFO", "%s is ready on port %d" % (api_name, port))
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        # let in-flight predictions finish (bounded), then exit
        with server.in_flight_cond:
            server.in_flight_cond.wait_for(lambda: server.in_flight == 0, timeout=10)
        if server.post_pool is not None:
            server.post_pool.shutdown(wait=False, cancel_futures=True)
        server.server_close()
    _log("INFO", "%s: shut down" % api_name)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
