"""cortex python predictor shim (realtime).

Runs one user `PythonPredictor` (cortex v0.2x interface) behind a small HTTP
server. Python standard library only: this package ships inside the cortex
binary and is written to disk by the cortex server (beside it, the entry file
`cortex_shim.py`), which starts it as

    python3 -u cortex_shim.py

with the project directory as the working directory and these variables:

    CORTEX_PORT                  port to serve on (bound on 127.0.0.1), required
    CORTEX_PROJECT_DIR           absolute project directory (default: cwd)
    CORTEX_PREDICTOR_PATH        predictor file, relative to the project dir, required
    CORTEX_PREDICTOR_CONFIG      JSON object passed as `config` to __init__ (default {})
    CORTEX_PREDICTOR_TYPE        "python" (a PythonPredictor, the default) or "onnx" (an
                                 ONNXPredictor, whose __init__ may take `onnx_client`:
                                 see `onnx_client`; onnxruntime and numpy are installed
                                 into the API's virtualenv)
    CORTEX_MODELS                the predictor's model_path or models as JSON (required for
                                 onnx; a python predictor then gets `python_client`): see
                                 `model_store`, `model_sources`
    CORTEX_MODEL_RELOAD_SECONDS  how often the models' locations are checked for new
                                 versions (default 10)
    CORTEX_API_VERSION           the API version's hash (a URL's model is fetched once per
                                 version)
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

requirements.txt and dependencies.sh: when the project has either and
CORTEX_VENVS_DIR is set, the shim makes a virtualenv under CORTEX_VENVS_DIR
named by the hash of both files and of this Python, created with
--system-site-packages, runs dependencies.sh (`bash -e`, in the project
directory) and then installs requirements.txt (pip) in it, once for every
replica with the same files, then re-executes itself with that virtualenv
activated (its bin first on PATH, VIRTUAL_ENV set). An onnx predictor always
has one, with onnxruntime and numpy installed too. With `--prepare` it only
makes the virtualenv (and downloads an onnx model given by URL) and exits 0
(the server runs that first, outside the replica's memory limit). A failure
exits 3 with the stderr line `cortex: error: failed to prepare the virtualenv:
...` (or `failed to fetch the model: ...`).

With `--spare` (the server's spare interpreters, see `spare.py`), the process
first waits for the start of the replica it becomes, then runs as above.

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
                       (onnx: and "model_signatures": {"_cortex_default": {<input name>:
                       {"shape": [...], "type": "float32"}}}, as cortex 0.21 answered)
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

import os
import signal
import sys
import traceback

from .lifecycle import _early_signal, _finish, _install_stop, _serve, _stop_requested
from .log import _describe, _log, _write_stderr
from .model_store import store_for
from .models import ModelError
from .predictor import _init_failure_text, _load_in_pool, _make_pool
from .reporting import report_init_failure
from .server import Server, open_socket
from .settings import EXIT_BAD_ENV, EXIT_BIND_FAILED, EXIT_INIT_FAILED, EXIT_OK, EnvError, load_dotenv, read_settings
from .supervisor import Supervisor
from .venv import RequirementsError, prepare, use_requirements


def _init_failed(message):
    """Says why the replica cannot start (stderr and the server) and gives its exit status."""
    text = "cortex: error: %s\n" % message
    _write_stderr(text)
    report_init_failure(text)
    return EXIT_INIT_FAILED


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

    if "--prepare" in sys.argv[1:]:
        # The server's preparation run: make the virtualenv (and fetch an onnx model), then exit.
        try:
            prepare(settings)
        except RequirementsError as e:
            return _init_failed("failed to prepare the virtualenv: %s" % e)
        store = store_for(settings)
        if store is not None:
            try:
                store.prefetch()
            except ModelError as e:
                return _init_failed("failed to fetch the model: %s" % e)
        return EXIT_OK

    try:
        use_requirements(settings)
    except RequirementsError as e:
        return _init_failed("failed to prepare the virtualenv: %s" % e)

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


def run():
    """Runs the shim, then exits the process with its status (never returns). A spare
    interpreter (`--spare`) first waits to be given the replica it becomes."""
    if sys.argv[1:] == ["--spare"]:
        from .spare import become_replica

        become_replica()
    try:
        code = main()
    except SystemExit as e:  # a signal before the handlers that do not raise
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    _finish(code)
