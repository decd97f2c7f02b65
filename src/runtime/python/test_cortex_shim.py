"""Tests for cortex_shim.py (stdlib unittest).

Run: cd src/runtime/python && python3 -m unittest -v test_cortex_shim
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest

SHIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cortex_shim.py")
INIT_FAILED_PREFIX = "cortex: error: failed to initialise the predictor: "
DEADLINE = 15.0  # seconds; generous for slow CI machines


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=DEADLINE, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


class Shim:
    """A running shim process on a temporary project."""

    def __init__(self, predictor_src, config=None, threads=1, files=None, env=None, api_name="test-api"):
        self.dir = tempfile.mkdtemp(prefix="cortex-shim-test-")
        with open(os.path.join(self.dir, "predictor.py"), "w") as f:
            f.write(textwrap.dedent(predictor_src))
        for name, content in (files or {}).items():
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(textwrap.dedent(content))
        self.port = free_port()
        self.stdout_path = os.path.join(self.dir, ".stdout")
        self.stderr_path = os.path.join(self.dir, ".stderr")
        full_env = dict(os.environ)
        for k in list(full_env):
            if k.startswith("CORTEX_"):
                del full_env[k]
        full_env.update(
            {
                "CORTEX_PORT": str(self.port),
                "CORTEX_PROJECT_DIR": self.dir,
                "CORTEX_PREDICTOR_PATH": "predictor.py",
                "CORTEX_PREDICTOR_CONFIG": json.dumps(config if config is not None else {}),
                "CORTEX_THREADS_PER_PROCESS": str(threads),
                "CORTEX_API_NAME": api_name,
                "PYTHONPATH": self.dir,
            }
        )
        full_env.update(env or {})
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", SHIM],
            cwd=self.dir,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
        )

    def stdout(self):
        with open(self.stdout_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stderr(self):
        with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_ready(self):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(
                    "shim exited with %s before becoming ready; stderr:\n%s" % (self.proc.returncode, self.stderr())
                )
            try:
                status, _, _ = self.request("GET", "/healthz", timeout=1)
                return status == 200
            except OSError:
                return False

        wait_until(ready, what="the shim to become ready")
        return self

    def wait_exit(self, timeout=DEADLINE):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("shim did not exit; stderr:\n%s" % self.stderr()) from None

    def request(self, method, path, body=None, headers=None, timeout=DEADLINE):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type"), resp.read()
        finally:
            conn.close()

    def post_json(self, path, obj, **kw):
        return self.request("POST", path, json.dumps(obj), {"Content-Type": "application/json"}, **kw)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()
        self._err.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class ShimTestCase(unittest.TestCase):
    def start(self, *args, ready=True, **kwargs):
        shim = Shim(*args, **kwargs)
        self.addCleanup(shim.close)
        return shim.wait_ready() if ready else shim


ECHO = """
class PythonPredictor:
    def __init__(self, config):
        self.config = config

    def predict(self, payload, query_params, headers):
        if isinstance(payload, bytes):
            payload = {"bytes": list(payload)}
        return {"payload": payload, "query_params": query_params, "headers": headers, "config": self.config}
"""

RETURNS = """
class PythonPredictor:
    def __init__(self, config):
        pass

    def predict(self, query_params):
        kind = query_params.get("kind")
        if kind == "str":
            return "héllo"
        if kind == "bytes":
            return b"\\x00\\x01\\xff"
        if kind == "dict":
            return {"a": [1, 2.5, None, True]}
        if kind == "none":
            return None
        if kind == "unserialisable":
            return {"x": object()}
        return 42
"""


class TestBasics(ShimTestCase):
    @classmethod
    def setUpClass(cls):
        cls.shim = Shim(ECHO, config={"model_path": "model.json", "k": [1, 2]}, api_name="echo-api")
        cls.shim.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.shim.close()

    def test_healthz(self):
        status, ctype, body = self.shim.request("GET", "/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(ctype, "application/json")
        self.assertEqual(json.loads(body), {"status": "ok"})

    def test_get_other_path(self):
        for path in ("/", "/echo-api", "/anything?x=1"):
            status, ctype, body = self.shim.request("GET", path)
            self.assertEqual(status, 200)
            self.assertEqual(ctype, "application/json")
            self.assertEqual(
                json.loads(body),
                {"message": "make a prediction by sending a post request to this endpoint with a json payload"},
            )

    def test_json_round_trip(self):
        payload = {"text": "héllo", "n": [1, 2.5, None, True], "nested": {"a": {}}}
        status, ctype, body = self.shim.post_json("/", payload)
        self.assertEqual(status, 200)
        self.assertEqual(ctype, "application/json")
        self.assertEqual(json.loads(body)["payload"], payload)

    def test_json_suffix_content_type(self):
        status, _, body = self.shim.request(
            "POST", "/", b"[1, 2]", {"Content-Type": "application/vnd.api+json; charset=utf-8"}
        )
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["payload"], [1, 2])

    def test_config_passed_to_init(self):
        _, _, body = self.shim.post_json("/", {})
        self.assertEqual(json.loads(body)["config"], {"model_path": "model.json", "k": [1, 2]})

    def test_bytes_payload(self):
        data = bytes([0, 1, 2, 255])
        status, _, body = self.shim.request("POST", "/", data, {"Content-Type": "application/octet-stream"})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["payload"], {"bytes": [0, 1, 2, 255]})
        # no Content-Type at all: bytes too
        conn = http.client.HTTPConnection("127.0.0.1", self.shim.port, timeout=DEADLINE)
        try:
            conn.putrequest("POST", "/", skip_accept_encoding=True)
            conn.putheader("Content-Length", "3")
            conn.endheaders(b"abc")
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            self.assertEqual(json.loads(resp.read())["payload"], {"bytes": list(b"abc")})
        finally:
            conn.close()

    def test_chunked_body(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.shim.port, timeout=DEADLINE)
        try:
            conn.request(
                "POST", "/", body=iter([b'{"a":', b" 1}"]), headers={"Content-Type": "application/json"},
                encode_chunked=True,
            )
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            self.assertEqual(json.loads(resp.read())["payload"], {"a": 1})
        finally:
            conn.close()

    def test_invalid_json_is_400(self):
        status, ctype, body = self.shim.request("POST", "/", b"{not json", {"Content-Type": "application/json"})
        self.assertEqual(status, 400)
        self.assertEqual(ctype, "application/json")
        err = json.loads(body)["message"]
        self.assertTrue(err.startswith("the request body is not valid JSON: "), err)
        # an empty JSON body is invalid too (cortex e2e readiness probe)
        status, _, _ = self.shim.request("POST", "/", b"", {"Content-Type": "application/json"})
        self.assertEqual(status, 400)

    def test_query_params_and_headers(self):
        status, _, body = self.shim.post_json("/p?a=1&b=x&a=2&empty=", {}, )
        self.assertEqual(status, 200)
        out = json.loads(body)
        self.assertEqual(out["query_params"], {"a": "2", "b": "x", "empty": ""})
        status, _, body = self.shim.request(
            "POST", "/", b"{}", {"Content-Type": "application/json", "X-Custom-Header": "Value"}
        )
        headers = json.loads(body)["headers"]
        self.assertEqual(headers["x-custom-header"], "Value")
        self.assertEqual(headers["content-type"], "application/json")
        self.assertTrue(all(k == k.lower() for k in headers))

    def test_keep_alive(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.shim.port, timeout=DEADLINE)
        try:
            conn.connect()
            sock = conn.sock
            for i in range(5):
                conn.request("POST", "/", body=json.dumps({"i": i}), headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                self.assertIsNotNone(resp.getheader("Content-Length"))
                self.assertEqual(json.loads(resp.read())["payload"], {"i": i})
                conn.request("GET", "/healthz")
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                resp.read()
            self.assertIs(conn.sock, sock, "the connection was not kept alive")
        finally:
            conn.close()

    def test_ready_line_on_stdout(self):
        out = wait_until(lambda: "is ready on port" in self.shim.stdout() and self.shim.stdout(), what="ready line")
        line = [l for l in out.splitlines() if "is ready on port" in l][0]
        self.assertRegex(
            line, r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+:cortex:pid-\d+:INFO:echo-api is ready on port %d$" % self.shim.port
        )

    def test_quiet_per_request(self):
        for _ in range(3):
            self.shim.post_json("/", {})
        self.assertEqual(self.shim.stderr(), "")
        self.assertNotIn("POST", self.shim.stdout())


class TestReturnTypes(ShimTestCase):
    @classmethod
    def setUpClass(cls):
        cls.shim = Shim(RETURNS)
        cls.shim.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.shim.close()

    def test_str(self):
        status, ctype, body = self.shim.request("POST", "/?kind=str")
        self.assertEqual((status, ctype, body.decode("utf-8")), (200, "text/plain; charset=utf-8", "héllo"))

    def test_bytes(self):
        status, ctype, body = self.shim.request("POST", "/?kind=bytes")
        self.assertEqual((status, ctype, body), (200, "application/octet-stream", b"\x00\x01\xff"))

    def test_dict(self):
        status, ctype, body = self.shim.request("POST", "/?kind=dict")
        self.assertEqual((status, ctype), (200, "application/json"))
        self.assertEqual(json.loads(body), {"a": [1, 2.5, None, True]})

    def test_other_json(self):
        self.assertEqual(self.shim.request("POST", "/?kind=none")[1:], ("application/json", b"null"))
        self.assertEqual(self.shim.request("POST", "/")[1:], ("application/json", b"42"))

    def test_unserialisable_is_500(self):
        status, ctype, body = self.shim.request("POST", "/?kind=unserialisable")
        self.assertEqual((status, ctype), (500, "application/json"))
        self.assertEqual(json.loads(body), {"kind": "internal", "message": "internal server error"})
        err = wait_until(lambda: "not JSON serialisable" in self.shim.stderr() and self.shim.stderr(), what="stderr")
        self.assertIn("TypeError", err)


class TestDeclaredArguments(ShimTestCase):
    def test_payload_only(self):
        shim = self.start(
            """
            class PythonPredictor:
                def __init__(self, config):
                    pass
                def predict(self, payload):
                    return {"got": payload}
            """
        )
        status, _, body = shim.post_json("/?x=1", {"a": 1})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {"got": {"a": 1}})

    def test_query_params_and_headers_only(self):
        shim = self.start(
            """
            class PythonPredictor:
                def __init__(self, config):
                    pass
                def predict(self, query_params, headers):
                    return {"q": query_params, "h": headers.get("x-key")}
            """
        )
        status, _, body = shim.request("POST", "/?x=1", b"ignored", {"X-Key": "k"})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {"q": {"x": "1"}, "h": "k"})

    def test_no_args_and_no_init(self):
        shim = self.start(
            """
            class PythonPredictor:
                def predict(self):
                    return "ok"
            """
        )
        self.assertEqual(shim.request("POST", "/")[2], b"ok")

    def test_init_optional_args(self):
        shim = self.start(
            """
            class PythonPredictor:
                def __init__(self, config, job_spec=None, python_client=None):
                    self.seen = [config, job_spec, python_client]
                def predict(self, payload):
                    return self.seen
            """,
            config={"a": 1},
        )
        self.assertEqual(json.loads(shim.request("POST", "/")[2]), [{"a": 1}, None, None])


class TestErrors(ShimTestCase):
    def test_exception_in_predict_is_500_with_traceback(self):
        shim = self.start(
            """
            class PythonPredictor:
                def __init__(self, config):
                    pass
                def predict(self, payload):
                    return helper(payload)

            def helper(payload):
                return 1 / 0
            """,
            api_name="broken-api",
        )
        status, ctype, body = shim.post_json("/", {"a": 1})
        self.assertEqual((status, ctype), (500, "application/json"))
        self.assertEqual(json.loads(body), {"kind": "internal", "message": "internal server error"})
        err = wait_until(lambda: "ZeroDivisionError" in shim.stderr() and shim.stderr(), what="traceback on stderr")
        lines = err.splitlines()
        self.assertRegex(lines[0], r":cortex:pid-\d+:ERROR:broken-api: exception in predict: ZeroDivisionError: division by zero$")
        self.assertIn("Traceback (most recent call last):", err)
        self.assertIn("in helper", err)
        self.assertIn("return 1 / 0", err)
        self.assertNotIn("cortex_shim.py", err)
        # the server keeps serving
        self.assertEqual(shim.request("GET", "/healthz")[0], 200)

    def assert_init_failure(self, shim, first_line_suffix):
        self.assertEqual(shim.wait_exit(), 3)
        lines = shim.stderr().splitlines()
        self.assertTrue(lines, "nothing on stderr")
        self.assertEqual(lines[0], INIT_FAILED_PREFIX + first_line_suffix)
        return shim.stderr()

    def test_init_exception_exits_3(self):
        shim = self.start(
            """
            class PythonPredictor:
                def __init__(self, config):
                    raise ValueError("could not load model\\nfrom " + config["model_path"])
                def predict(self, payload):
                    return "unreachable"
            """,
            config={"model_path": "model.json"},
            ready=False,
        )
        err = self.assert_init_failure(shim, "ValueError: could not load model from model.json")
        self.assertIn("Traceback (most recent call last):", err)
        self.assertIn('raise ValueError("could not load model', err)

    def test_import_error_exits_3(self):
        shim = self.start(
            """
            import a_module_that_does_not_exist_anywhere
            class PythonPredictor:
                def predict(self, payload):
                    return 1
            """,
            ready=False,
        )
        err = self.assert_init_failure(
            shim, "ModuleNotFoundError: No module named 'a_module_that_does_not_exist_anywhere'"
        )
        self.assertIn("predictor.py", err)

    def test_syntax_error_exits_3(self):
        shim = self.start("class PythonPredictor(:\n    pass\n", ready=False)
        self.assertEqual(shim.wait_exit(), 3)
        first = shim.stderr().splitlines()[0]
        self.assertTrue(first.startswith(INIT_FAILED_PREFIX + "SyntaxError: "), first)
        self.assertIn("predictor.py, line 1", first)

    def test_missing_class_exits_3(self):
        shim = self.start("class Predictor:\n    def predict(self, payload):\n        return 1\n", ready=False)
        self.assert_init_failure(shim, "PredictorError: predictor.py does not define a class named PythonPredictor")

    def test_missing_file_exits_3(self):
        shim = self.start("", env={"CORTEX_PREDICTOR_PATH": "nope.py"}, ready=False)
        self.assert_init_failure(shim, "PredictorError: predictor file nope.py does not exist")

    def test_unknown_required_argument_exits_3(self):
        shim = self.start(
            """
            class PythonPredictor:
                def __init__(self, config):
                    pass
                def predict(self, payload, batch_id):
                    return 1
            """,
            ready=False,
        )
        self.assert_init_failure(
            shim,
            "PredictorError: PythonPredictor.predict has unexpected required argument 'batch_id' "
            "(allowed: payload, query_params, headers)",
        )

    def test_sys_exit_in_init_exits_3(self):
        shim = self.start(
            """
            import sys
            class PythonPredictor:
                def __init__(self, config):
                    sys.exit(1)
                def predict(self, payload):
                    return 1
            """,
            ready=False,
        )
        self.assert_init_failure(shim, "SystemExit: 1")

    def test_invalid_environment_exits_2(self):
        shim = self.start(ECHO, env={"CORTEX_THREADS_PER_PROCESS": "0"}, ready=False)
        self.assertEqual(shim.wait_exit(), 2)
        self.assertIn("CORTEX_THREADS_PER_PROCESS must be at least 1", shim.stderr())

    def test_port_in_use_exits_4(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            port = s.getsockname()[1]
            shim = self.start(ECHO, env={"CORTEX_PORT": str(port)}, ready=False)
            self.assertEqual(shim.wait_exit(), 4)
        self.assertIn("could not listen on 127.0.0.1:%d" % port, shim.stderr())


class TestDotenv(ShimTestCase):
    def test_dotenv_loaded(self):
        shim = self.start(
            """
            import os
            AT_IMPORT = os.environ.get("PLAIN")
            class PythonPredictor:
                def __init__(self, config):
                    pass
                def predict(self, payload):
                    keys = ["PLAIN", "EXPORTED", "DOUBLE", "SINGLE", "COMMENTED", "PRESET", "EMPTY", "EQUALS"]
                    return {"at_import": AT_IMPORT, **{k: os.environ.get(k) for k in keys}}
            """,
            files={
                ".env": """
                    # a comment
                    PLAIN=plain value

                    export EXPORTED=exported
                    DOUBLE="double quoted"
                    SINGLE='single # quoted'
                    COMMENTED=value # trailing comment
                    PRESET=from-dotenv
                    EMPTY=
                    EQUALS=a=b
                    not a valid line
                """
            },
            env={"PRESET": "from-environment"},
        )
        out = json.loads(shim.post_json("/", {})[2])
        self.assertEqual(
            out,
            {
                "at_import": "plain value",
                "PLAIN": "plain value",
                "EXPORTED": "exported",
                "DOUBLE": "double quoted",
                "SINGLE": "single # quoted",
                "COMMENTED": "value",
                "PRESET": "from-environment",
                "EMPTY": "",
                "EQUALS": "a=b",
            },
        )


SLOW = """
import threading, time
class PythonPredictor:
    def __init__(self, config):
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.barrier = threading.Barrier(2, timeout=config.get("barrier_timeout", 10))

    def predict(self, query_params):
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if query_params.get("mode") == "barrier":
                self.barrier.wait()  # returns only if two predictions run at once
            else:
                time.sleep(0.3)
        finally:
            with self.lock:
                self.active -= 1
        return {"max_active": self.max_active}
"""


def concurrent_posts(shim, path, n):
    results = [None] * n

    def run(i):
        try:
            results[i] = shim.request("POST", path)
        except Exception as e:  # reported by the assertions below
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    return results


class TestThreads(ShimTestCase):
    def test_two_threads_overlap(self):
        shim = self.start(SLOW, threads=2)
        started = time.monotonic()
        results = concurrent_posts(shim, "/?mode=barrier", 2)
        for r in results:
            self.assertIsInstance(r, tuple, r)
            self.assertEqual(r[0], 200, r)
        self.assertEqual(max(json.loads(r[2])["max_active"] for r in results), 2)
        self.assertLess(time.monotonic() - started, 10)

    def test_one_thread_serialises(self):
        shim = self.start(SLOW, threads=1)
        results = concurrent_posts(shim, "/?mode=sleep", 3)
        for r in results:
            self.assertIsInstance(r, tuple, r)
            self.assertEqual(r[0], 200, r)
        self.assertEqual(max(json.loads(r[2])["max_active"] for r in results), 1)


class TestSignals(ShimTestCase):
    def test_sigterm_exits_0(self):
        shim = self.start(ECHO)
        shim.proc.send_signal(signal.SIGTERM)
        self.assertEqual(shim.wait_exit(), 0)
        self.assertEqual(shim.stderr(), "")

    def test_sigterm_waits_for_in_flight_request(self):
        shim = self.start(
            """
            import time
            class PythonPredictor:
                def predict(self):
                    open("started", "w").close()
                    time.sleep(0.5)
                    return "done"
            """
        )
        result = {}
        t = threading.Thread(target=lambda: result.update(r=shim.request("POST", "/")))
        t.start()
        wait_until(lambda: os.path.exists(os.path.join(shim.dir, "started")), what="the request to start")
        shim.proc.send_signal(signal.SIGTERM)
        t.join(DEADLINE)
        self.assertEqual(result.get("r", (None, None, None))[2], b"done")
        self.assertEqual(shim.wait_exit(), 0)


# ---------------------------------------------------------------------------
# several processes per replica (CORTEX_PROCESSES_PER_REPLICA)


def pid_alive(pid):
    """True while `pid` runs (a zombie counts as gone: whoever reaps orphans
    here may be slow or absent)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def marker_pids(shim, prefix):
    """The pids of the marker files `<prefix><pid>` the predictor wrote."""
    return sorted(int(n[len(prefix):]) for n in os.listdir(shim.dir) if n.startswith(prefix))


# every worker writes init-<pid> in __init__; predict() returns its pid, after
# a rendezvous with another request (across processes, through files) when
# asked to
PIDS = """
import os, time

class PythonPredictor:
    def __init__(self, config):
        open("init-%d" % os.getpid(), "w").close()

    def predict(self, query_params):
        tag = query_params.get("rendezvous")
        if tag:
            open("arrived-%s-%d" % (tag, os.getpid()), "w").close()
            deadline = time.monotonic() + 10
            while len([n for n in os.listdir(".") if n.startswith("arrived-%s-" % tag)]) < 2:
                if time.monotonic() > deadline:
                    raise RuntimeError("no other request arrived")
                time.sleep(0.01)
        return os.getpid()
"""

# the first worker to start initialising finishes at once, the other waits
# for the file `gate`
GATED = """
import os, time

class PythonPredictor:
    def __init__(self, config):
        open("init-%d" % os.getpid(), "w").close()
        try:
            os.close(os.open("first", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            deadline = time.monotonic() + 30
            while not os.path.exists("gate"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the gate never opened")
                time.sleep(0.01)
        open("initialised-%d" % os.getpid(), "w").close()

    def predict(self):
        return os.getpid()
"""

# the first worker fails once the other one is initialising; the other one
# never finishes (the shim must kill it)
ONE_FAILS = """
import os, time

class PythonPredictor:
    def __init__(self, config):
        open("init-%d" % os.getpid(), "w").close()
        try:
            os.close(os.open("first", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            while True:
                time.sleep(0.05)
        deadline = time.monotonic() + 10
        while len([n for n in os.listdir(".") if n.startswith("init-")]) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        raise ValueError("model file is corrupt")

    def predict(self):
        return 1
"""

BOTH_FAIL = """
import os

class PythonPredictor:
    def __init__(self, config):
        open("init-%d" % os.getpid(), "w").close()
        raise ValueError("boom in %d" % os.getpid())

    def predict(self):
        return 1
"""


class TestProcesses(ShimTestCase):
    def start_workers(self, predictor_src, processes=2, ready=True, **kwargs):
        env = dict(kwargs.pop("env", {}) or {})
        env["CORTEX_PROCESSES_PER_REPLICA"] = str(processes)
        shim = self.start(predictor_src, env=env, ready=False, **kwargs)
        self.addCleanup(self.kill_workers, shim)  # runs before shim.close
        if ready:
            shim.wait_ready()
        return shim

    def kill_workers(self, shim):
        """Test hygiene: no worker survives a test, even a failed one."""
        for pid in marker_pids(shim, "init-"):
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    if b"cortex_shim.py" not in f.read():
                        continue
            except OSError:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def wait_gone(self, pids, what):
        wait_until(lambda: not any(pid_alive(p) for p in pids), what=what)

    def worker_pids(self, shim, n=2):
        return wait_until(
            lambda: len(marker_pids(shim, "init-")) == n and marker_pids(shim, "init-"), what="%d workers" % n
        )

    def test_one_process_does_not_fork(self):
        shim = self.start_workers(PIDS, processes=1)
        status, _, body = shim.request("POST", "/")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), shim.proc.pid)
        self.assertEqual(marker_pids(shim, "init-"), [shim.proc.pid])

    def test_each_process_initialises_its_own_predictor(self):
        shim = self.start_workers(PIDS, processes=2)
        pids = marker_pids(shim, "init-")
        self.assertEqual(len(pids), 2, pids)
        self.assertNotIn(shim.proc.pid, pids)
        out = shim.stdout()
        ready = [l for l in out.splitlines() if "is ready on port" in l]
        self.assertEqual(len(ready), 1, out)
        self.assertRegex(
            ready[0],
            r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+:cortex:pid-%d:INFO:test-api is ready on port %d "
            r"\(processes_per_replica=2\)$" % (shim.proc.pid, shim.port),
        )
        for pid in pids:
            self.assertIn(":cortex:pid-%d:INFO:test-api: loading the predictor from predictor.py" % pid, out)
        self.assertEqual(shim.stderr(), "")

    def test_concurrent_requests_reach_different_processes(self):
        shim = self.start_workers(PIDS, processes=2)  # one thread per process
        workers = set(marker_pids(shim, "init-"))
        for round in range(3):
            results = concurrent_posts(shim, "/?rendezvous=r%d" % round, 2)
            for r in results:
                self.assertIsInstance(r, tuple, r)
                self.assertEqual(r[0], 200, (r, shim.stderr()))
            pids = {json.loads(r[2]) for r in results}
            self.assertEqual(pids, workers)

    def test_ready_only_once_every_process_is_initialised(self):
        shim = self.start_workers(GATED, processes=2, ready=False)
        self.worker_pids(shim)
        wait_until(lambda: len(marker_pids(shim, "initialised-")) == 1, what="one worker to be initialised")
        for _ in range(5):
            with self.assertRaises(ConnectionRefusedError):
                shim.request("GET", "/healthz", timeout=1)
            time.sleep(0.02)
        self.assertNotIn("is ready", shim.stdout())
        self.assertIsNone(shim.proc.poll())

        open(os.path.join(shim.dir, "gate"), "w").close()
        shim.wait_ready()
        self.assertEqual(len(marker_pids(shim, "initialised-")), 2)
        self.assertIn("is ready on port %d" % shim.port, shim.stdout())

    def test_init_failure_in_one_process_exits_3_and_kills_the_other(self):
        shim = self.start_workers(ONE_FAILS, processes=2, ready=False)
        self.assertEqual(shim.wait_exit(), 3)
        err = shim.stderr()
        lines = err.splitlines()
        self.assertEqual(lines[0], INIT_FAILED_PREFIX + "ValueError: model file is corrupt", err)
        self.assertIn("Traceback (most recent call last):", err)
        self.assertIn('raise ValueError("model file is corrupt")', err)
        self.assertEqual(sum(l.startswith("cortex: error:") for l in lines), 1, err)
        pids = marker_pids(shim, "init-")
        self.assertEqual(len(pids), 2)
        self.wait_gone(pids, "the workers to be gone")
        self.assertNotIn("is ready", shim.stdout())

    def test_init_failure_in_every_process_reports_one_error(self):
        shim = self.start_workers(BOTH_FAIL, processes=3, ready=False)
        self.assertEqual(shim.wait_exit(), 3)
        err = shim.stderr()
        lines = err.splitlines()
        self.assertRegex(lines[0], "^" + INIT_FAILED_PREFIX + r"ValueError: boom in \d+$")
        self.assertEqual(sum(l.startswith("cortex: error:") for l in lines), 1, err)
        self.wait_gone(marker_pids(shim, "init-"), "the workers to be gone")

    def test_sigterm_stops_every_process(self):
        shim = self.start_workers(PIDS, processes=2)
        pids = marker_pids(shim, "init-")
        shim.proc.send_signal(signal.SIGTERM)
        self.assertEqual(shim.wait_exit(), 0)
        self.assertEqual(shim.stderr(), "")
        self.wait_gone(pids, "the workers to be gone")
        self.assertIn("test-api: shut down", shim.stdout())

    def test_sigterm_during_initialisation_exits_0(self):
        shim = self.start_workers(GATED, processes=2, ready=False)  # the gate never opens
        pids = self.worker_pids(shim)
        wait_until(lambda: len(marker_pids(shim, "initialised-")) == 1, what="one worker to be initialised")
        shim.proc.send_signal(signal.SIGTERM)
        self.assertEqual(shim.wait_exit(), 0)
        self.assertEqual(shim.stderr(), "")
        self.wait_gone(pids, "the workers to be gone")

    def test_sigterm_waits_for_in_flight_request(self):
        shim = self.start_workers(
            """
            import os, time
            class PythonPredictor:
                def predict(self):
                    open("started", "w").close()
                    time.sleep(0.5)
                    return "done by %d" % os.getpid()
            """,
            processes=2,
        )
        result = {}
        t = threading.Thread(target=lambda: result.update(r=shim.request("POST", "/")))
        t.start()
        wait_until(lambda: os.path.exists(os.path.join(shim.dir, "started")), what="the request to start")
        shim.proc.send_signal(signal.SIGTERM)
        t.join(DEADLINE)
        self.assertTrue(result.get("r", (None, None, b""))[2].startswith(b"done by "), result)
        self.assertEqual(shim.wait_exit(), 0)
        self.assertEqual(shim.stderr(), "")

    def test_workers_die_with_a_sigkilled_supervisor(self):
        shim = self.start_workers(PIDS, processes=2)
        pids = marker_pids(shim, "init-")
        self.assertTrue(all(pid_alive(p) for p in pids))
        shim.proc.kill()
        shim.wait_exit()
        self.wait_gone(pids, "the workers to die with the supervisor")

    def test_worker_death_stops_the_replica(self):
        shim = self.start_workers(PIDS, processes=2)
        victim, other = marker_pids(shim, "init-")
        os.kill(victim, signal.SIGKILL)
        self.assertEqual(shim.wait_exit(), 5)
        self.assertRegex(
            shim.stderr().splitlines()[0],
            r":cortex:pid-%d:ERROR:test-api: worker process %d died unexpectedly "
            r"\(killed by signal 9 \(SIGKILL\)\); stopping the replica$" % (shim.proc.pid, victim),
        )
        self.wait_gone([victim, other], "the workers to be gone")

    def test_invalid_processes_exits_2(self):
        for value, message in (
            ("0", "CORTEX_PROCESSES_PER_REPLICA must be at least 1, got 0"),
            ("two", "CORTEX_PROCESSES_PER_REPLICA is not an integer: 'two'"),
        ):
            with self.subTest(value=value):
                shim = self.start(ECHO, env={"CORTEX_PROCESSES_PER_REPLICA": value}, ready=False)
                self.assertEqual(shim.wait_exit(), 2)
                self.assertIn(message, shim.stderr())

    def test_port_in_use_exits_4(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            port = s.getsockname()[1]
            shim = self.start_workers(PIDS, processes=2, ready=False, env={"CORTEX_PORT": str(port)})
            self.assertEqual(shim.wait_exit(), 4)
        self.assertIn("could not listen on 127.0.0.1:%d" % port, shim.stderr())
        self.assertEqual(marker_pids(shim, "init-"), [])


if __name__ == "__main__":
    unittest.main()
