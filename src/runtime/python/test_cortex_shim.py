"""Tests for cortex_shim.py (stdlib unittest).

Run: cd src/runtime/python && python3 -m unittest -v test_cortex_shim
"""

import copy
import http.client
import io
import json
import os
import pickle
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
from collections.abc import Mapping
from unittest import mock

import cortex_shim

SHIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cortex_shim.py")
INIT_FAILED_PREFIX = "cortex: error: failed to initialise the predictor: "
DEADLINE = 15.0  # seconds; generous for slow CI machines
AT_ONCE = 2.5  # seconds: "exits at once" (below the 3 s request drain it is told apart from)


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


class RawConn:
    """A raw HTTP/1.1 connection: send exact bytes, read responses one by one
    (through one buffered reader, so pipelined responses are not lost)."""

    def __init__(self, port, timeout=DEADLINE):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def send(self, data):
        self.sock.sendall(data)

    def response(self, head=False):
        """(status, {lower-case header: value}, body), or None at EOF."""
        line = self.file.readline()
        if not line:
            return None
        status = int(line.split()[1])
        headers = {}
        while True:
            line = self.file.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, value = line.decode("latin-1").split(":", 1)
            headers[name.strip().lower()] = value.strip()
        n = 0 if head or status in (204, 304) else int(headers.get("content-length", "0"))
        return status, headers, self.file.read(n)

    def at_eof(self):
        """True if the server closed the connection (waits for it)."""
        try:
            return self.file.read(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.file.close()
        self.sock.close()


def ndjson(batches):
    return b"".join(json.dumps(b).encode() + b"\n" for b in batches)


class StreamConn(RawConn):
    """A POST /batches as the cortex server makes it: batch lines sent one chunk at a time,
    outcome lines read as they come."""

    def start_batches(self):
        self.send(
            b"POST /batches HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        self.chunks = bytearray()

    def send_batch(self, batch):
        line = ndjson([batch])
        self.send(b"%x\r\n%s\r\n" % (len(line), line))

    def end_batches(self):
        self.send(b"0\r\n\r\n")

    def head(self):
        """(status, {lower-case header: value}) of the streamed answer."""
        status = int(self.file.readline().split()[1])
        headers = {}
        while True:
            line = self.file.readline()
            if line in (b"\r\n", b"\n", b""):
                return status, headers
            name, value = line.decode("latin-1").split(":", 1)
            headers[name.strip().lower()] = value.strip()

    def outcome(self):
        """The next outcome line, parsed; None at the end of the answer."""
        while b"\n" not in self.chunks:
            size = int(self.file.readline().strip(), 16)
            if size == 0:
                self.assertEmpty(self.file.readline())
                return None
            self.chunks += self.file.read(size)
            self.file.readline()  # its CRLF
        line, _, rest = bytes(self.chunks).partition(b"\n")
        self.chunks = bytearray(rest)
        return json.loads(line)

    @staticmethod
    def assertEmpty(line):
        if line not in (b"\r\n", b"\n"):
            raise AssertionError("the answer goes on after its last chunk: %r" % line)


class Shim:
    """A running shim process on a temporary project."""

    def __init__(self, predictor_src, config=None, threads=1, files=None, env=None, api_name="test-api"):
        self.dir = tempfile.mkdtemp(prefix="cortex-shim-test-")
        with open(os.path.join(self.dir, "predictor.py"), "w") as f:
            f.write(textwrap.dedent(predictor_src))
        for name, content in (files or {}).items():
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(textwrap.dedent(content))
        # Like the cortex server, hand the shim a socket bound to a free port, so
        # that no other test can take the port before the shim serves on it; a
        # test that sets CORTEX_PORT itself makes the shim bind that port.
        handed = None
        if "CORTEX_PORT" not in (env or {}):
            handed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            handed.bind(("127.0.0.1", 0))
        self.port = handed.getsockname()[1] if handed else free_port()
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
        if handed:
            full_env["CORTEX_LISTEN_FD"] = str(handed.fileno())
        full_env.update(env or {})
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-u", SHIM],
                cwd=self.dir,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=self._out,
                stderr=self._err,
                pass_fds=(handed.fileno(),) if handed else (),
            )
        finally:
            if handed:
                handed.close()  # the shim holds its own copy

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

    def test_health_as_model_bazaar_deployments_answer_it(self):
        for path in ("/health", "/health?probe=1"):
            status, ctype, body = self.shim.request("GET", path)
            self.assertEqual(status, 200)
            self.assertEqual(ctype, "application/json")
            self.assertEqual(json.loads(body), {"status": "success"})

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


BATCH = """
import os, time

class PythonPredictor:
    def __init__(self, config, job_spec):
        self.job_spec = job_spec
        self.seen = []

    def predict(self, payload, batch_id):
        if payload and payload[0] == "boom":
            raise ValueError("bad batch " + batch_id)
        if payload and payload[0] == "wait":
            # waits for the test's go (polled; the test's deadline bounds it)
            open(os.path.join(self.job_spec["out"], "started"), "w").close()
            gate = os.path.join(self.job_spec["out"], "go")
            end = time.monotonic() + 15
            while not os.path.exists(gate) and time.monotonic() < end:
                time.sleep(0.01)
        self.seen.append((batch_id, payload))

    def on_job_complete(self):
        with open(os.path.join(self.job_spec["out"], "complete"), "w") as f:
            f.write(repr(self.seen))
"""


class TestBatchWorker(ShimTestCase):
    def batch_shim(self, out):
        env = {"CORTEX_KIND": "BatchAPI", "CORTEX_JOB_SPEC": json.dumps({"job_id": "j", "out": out})}
        return self.start(BATCH, env=env)

    def test_one_batch_per_post_and_a_stream_of_them_per_batches_request(self):
        out = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, out, True)
        shim = self.batch_shim(out)
        status, _, body = shim.request(
            "POST", "/", json.dumps([1, 2]).encode(), {"Content-Type": "application/json", "X-Cortex-Batch-ID": "j-0"}
        )
        self.assertEqual(status, 200, body)
        many = [{"batch_id": "j-1", "payload": [3]}, {"batch_id": "j-2", "payload": ["boom"]}, {"batch_id": "j-3", "payload": [4]}]
        # a body with a Content-Length is read as a stream too; the last line needs no newline
        status, content_type, body = shim.request("POST", "/batches", ndjson(many).rstrip(b"\n"))
        self.assertEqual(status, 200, body)
        self.assertEqual(content_type, "application/x-ndjson")
        outcomes = [json.loads(line) for line in body.decode().splitlines()]
        self.assertEqual([o["batch_id"] for o in outcomes], ["j-1", "j-2", "j-3"])
        self.assertEqual([o["ok"] for o in outcomes], [True, False, True])
        self.assertEqual(outcomes[1]["error"], "predict raised ValueError: bad batch j-2")
        self.assertTrue(all(o["ms"] >= 0 for o in outcomes))
        # a line that is not a batch fails in its place; the others run
        status, _, body = shim.request("POST", "/batches", b'[1]\n{"batch_id": "j-4", "payload": [5]}\n')
        self.assertEqual(status, 200, body)
        outcomes = [json.loads(line) for line in body.decode().splitlines()]
        self.assertEqual([o["ok"] for o in outcomes], [False, True])
        self.assertIn("the batch is not valid", outcomes[0]["error"])
        status, _, _ = shim.request("POST", "/on-job-complete", b"")
        self.assertEqual(status, 200)
        with open(os.path.join(out, "complete")) as f:
            self.assertEqual(f.read(), repr([("j-0", [1, 2]), ("j-1", [3]), ("j-3", [4]), ("j-4", [5])]))

    def check_batches_run_as_their_lines_come(self, threads):
        out = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, out, True)
        env = {"CORTEX_KIND": "BatchAPI", "CORTEX_JOB_SPEC": json.dumps({"job_id": "j", "out": out})}
        shim = self.start(BATCH, threads=threads, env=env)
        conn = StreamConn(shim.port)
        self.addCleanup(conn.close)
        conn.start_batches()
        status, headers = conn.head()
        self.assertEqual((status, headers["transfer-encoding"]), (200, "chunked"))
        # The worker runs a batch as soon as its line is in: the sender paces it.
        conn.send_batch({"batch_id": "j-1", "payload": [1]})
        self.assertEqual(conn.outcome(), {"batch_id": "j-1", "ok": True, "ms": mock.ANY})
        conn.send_batch({"batch_id": "j-2", "payload": ["wait"]})
        # The outcome of a batch streams while the next one, already sent, waits its turn.
        conn.send_batch({"batch_id": "j-3", "payload": [3]})
        wait_until(lambda: os.path.exists(os.path.join(out, "started")), what="the second batch to start")
        open(os.path.join(out, "go"), "w").close()
        self.assertEqual(conn.outcome()["batch_id"], "j-2")
        self.assertEqual(conn.outcome()["batch_id"], "j-3")
        conn.end_batches()
        self.assertIsNone(conn.outcome(), "the answer ends with the body")
        # The connection serves the next request after the stream.
        conn.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _ = conn.response()
        self.assertEqual(status, 200)

    def test_batches_run_as_their_lines_come_on_one_thread(self):
        self.check_batches_run_as_their_lines_come(1)

    def test_batches_run_as_their_lines_come_on_a_pool(self):
        self.check_batches_run_as_their_lines_come(2)

    def test_a_stopping_worker_ends_the_stream_after_the_batch_it_runs(self):
        out = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, out, True)
        env = {"CORTEX_KIND": "BatchAPI", "CORTEX_JOB_SPEC": json.dumps({"job_id": "j", "out": out})}
        shim = self.start(BATCH, threads=2, env=env)
        conn = StreamConn(shim.port)
        self.addCleanup(conn.close)
        conn.start_batches()
        conn.send_batch({"batch_id": "j-1", "payload": ["wait"]})
        conn.send_batch({"batch_id": "j-2", "payload": [2]})
        wait_until(lambda: os.path.exists(os.path.join(out, "started")), what="the first batch to start")
        shim.proc.send_signal(signal.SIGTERM)
        open(os.path.join(out, "go"), "w").close()
        self.assertEqual(conn.head()[0], 200)
        # The batch in progress finished and said so; the next one never started.
        self.assertEqual(conn.outcome()["batch_id"], "j-1")
        self.assertIsNone(conn.outcome())
        self.assertTrue(conn.at_eof())
        self.assertEqual(shim.wait_exit(), 0)

    def test_a_stream_waiting_for_its_next_batch_ends_at_once_on_sigterm(self):
        out = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, out, True)
        shim = self.batch_shim(out)
        conn = StreamConn(shim.port)
        self.addCleanup(conn.close)
        conn.start_batches()
        conn.send_batch({"batch_id": "j-1", "payload": [1]})
        self.assertEqual(conn.head()[0], 200)
        self.assertEqual(conn.outcome()["batch_id"], "j-1")
        started = time.monotonic()
        shim.proc.send_signal(signal.SIGTERM)
        self.assertIsNone(conn.outcome())
        self.assertEqual(shim.wait_exit(), 0)
        self.assertLess(time.monotonic() - started, AT_ONCE, "the stream did not wait out the stop grace")

    def test_a_broken_stream_says_why_and_closes(self):
        shim = self.batch_shim(tempfile.mkdtemp())
        conn = StreamConn(shim.port)
        self.addCleanup(conn.close)
        conn.start_batches()
        conn.send(b"zz\r\n")  # not a chunk size
        self.assertEqual(conn.head()[0], 200)
        outcome = conn.outcome()
        self.assertFalse(outcome["ok"])
        self.assertIn("invalid chunk size", outcome["error"])
        self.assertIsNone(conn.outcome())
        self.assertTrue(conn.at_eof())

    def test_a_predictor_without_on_job_complete_answers_404(self):
        shim = self.start(
            "class PythonPredictor:\n    def __init__(self, config):\n        pass\n    def predict(self, payload):\n        pass\n",
            env={"CORTEX_KIND": "BatchAPI"},
        )
        status, _, _ = shim.request("POST", "/on-job-complete", b"")
        self.assertEqual(status, 404)


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


class TestHandedSocket(ShimTestCase):
    def test_the_handed_socket_is_served_and_listens_only_once_ready(self):
        gate = os.path.join(tempfile.mkdtemp(prefix="cortex-gate-"), "open")
        shim = self.start(
            """
            import os, time
            class PythonPredictor:
                def __init__(self, config):
                    while not os.path.exists(config["gate"]):
                        time.sleep(0.02)
                def predict(self, payload):
                    return payload
            """,
            config={"gate": gate},
            ready=False,
        )
        # bound by the test, held by the shim: nobody else can bind it
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
            with self.assertRaises(OSError):
                other.bind(("127.0.0.1", shim.port))
        # still in __init__: not listening yet, so a connection is refused
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", shim.port), timeout=DEADLINE).close()
        open(gate, "w").close()
        shim.wait_ready()
        status, _, body = shim.post_json("/", {"a": 1})
        self.assertEqual((status, json.loads(body)), (200, {"a": 1}))

    def test_programs_the_predictor_starts_do_not_inherit_the_socket(self):
        shim = self.start(
            """
            import os, subprocess, sys
            CHILD = (
                "import os, stat\\n"
                "def is_socket(fd):\\n"
                "    try:\\n"
                "        return stat.S_ISSOCK(os.fstat(int(fd)).st_mode)\\n"
                "    except OSError:\\n"
                "        return False\\n"
                "print([fd for fd in os.listdir('/proc/self/fd') if is_socket(fd)])\\n"
            )
            class PythonPredictor:
                def __init__(self, config):
                    self.seen = subprocess.run(
                        [sys.executable, "-c", CHILD], close_fds=False, capture_output=True, text=True
                    ).stdout.strip() or "child failed"
                def predict(self, payload):
                    return {"child_sockets": self.seen, "env": os.environ.get("CORTEX_LISTEN_FD")}
            """
        )
        status, _, body = shim.post_json("/", {})
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {"child_sockets": "[]", "env": None})

    def test_a_handed_descriptor_that_is_not_a_socket_exits_4(self):
        r, w = os.pipe()
        try:
            shim = self.start(ECHO, env={"CORTEX_LISTEN_FD": str(r)}, ready=False)
            self.assertEqual(shim.wait_exit(), 4)
        finally:
            os.close(r)
            os.close(w)
        self.assertIn("could not listen on", shim.stderr())

    def test_a_bad_listen_fd_setting_exits_2(self):
        shim = self.start(ECHO, env={"CORTEX_LISTEN_FD": "three"}, ready=False)
        self.assertEqual(shim.wait_exit(), 2)
        self.assertIn("CORTEX_LISTEN_FD is not an integer: 'three'", shim.stderr())


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


    def test_sigterm_answers_a_post_whose_body_is_still_coming(self):
        for threads in (1, 4):
            with self.subTest(threads=threads):
                shim = self.start(ECHO, threads=threads)
                conn = RawConn(shim.port)
                self.addCleanup(conn.close)
                body = b'{"text": "late"}'
                # the 100 Continue says the head was read; then the stop begins
                conn.send(
                    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
                )
                self.assertEqual(conn.file.readline(), b"HTTP/1.1 100 Continue\r\n")
                self.assertEqual(conn.file.readline(), b"\r\n")
                shim.proc.send_signal(signal.SIGTERM)

                def refused():
                    try:
                        socket.create_connection(("127.0.0.1", shim.port), timeout=1).close()
                        return False
                    except OSError:
                        return True

                wait_until(refused, what="the shim to stop accepting")
                conn.send(body)
                status, headers, answer = conn.response()
                self.assertEqual(status, 200)
                self.assertEqual(json.loads(answer)["payload"], {"text": "late"})
                self.assertEqual(headers.get("connection"), "close")
                self.assertEqual(shim.wait_exit(), 0)


class FakeTransport:
    """What a Connection writes to, without a socket."""

    def __init__(self):
        self.written = bytearray()
        self.unsent = 0  # bytes "still in the buffer"
        self.reading = True
        self.closed = False

    def get_extra_info(self, name):
        return None

    def write(self, data):
        self.written += data

    def get_write_buffer_size(self):
        return self.unsent

    def pause_reading(self):
        self.reading = False

    def resume_reading(self):
        self.reading = True

    def close(self):
        self.closed = True


class FakeLoop:
    def __init__(self):
        self.later = []

    def call_later(self, delay, fn, *args):
        self.later.append((fn, args))


def fake_connection(predict, post_predict=None):
    """A Connection of a one-thread server (predict runs inline) on a FakeTransport."""
    settings = {"threads": 1, "max_body_bytes": 1 << 20, "api_name": "t"}
    instance = mock.Mock(predict=predict)
    predictor = cortex_shim.Predictor(instance, ("payload",), post_predict, ("response",) if post_predict else ())
    server = cortex_shim.Server.__new__(cortex_shim.Server)
    server.__init__(settings, predictor, None, mock.Mock(getsockname=lambda: ("127.0.0.1", 1), fileno=lambda: -1))
    server.loop = FakeLoop()
    conn = cortex_shim.Connection(server)
    conn.connection_made(FakeTransport())
    return server, conn


POST = b"POST / HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class TestBackpressure(unittest.TestCase):
    def test_no_request_is_answered_while_answers_wait_to_go_out(self):
        calls = []
        server, conn = fake_connection(lambda payload: calls.append(payload) or "ok")
        conn.data_received(POST)
        self.assertEqual(len(calls), 1)
        conn.pause_writing()  # the client reads slower than answers are written
        self.assertFalse(conn.transport.reading)
        conn.data_received(POST + POST)
        self.assertEqual(len(calls), 1, "a request was answered while writing was paused")
        conn.resume_writing()
        self.assertTrue(conn.transport.reading)
        self.assertEqual(len(calls), 3)
        self.assertEqual(conn.transport.written.count(b"HTTP/1.1 200 OK"), 3)
        self.assertEqual(server.in_flight, 0)

    def test_post_predict_runs_once_the_answer_has_gone_out(self):
        order = []
        server, conn = fake_connection(lambda payload: "ok", post_predict=lambda response: order.append("post"))
        conn.transport.unsent = 10 << 20  # a large answer, still being sent
        conn.data_received(POST)
        self.assertEqual(conn.transport.written.count(b"200 OK"), 1)
        self.assertEqual(order, [], "post_predict ran before the answer went out")
        conn.transport.unsent = 0
        for fn, args in server.loop.later:
            fn(*args)
        self.assertEqual(order, ["post"])

    def test_a_post_counts_as_in_flight_from_its_head_until_its_answer(self):
        server, conn = fake_connection(lambda payload: "ok")
        conn.data_received(POST[:-2])  # the head, not the body yet
        self.assertEqual(server.in_flight, 1)
        conn.data_received(POST[-2:])
        self.assertEqual(server.in_flight, 0)
        conn.data_received(POST[:-1])
        self.assertEqual(server.in_flight, 1)
        conn.connection_lost(None)  # the client went away mid-body
        self.assertEqual(server.in_flight, 0)


# ---------------------------------------------------------------------------
# the thread model: one pool per process runs __init__, predict, post_predict

THREAD_MODEL = """
import sqlite3, threading, time

class PythonPredictor:
    def __init__(self, config):
        self.use_sqlite = config.get("sqlite", False)
        if self.use_sqlite:
            # sqlite3 objects may only be used on the thread that made them
            self.db = sqlite3.connect(":memory:")
            self.db.execute("create table t (x)")
        self.local = threading.local()
        self.local.tag = "set in __init__"
        self.init_thread = [threading.get_ident(), threading.current_thread().name]
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.post_threads = []

    def _enter(self):
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def _leave(self):
        with self.lock:
            self.active -= 1

    def predict(self, payload):
        self._enter()
        try:
            count = None
            if self.use_sqlite:
                self.db.execute("insert into t values (?)", (payload.get("i", 0),))
                count = self.db.execute("select count(*) from t").fetchone()[0]
            time.sleep(payload.get("sleep", 0))
            return {
                "count": count,
                "tag": getattr(self.local, "tag", None),
                "thread": [threading.get_ident(), threading.current_thread().name],
                "main": threading.current_thread() is threading.main_thread(),
                "init_thread": self.init_thread,
                "post_threads": list(self.post_threads),
                "max_active": self.max_active,
            }
        finally:
            self._leave()

    def post_predict(self, response, payload):
        self._enter()
        try:
            if self.use_sqlite:
                self.db.execute("insert into t values (-1)")
            time.sleep(payload.get("post_sleep", 0))
            self.post_threads.append(threading.get_ident())
        finally:
            self._leave()
"""


def concurrent_json_posts(shim, bodies):
    results = [None] * len(bodies)

    def run(i):
        try:
            results[i] = shim.post_json("/", bodies[i])
        except Exception as e:  # reported by the assertions
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    return results


class TestThreadModel(ShimTestCase):
    def assert_ok(self, results):
        for r in results:
            self.assertIsInstance(r, tuple, r)
            self.assertEqual(r[0], 200, r)
        return [json.loads(r[2]) for r in results]

    def test_one_thread_runs_init_predict_and_post_predict(self):
        shim = self.start(THREAD_MODEL, config={"sqlite": True}, threads=1)
        outs = self.assert_ok(
            concurrent_json_posts(shim, [{"i": i, "sleep": 0.05, "post_sleep": 0.05} for i in range(4)])
        )
        # wait for the 4 post_predicts (each probe queues one more)
        out = wait_until(
            lambda: (lambda o: len(o["post_threads"]) >= 4 and o)(json.loads(shim.post_json("/", {})[2])),
            what="the post_predicts to run",
        )
        outs.append(out)
        init_ident, init_name = out["init_thread"]
        self.assertTrue(init_name.startswith("cortex-predictor"), init_name)
        for o in outs:
            self.assertEqual(o["thread"][0], init_ident, o)  # predict on the __init__ thread
            self.assertEqual(o["tag"], "set in __init__")  # threading.local from __init__
            self.assertFalse(o["main"])
        self.assertEqual(set(out["post_threads"]), {init_ident})
        self.assertEqual(out["max_active"], 1)  # never two calls at once
        # the sqlite connection made in __init__ worked in predict and post_predict
        self.assertGreaterEqual(out["count"], 5 + 4)
        self.assertEqual(len({o["count"] for o in outs}), len(outs))
        self.assertNotIn("exception", shim.stderr())

    def test_threads_bound_concurrency(self):
        shim = self.start(THREAD_MODEL, threads=2)
        outs = self.assert_ok(concurrent_json_posts(shim, [{"sleep": 0.2} for _ in range(6)]))
        init_ident, init_name = outs[0]["init_thread"]
        self.assertTrue(init_name.startswith("cortex-predictor"), init_name)
        idents = {o["thread"][0] for o in outs}
        self.assertLessEqual(len(idents | {init_ident}), 2, outs)  # one pool of 2 threads
        self.assertTrue(all(o["thread"][1].startswith("cortex-predictor") for o in outs), outs)
        self.assertEqual(max(o["max_active"] for o in outs), 2)

    def test_workers_each_run_their_pool(self):
        shim = self.start(
            THREAD_MODEL, config={"sqlite": True}, threads=1, env={"CORTEX_PROCESSES_PER_REPLICA": "2"}
        )
        outs = self.assert_ok(concurrent_json_posts(shim, [{"i": i} for i in range(4)]))
        for o in outs:
            self.assertEqual(o["thread"][0], o["init_thread"][0], o)
            self.assertEqual(o["tag"], "set in __init__")
        self.assertNotIn("exception", shim.stderr())


# ---------------------------------------------------------------------------
# headers, query_params, form bodies: unit tests of the types


class TestRequestTypes(unittest.TestCase):
    def test_headers(self):
        h = cortex_shim.Headers(
            [("Content-Type", "application/json"), ("X-Rep", "one"), ("x-rep", "two"), ("X-Empty", "")]
        )
        self.assertEqual(h["Content-Type"], "application/json")
        self.assertEqual(h["content-type"], "application/json")
        self.assertEqual(h["CONTENT-TYPE"], "application/json")
        self.assertEqual(h.get("Content-type"), "application/json")
        self.assertIsNone(h.get("missing"))
        self.assertEqual(h.get("missing", "d"), "d")
        self.assertIn("X-REP", h)
        self.assertIn("x-empty", h)
        self.assertNotIn("missing", h)
        self.assertNotIn(["unhashable"], h)
        self.assertEqual(list(h), ["content-type", "x-rep", "x-empty"])
        self.assertEqual(h["X-Rep"], "one")  # the first value, as Starlette's Headers
        self.assertEqual(h.getlist("X-REP"), ["one", "two"])
        self.assertEqual(h.getlist("missing"), [])
        self.assertEqual(dict(h), {"content-type": "application/json", "x-rep": "one", "x-empty": ""})
        self.assertIsInstance(h, Mapping)
        self.assertEqual(len(h), 3)
        with self.assertRaises(KeyError):
            h["missing"]
        self.assertEqual(json.loads(json.dumps(h)), dict(h))
        self.assertIn("Headers(", repr(h))

    def test_read_only(self):
        for obj in (
            cortex_shim.Headers([("A", "1")]),
            cortex_shim.QueryParams([("a", "1")]),
            cortex_shim.FormData([("a", "1")]),
        ):
            with self.subTest(type(obj).__name__):
                for mutate in (
                    lambda: obj.__setitem__("a", "2"),
                    lambda: obj.__delitem__("a"),
                    lambda: obj.update({"b": "2"}),
                    lambda: obj.pop("a"),
                    lambda: obj.popitem(),
                    lambda: obj.setdefault("c", "3"),
                    lambda: obj.clear(),
                ):
                    with self.assertRaises(TypeError):
                        mutate()
                with self.assertRaises(TypeError):
                    obj |= {"b": "2"}
                self.assertEqual(obj["a"], "1")
                # copies keep the type and every value
                for other in (obj.copy(), copy.copy(obj), copy.deepcopy(obj), pickle.loads(pickle.dumps(obj))):
                    self.assertIs(type(other), type(obj))
                    self.assertEqual(other, obj)
                    self.assertEqual(other.getlist("a"), ["1"])

    def test_query_params(self):
        q = cortex_shim.QueryParams([("a", "1"), ("b", "x"), ("a", "2"), ("empty", "")])
        self.assertEqual(q["a"], "2")  # the last value wins
        self.assertEqual(q.getlist("a"), ["1", "2"])
        self.assertEqual(dict(q), {"a": "2", "b": "x", "empty": ""})
        self.assertNotIn("A", q)  # case matters here
        self.assertEqual(q.multi_items(), [("a", "1"), ("b", "x"), ("a", "2"), ("empty", "")])

    def test_urlencoded(self):
        form = cortex_shim.parse_payload(
            "application/x-www-form-urlencoded; charset=utf-8", b"a=1&b=h%C3%A9llo+w&a=2&empty=&flag"
        )
        self.assertIsInstance(form, cortex_shim.FormData)
        self.assertEqual(dict(form), {"a": "2", "b": "héllo w", "empty": "", "flag": ""})
        self.assertEqual(form.getlist("a"), ["1", "2"])
        self.assertEqual(dict(cortex_shim.parse_payload("application/x-www-form-urlencoded", b"")), {})
        for bad in (b"a=%FF", b"a=\xff"):
            with self.subTest(bad=bad), self.assertRaises(cortex_shim.BadRequest) as cm:
                cortex_shim.parse_payload("application/x-www-form-urlencoded", bad)
            self.assertIn("not valid UTF-8", str(cm.exception))

    def test_multipart(self):
        data = bytes(range(256)) + b"\r\n--XyZ-not-a-boundary\r\n\r\n\n\rend\r"
        body = (
            b"preamble\r\n"
            b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'
            b'--XyZ\r\nContent-Disposition: form-data; name="text"\r\n\r\nh\xc3\xa9llo\r\nline 2\r\n'
            b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="x.bin"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
            b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\n2\r\n'
            b'--XyZ\r\nContent-Disposition: form-data; name="doc"; filename="na\xc3\xafve.txt"\r\n\r\nx\r\n'
            b'--XyZ\r\nContent-Disposition: form-data; name="none"; filename=""\r\n\r\n\r\n'
            b"--XyZ--\r\nepilogue"
        )
        form = cortex_shim.parse_payload("multipart/form-data; boundary=XyZ", body)
        self.assertIsInstance(form, cortex_shim.FormData)
        self.assertEqual(list(form), ["a", "text", "file", "doc", "none"])
        self.assertEqual(form["a"], "2")
        self.assertEqual(form.getlist("a"), ["1", "2"])
        self.assertEqual(form["text"], "héllo\r\nline 2")
        f = form["file"]
        self.assertIsInstance(f, cortex_shim.UploadFile)
        self.assertEqual((f.filename, f.content_type, f.size), ("x.bin", "application/octet-stream", len(data)))
        self.assertIsInstance(f.file, io.BytesIO)
        self.assertEqual(f.read(), data)
        f.seek(0)
        self.assertEqual(f.file.read(), data)
        self.assertEqual(f.headers["content-disposition"], 'form-data; name="file"; filename="x.bin"')
        self.assertEqual((form["doc"].filename, form["doc"].content_type, form["doc"].read()), ("naïve.txt", "", b"x"))
        self.assertEqual((form["none"].filename, form["none"].read()), ("", b""))
        self.assertIn("none", form)
        self.assertIsNone(form.get("missing"))

    def test_multipart_empty(self):
        for body in (b"", b"--XyZ--\r\n", b"--XyZ--"):
            with self.subTest(body=body):
                form = cortex_shim.parse_payload("multipart/form-data; boundary=XyZ", body)
                self.assertEqual((type(form), dict(form)), (cortex_shim.FormData, {}))

    def test_multipart_malformed(self):
        part = b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'
        for content_type, body, message in (
            ("multipart/form-data", part + b"--XyZ--\r\n", "no boundary"),
            ("multipart/form-data; boundary=XyZ", part, "closing boundary is missing"),
            ("multipart/form-data; boundary=XyZ", b"garbage", "boundary was not found"),
            ("multipart/form-data; boundary=other", part + b"--XyZ--\r\n", "boundary was not found"),
            ("multipart/form-data; boundary=XyZ", b"--XyZ\r\n\r\n1\r\n--XyZ--\r\n", "Content-Disposition"),
            ("multipart/form-data; boundary=XyZ", b"--XyZ\r\nContent-Disposition: form-data\r\n\r\n1\r\n--XyZ--\r\n", "no name"),
            (
                "multipart/form-data; boundary=XyZ",
                b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\n\xff\r\n--XyZ--\r\n',
                "not valid utf-8",
            ),
        ):
            with self.subTest(body=body, content_type=content_type):
                with self.assertRaises(cortex_shim.BadRequest) as cm:
                    cortex_shim.parse_payload(content_type, body)
                self.assertTrue(str(cm.exception).startswith("the multipart/form-data body is malformed: "))
                self.assertIn(message, str(cm.exception))

    def test_other_payloads(self):
        self.assertEqual(cortex_shim.parse_payload("", b"\x00raw"), b"\x00raw")
        self.assertEqual(cortex_shim.parse_payload("text/plain", b"a=1"), b"a=1")
        self.assertEqual(cortex_shim.parse_payload("Application/JSON; charset=utf-8", b'{"a": 1}'), {"a": 1})


class TestTracebackPaths(unittest.TestCase):
    """Tracebacks name the project's files as the project has them, not the server's copy."""

    def test_frames_in_the_project_are_relative_and_others_are_kept(self):
        with tempfile.TemporaryDirectory() as project:
            path = os.path.join(project, "pkg", "model.py")
            os.makedirs(os.path.dirname(path))
            with open(path, "w") as f:
                f.write("def load():\n    raise ValueError('no weights')\n")
            with mock.patch.dict(os.environ, {"CORTEX_PROJECT_DIR": project}):
                namespace = {}
                exec(compile(open(path).read(), path, "exec"), namespace)
                try:
                    namespace["load"]()
                except ValueError as e:
                    text = cortex_shim._format_traceback(e)
                self.assertIn('File "pkg/model.py", line 2, in load', text)
                self.assertIn("raise ValueError('no weights')", text)
                self.assertNotIn(project, text)
                self.assertEqual(cortex_shim._as_in_project("/usr/lib/x.py"), "/usr/lib/x.py")
                self.assertEqual(cortex_shim._as_in_project("<string>"), "<string>")


class TestRender(unittest.TestCase):
    class Response:
        def __init__(self, body=b"", status_code=200, media_type=None, headers=None):
            self.body, self.status_code, self.media_type = body, status_code, media_type
            if headers is not None:
                self.headers = headers

    def test_plain_values(self):
        self.assertEqual(cortex_shim.render(b"x"), (200, b"x", [("Content-Type", "application/octet-stream")]))
        self.assertEqual(cortex_shim.render("é"), (200, "é".encode(), [("Content-Type", "text/plain; charset=utf-8")]))
        self.assertEqual(cortex_shim.render({"a": 1}), (200, b'{"a": 1}', [("Content-Type", "application/json")]))
        with self.assertRaises(TypeError):
            cortex_shim.render({"a": object()})

    def test_response_like(self):
        R = self.Response
        self.assertEqual(cortex_shim.render(R(b"x", 201)), (201, b"x", []))
        self.assertEqual(
            cortex_shim.render(R(b"x", 202, "text/csv")), (202, b"x", [("Content-Type", "text/csv; charset=utf-8")])
        )
        self.assertEqual(cortex_shim.render(R(b"x", 200, "image/png")), (200, b"x", [("Content-Type", "image/png")]))
        status, body, headers = cortex_shim.render(
            R(
                b"{}",
                200,
                "text/plain",
                {
                    "content-type": "application/json",
                    "Content-Length": "999",
                    "Connection": "close",
                    "Transfer-Encoding": "chunked",
                    "Set-Cookie": ["a=1", "b=2"],
                    "X-Num": 5,
                },
            )
        )
        self.assertEqual(
            headers,
            [("content-type", "application/json"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("X-Num", "5")],
        )
        for bad in (R(b"", 99), R(b"", 600), R(b"", 200, None, {"X-A": "1\r\nX-B: 2"}), R(b"", 200, None, {"Bad Name": "1"})):
            with self.assertRaises(ValueError):
                cortex_shim.render(bad)

    def test_not_response_like(self):
        class HalfResponse:
            body = "a str body"
            status_code = 200

        with self.assertRaises(TypeError):  # JSON then, which fails
            cortex_shim.render(HalfResponse())


class TestSettings(unittest.TestCase):
    def settings(self, **env):
        base = {"CORTEX_PORT": "8080", "CORTEX_PREDICTOR_PATH": "p.py"}
        base.update(env)
        with mock.patch.dict(os.environ, base, clear=True):
            return cortex_shim.read_settings()

    def test_max_body_bytes(self):
        self.assertEqual(self.settings()["max_body_bytes"], 64 * 1024 * 1024)
        self.assertEqual(self.settings(CORTEX_MAX_BODY_BYTES="1000")["max_body_bytes"], 1000)
        for bad in ("0", "-1", "lots"):
            with self.subTest(bad=bad), self.assertRaises(cortex_shim.EnvError):
                self.settings(CORTEX_MAX_BODY_BYTES=bad)

    def test_shutdown_budget(self):
        # the server SIGKILLs 5 s after SIGTERM
        self.assertLessEqual(cortex_shim.REQUEST_STOP_GRACE + cortex_shim.EXIT_HOOKS_GRACE, 4.0)
        self.assertLessEqual(cortex_shim.WORKER_STOP_GRACE, 4.0)


# ---------------------------------------------------------------------------
# request bodies


def read_request(head, body, limit=10 * 1024 * 1024, piece=None):
    """Parses a POST with the header lines `head` and then `body`, as a connection does,
    the bytes arriving `piece` at a time (all at once by default), then the end of the
    stream: (the head, its reader, the body, the bytes left after it). Raises BadRequest
    (also for a body cut short) or PayloadTooLarge."""
    data = b"POST / HTTP/1.1\r\n" + head.encode("latin-1") + b"\r\n" + body
    piece = piece or len(data) or 1
    buf = bytearray()
    parsed = reader = None
    for i in range(0, len(data), piece):
        buf += data[i : i + piece]
        if parsed is None:
            found = cortex_shim.parse_head(buf)
            if found is None:
                continue
            parsed, taken = found
            del buf[:taken]
            reader = cortex_shim.request_body(parsed, limit)
        out = reader.take(buf)
        if out is not None:
            return parsed, reader, out, bytes(buf)
    if reader is None:
        raise AssertionError("the head never completed")
    raise cortex_shim.BadRequest(reader.incomplete)


class TestHeads(unittest.TestCase):
    def test_request_line_and_headers(self):
        buf = bytearray(b"\r\nGET /p/a?x=1&y=2 HTTP/1.1\r\nHost: h\r\nX-Two:  a b \r\nx-two: c\r\n\r\nrest")
        head, taken = cortex_shim.parse_head(buf)
        self.assertEqual((head.method, head.path, head.query, head.version), ("GET", "/p/a", "x=1&y=2", "HTTP/1.1"))
        self.assertEqual(head.get("x-TWO"), "a b")
        self.assertEqual(head.get_all("X-Two"), ["a b", "c"])
        self.assertTrue(head.keep_alive)
        self.assertEqual(bytes(buf[taken:]), b"rest")

    def test_incomplete_and_bare_lf(self):
        self.assertIsNone(cortex_shim.parse_head(bytearray(b"GET / HTTP/1.1\r\nHost: h\r\n")))
        head, _ = cortex_shim.parse_head(bytearray(b"GET / HTTP/1.0\nConnection: keep-alive\n\n"))
        self.assertTrue(head.keep_alive)
        head, _ = cortex_shim.parse_head(bytearray(b"GET / HTTP/1.0\r\n\r\n"))
        self.assertFalse(head.keep_alive)
        head, _ = cortex_shim.parse_head(bytearray(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"))
        self.assertFalse(head.keep_alive)

    def test_malformed(self):
        for raw, message in (
            (b"GET /\r\n\r\n", "malformed request line"),
            (b"GET / HTTP/2.0\r\n\r\n", "unsupported HTTP version"),
            (b"G(T / HTTP/1.1\r\n\r\n", "malformed method"),
            (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", "malformed header line"),
            (b"GET / HTTP/1.1\r\n folded: x\r\n\r\n", "malformed header line"),
        ):
            with self.subTest(raw=raw):
                with self.assertRaises(cortex_shim.BadRequest) as cm:
                    cortex_shim.parse_head(bytearray(raw))
                self.assertIn(message, str(cm.exception))
        with self.assertRaises(cortex_shim.HeadTooLarge):
            cortex_shim.parse_head(bytearray(b"GET / HTTP/1.1\r\nX: " + b"a" * cortex_shim.HEAD_LIMIT))


class TestBodyReading(unittest.TestCase):
    def test_content_length_in_pieces(self):
        data = os.urandom(300 * 1024 + 7)
        for piece in (None, 1000, 65536):
            with self.subTest(piece=piece):
                _, _, body, rest = read_request("Content-Length: %d\r\n" % len(data), data + b"next request", piece=piece)
                self.assertEqual(body, data)
                self.assertTrue(b"next request".startswith(rest))  # nothing after the body was taken

    def test_no_body(self):
        _, _, body, rest = read_request("", b"GET")
        self.assertEqual((body, rest), (b"", b"GET"))

    def test_chunked(self):
        big = os.urandom(200 * 1024)
        body = b"5;ext=1\r\nhello\r\n" + (b"%x\r\n" % len(big)) + big + b"\r\n" + b"000\r\nX-Trailer: 1\r\n\r\nnext"
        for piece in (None, 1, 7, 4096):
            if piece == 1:
                body_small = b"5;ext=1\r\nhello\r\n3\r\nabc\n0\r\nX-Trailer: 1\r\n\r\nnext"
                _, reader, out, rest = read_request("Transfer-Encoding: chunked\r\n", body_small, piece=1)
                self.assertEqual((out, rest), (b"helloabc", b""))
                continue
            with self.subTest(piece=piece):
                _, reader, out, rest = read_request("Transfer-Encoding: chunked\r\n", body, piece=piece)
                self.assertEqual(out, b"hello" + big)
                self.assertTrue(b"next".startswith(rest))
                self.assertFalse(reader.both_framings)
        _, reader, out, _ = read_request("Transfer-Encoding: Chunked\r\nContent-Length: 3\r\n", b"1\r\na\r\n0\r\n\r\n")
        self.assertEqual(out, b"a")
        self.assertTrue(reader.both_framings)  # both framings: never reuse the connection

    def test_bad_framing(self):
        for head, body, message in (
            ("Content-Length: abc\r\n", b"", "invalid Content-Length"),
            ("Content-Length: -1\r\n", b"", "invalid Content-Length"),
            ("Content-Length: +5\r\n", b"abcde", "invalid Content-Length"),
            ("Content-Length: 3\r\nContent-Length: 4\r\n", b"abcd", "invalid Content-Length"),
            ("Content-Length: 10\r\n", b"short", "incomplete request body"),
            ("Transfer-Encoding: gzip, chunked\r\n", b"", "unsupported Transfer-Encoding"),
            ("Transfer-Encoding: chunked\r\n", b"zz\r\n", "invalid chunk size 'zz'"),
            ("Transfer-Encoding: chunked\r\n", b"0x5\r\nhello\r\n0\r\n\r\n", "invalid chunk size '0x5'"),
            ("Transfer-Encoding: chunked\r\n", b"-5\r\n", "invalid chunk size"),
            ("Transfer-Encoding: chunked\r\n", b"\r\n", "invalid chunk size"),
            ("Transfer-Encoding: chunked\r\n", b"1" * 17 + b"\r\n", "absurd chunk size"),
            ("Transfer-Encoding: chunked\r\n", b"1" * 20000, "line is too long"),
            ("Transfer-Encoding: chunked\r\n", b"5\r\nhel", "incomplete chunked request body"),
            ("Transfer-Encoding: chunked\r\n", b"5\r\nhelloXX0\r\n\r\n", "does not end with CRLF"),
            ("Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n", "incomplete chunked request body"),
            ("Transfer-Encoding: chunked\r\n", b"0\r\nX-T: 1\r\n", "incomplete chunked request body"),
        ):
            with self.subTest(head=head, body=body[:30]):
                with self.assertRaises(cortex_shim.BadRequest) as cm:
                    read_request(head, body)
                self.assertIn(message, str(cm.exception))

    def test_too_large(self):
        self.assertEqual(read_request("Content-Length: 100\r\n", b"x" * 100, limit=100)[2], b"x" * 100)
        for head, body in (
            ("Content-Length: 101\r\n", b"x" * 101),
            ("Content-Length: %d\r\n" % (10 ** 30), b""),
            ("Content-Length: 0000000000000000000000000000000101\r\n", b"x" * 101),
            ("Transfer-Encoding: chunked\r\n", b"65\r\n" + b"x" * 101 + b"\r\n0\r\n\r\n"),
            ("Transfer-Encoding: chunked\r\n", b"32\r\n" + b"x" * 50 + b"\r\n33\r\n"),
            ("Transfer-Encoding: chunked\r\n", b"ffffffffffffffff\r\n"),
        ):
            with self.subTest(head=head, body=body[:30]):
                with self.assertRaises(cortex_shim.PayloadTooLarge):
                    read_request(head, body, limit=100)
        self.assertEqual(
            read_request("Content-Length: 00000000000000000000000000000000000005\r\n", b"hello", limit=100)[2],
            b"hello",
        )


class TestBodiesOverHTTP(ShimTestCase):
    LIMIT = 1000

    @classmethod
    def setUpClass(cls):
        cls.shim = Shim(ECHO, env={"CORTEX_MAX_BODY_BYTES": str(cls.LIMIT)})
        cls.shim.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.shim.close()

    def conn(self):
        c = RawConn(self.shim.port)
        self.addCleanup(c.close)
        return c

    def assert_error(self, response, status, kind):
        self.assertIsNotNone(response, "the connection was closed without a response")
        self.assertEqual(response[0], status, response)
        self.assertEqual(response[1]["content-type"], "application/json")
        err = json.loads(response[2])
        self.assertEqual(set(err), {"kind", "message"})
        self.assertEqual(err["kind"], kind)
        return err

    def test_limit_exactly(self):
        body = json.dumps({"s": "x" * (self.LIMIT - len('{"s": ""}'))}).encode()
        self.assertEqual(len(body), self.LIMIT)
        status, _, out = self.shim.request("POST", "/", body, {"Content-Type": "application/json"})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(out)["payload"], json.loads(body))

    def test_413_without_reading_the_body(self):
        c = self.conn()
        started = time.monotonic()
        # declares a body it never sends: the answer cannot wait for it
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n")
        response = c.response()
        err = self.assert_error(response, 413, "payload_too_large")
        self.assertIn("1000 bytes", err["message"])
        self.assertEqual(response[1]["connection"], "close")
        self.assertTrue(c.at_eof())
        self.assertLess(time.monotonic() - started, 5)

    def test_413_readable_after_sending_the_body(self):
        c = self.conn()
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000)
        response = c.response()
        self.assert_error(response, 413, "payload_too_large")
        self.assertEqual(response[1]["connection"], "close")
        self.assertTrue(c.at_eof())

    def test_413_before_100_continue(self):
        c = self.conn()
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
        response = c.response()
        self.assert_error(response, 413, "payload_too_large")  # not 100 Continue
        self.assertTrue(c.at_eof())
        # a body within the limit gets its 100 Continue
        c = self.conn()
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        self.assertEqual(c.file.readline(), b"HTTP/1.1 100 Continue\r\n")
        self.assertEqual(c.file.readline(), b"\r\n")
        c.send(b"ab")
        status, _, out = c.response()
        self.assertEqual((status, json.loads(out)["payload"]), (200, {"bytes": list(b"ab")}))

    def test_413_chunked(self):
        c = self.conn()
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):
            c.send(b"190\r\n" + b"x" * 400 + b"\r\n")  # 1200 bytes in all
        response = c.response()
        self.assert_error(response, 413, "payload_too_large")
        self.assertEqual(response[1]["connection"], "close")
        self.assertTrue(c.at_eof())

    def test_bad_chunk_sizes_are_400(self):
        for size_line in (b"zz", b"0x10", b"1" * 17):
            with self.subTest(size_line=size_line):
                c = self.conn()
                c.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + size_line + b"\r\n")
                response = c.response()
                self.assert_error(response, 400, "bad_request")
                self.assertEqual(response[1]["connection"], "close")
                self.assertTrue(c.at_eof())

    def test_chunked_with_extensions_and_trailers(self):
        c = self.conn()
        c.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;name=value\r\n[1,\r\n2\r\n 2\r\n1\r\n]\r\n0\r\nX-Checksum: 1\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        status, headers, out = c.response()
        self.assertEqual((status, json.loads(out)["payload"]), (200, [1, 2]))
        self.assertNotIn("connection", headers)
        self.assertEqual(c.response()[0], 200)

    def test_get_head_and_405_bodies_are_discarded(self):
        fake = b"POST /smuggled HTTP/1.1\r\nContent-Length: 0\r\n\r\n"  # a body that looks like a request
        c = self.conn()
        c.send(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(fake), fake)
            + b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(fake), fake)
            + b"HEAD / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(fake), fake)
            + b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(fake), fake)
            + b"DELETE / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(fake), fake)
            + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        self.assertEqual(c.response()[:1], (200,))
        status, _, body = c.response()
        self.assertEqual((status, json.loads(body)["message"][:22]), (200, "make a prediction by s"))
        status, headers, body = c.response(head=True)
        self.assertEqual((status, body), (200, b""))
        status, headers, body = c.response()
        self.assertEqual((status, headers["allow"], json.loads(body)["kind"]), (405, "GET, HEAD, POST", "method_not_allowed"))
        self.assertEqual(c.response()[0], 405)
        status, headers, body = c.response()
        self.assertEqual((status, json.loads(body)), (200, {"status": "ok"}))
        self.assertNotIn("connection", headers)  # still keep-alive

    def test_get_bodies_are_limited_too(self):
        for method in (b"GET", b"PUT"):
            with self.subTest(method=method):
                c = self.conn()
                c.send(method + b" / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
                self.assert_error(c.response(), 413, "payload_too_large")
                self.assertTrue(c.at_eof())
        c = self.conn()
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        response = c.response()
        self.assert_error(response, 400, "bad_request")
        self.assertEqual(response[1]["connection"], "close")

    def test_invalid_content_length_is_400(self):
        for value in (b"abc", b"-1", b"+5", b"1_0"):
            with self.subTest(value=value):
                c = self.conn()
                c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + value + b"\r\n\r\n")
                response = c.response()
                err = self.assert_error(response, 400, "bad_request")
                self.assertEqual(err["message"], "invalid Content-Length")
                self.assertEqual(response[1]["connection"], "close")

    def test_unsupported_transfer_encoding_is_400(self):
        c = self.conn()
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n")
        self.assert_error(c.response(), 400, "bad_request")
        self.assertTrue(c.at_eof())


# ---------------------------------------------------------------------------
# headers, query_params, forms and Response objects over HTTP

REQUEST_VIEW = """
import json
from collections.abc import Mapping

class PythonPredictor:
    def predict(self, payload, query_params, headers):
        try:
            headers["x-new"] = "1"
            writable = True
        except TypeError:
            writable = False
        out = {
            "writable": writable,
            "is_mapping": isinstance(headers, Mapping) and isinstance(query_params, Mapping),
            "ct": [headers["Content-Type"], headers["content-type"], headers.get("CONTENT-TYPE")],
            "missing": headers.get("X-Missing", "default"),
            "in": ["X-Custom" in headers, "x-custom" in headers, "X-Missing" in headers],
            "keys_lower": all(k == k.lower() for k in headers),
            "rep": [headers.get("X-Rep"), headers.getlist("x-rep")],
            "dict": dict(headers),
            "q": [dict(query_params), query_params.get("a"), query_params.getlist("a"), query_params.getlist("zzz")],
            "payload_type": type(payload).__name__,
        }
        if not isinstance(payload, (bytes, list, dict)) or type(payload).__name__ == "FormData":
            fields = {}
            for key in payload:
                values = []
                for v in payload.getlist(key):
                    if isinstance(v, str):
                        values.append(v)
                    else:
                        data = v.read()
                        v.seek(0)
                        values.append({
                            "filename": v.filename,
                            "content_type": v.content_type,
                            "hex": data.hex(),
                            "again": v.file.read() == data,
                        })
                fields[key] = values
            out["fields"] = fields
            out["form_get"] = [payload.get("a"), payload.get("missing", "dflt"), "a" in payload]
        return out
"""


class TestRequestView(ShimTestCase):
    @classmethod
    def setUpClass(cls):
        cls.shim = Shim(REQUEST_VIEW)
        cls.shim.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.shim.close()

    def post(self, path, body, content_type, extra=()):
        conn = http.client.HTTPConnection("127.0.0.1", self.shim.port, timeout=DEADLINE)
        try:
            conn.putrequest("POST", path, skip_accept_encoding=True)
            conn.putheader("Content-Type", content_type)
            conn.putheader("Content-Length", str(len(body)))
            for name, value in extra:
                conn.putheader(name, value)
            conn.endheaders(body)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type"), resp.read()
        finally:
            conn.close()

    def test_headers_and_query_params(self):
        status, _, body = self.post(
            "/p?a=1&b=x&a=2&empty=",
            b"{}",
            "application/json",
            [("X-Custom", "v"), ("X-Rep", "one"), ("X-Rep", "two")],
        )
        self.assertEqual(status, 200, body)
        out = json.loads(body)
        self.assertFalse(out["writable"])
        self.assertTrue(out["is_mapping"])
        self.assertEqual(out["ct"], ["application/json"] * 3)
        self.assertEqual(out["missing"], "default")
        self.assertEqual(out["in"], [True, True, False])
        self.assertTrue(out["keys_lower"])
        self.assertEqual(out["rep"], ["one", ["one", "two"]])
        self.assertEqual(out["dict"]["x-custom"], "v")
        self.assertEqual(out["q"], [{"a": "2", "b": "x", "empty": ""}, "2", ["1", "2"], []])
        self.assertEqual(out["payload_type"], "dict")

    def test_urlencoded_form(self):
        status, _, body = self.post("/", b"a=1&b=h%C3%A9llo+w&a=2&empty=", "application/x-www-form-urlencoded")
        self.assertEqual(status, 200, body)
        out = json.loads(body)
        self.assertEqual(out["payload_type"], "FormData")
        self.assertEqual(out["fields"], {"a": ["1", "2"], "b": ["héllo w"], "empty": [""]})
        self.assertEqual(out["form_get"], ["2", "dflt", True])

    def test_multipart_form(self):
        data = bytes(range(256))
        body = (
            b'--b0undary\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'
            b'--b0undary\r\nContent-Disposition: form-data; name="img"; filename="pic.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + data + b"\r\n"
            b'--b0undary\r\nContent-Disposition: form-data; name="a"\r\n\r\nzw\xc3\xa9i\r\n'
            b"--b0undary--\r\n"
        )
        status, _, out = self.post("/", body, 'multipart/form-data; boundary="b0undary"')
        self.assertEqual(status, 200, out)
        out = json.loads(out)
        self.assertEqual(out["payload_type"], "FormData")
        self.assertEqual(out["fields"]["a"], ["1", "zwéi"])
        self.assertEqual(
            out["fields"]["img"],
            [{"filename": "pic.png", "content_type": "image/png", "hex": data.hex(), "again": True}],
        )
        self.assertEqual(out["form_get"], ["zwéi", "dflt", True])

    def test_malformed_forms_are_400(self):
        for content_type, body in (
            ("multipart/form-data", b"--x\r\n"),
            ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'),
            ("multipart/form-data; boundary=x", b"nothing like a multipart body"),
            ("application/x-www-form-urlencoded", b"a=%ff"),
        ):
            with self.subTest(content_type=content_type, body=body):
                status, ctype, out = self.post("/", body, content_type)
                self.assertEqual((status, ctype), (400, "application/json"), out)
                err = json.loads(out)
                self.assertEqual(set(err), {"kind", "message"})
                self.assertEqual(err["kind"], "bad_request")
        # the server keeps serving on the same terms
        self.assertEqual(self.post("/", b"a=1", "application/x-www-form-urlencoded")[0], 200)


RESPONSES = """
class Response:  # shaped like starlette.responses.Response
    def __init__(self, content=b"", status_code=200, headers=None, media_type=None):
        self.body = content if isinstance(content, bytes) else content.encode("utf-8")
        self.status_code = status_code
        self.media_type = media_type
        if headers is not None:
            self.headers = headers

class RawHeaders:  # like Starlette's Headers: items() gives every pair
    def __init__(self, pairs):
        self.pairs = pairs
    def items(self):
        return list(self.pairs)

class PythonPredictor:
    def predict(self, query_params):
        kind = query_params.get("kind")
        if kind == "created":
            return Response(b'{"id": 7}', 201, {"X-Request-Id": "abc", "Set-Cookie": ["a=1", "b=2"],
                            "Content-Length": "999", "Connection": "close", "Server": "custom"}, "application/json")
        if kind == "text":
            return Response("h\u00e9llo", 202, media_type="text/csv")
        if kind == "starlette":
            return Response(b"<p>hi</p>", 200, RawHeaders([("content-length", "9"),
                            ("content-type", "text/html; charset=utf-8"), ("x-a", "1"), ("x-a", "2")]), "text/html")
        if kind == "untyped":
            return Response(b"raw", 418)
        if kind == "no_content":
            return Response(b"dropped", 204, {"X-A": "1"})
        if kind == "bad_status":
            return Response(b"", 99)
        if kind == "bad_header":
            return Response(b"", 200, {"X-Evil": "a\\r\\nInjected: 1"})
        return "plain"
"""


class TestResponses(ShimTestCase):
    @classmethod
    def setUpClass(cls):
        cls.shim = Shim(RESPONSES)
        cls.shim.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.shim.close()

    def test_passed_through_on_a_kept_alive_connection(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.shim.port, timeout=DEADLINE)
        self.addCleanup(conn.close)
        conn.connect()
        sock = conn.sock

        conn.request("POST", "/?kind=created")
        resp = conn.getresponse()
        self.assertEqual((resp.status, resp.read()), (201, b'{"id": 7}'))
        self.assertEqual(resp.getheader("Content-Type"), "application/json")
        self.assertEqual(resp.getheader("X-Request-Id"), "abc")
        self.assertEqual(resp.msg.get_all("Set-Cookie"), ["a=1", "b=2"])
        self.assertEqual(resp.getheader("Content-Length"), "9")  # the shim frames the body itself
        self.assertIsNone(resp.getheader("Connection"))
        self.assertEqual(resp.msg.get_all("Server"), ["custom"])
        self.assertEqual(len(resp.msg.get_all("Date")), 1)

        conn.request("POST", "/?kind=text")
        resp = conn.getresponse()
        self.assertEqual((resp.status, resp.read().decode("utf-8")), (202, "héllo"))
        self.assertEqual(resp.getheader("Content-Type"), "text/csv; charset=utf-8")

        conn.request("POST", "/?kind=starlette")
        resp = conn.getresponse()
        self.assertEqual((resp.status, resp.read()), (200, b"<p>hi</p>"))
        self.assertEqual(resp.msg.get_all("Content-Type"), ["text/html; charset=utf-8"])
        self.assertEqual(resp.msg.get_all("Content-Length"), ["9"])
        self.assertEqual(resp.msg.get_all("x-a"), ["1", "2"])

        conn.request("POST", "/?kind=untyped")
        resp = conn.getresponse()
        self.assertEqual((resp.status, resp.read(), resp.getheader("Content-Type")), (418, b"raw", None))

        conn.request("POST", "/?kind=no_content")
        resp = conn.getresponse()
        self.assertEqual((resp.status, resp.read(), resp.getheader("X-A")), (204, b"", "1"))

        conn.request("POST", "/")
        resp = conn.getresponse()
        self.assertEqual((resp.status, resp.read()), (200, b"plain"))
        self.assertEqual(resp.msg.get_all("Server"), ["cortex"])
        self.assertIs(conn.sock, sock, "the connection was not kept alive")

    def test_invalid_response_is_500(self):
        for kind, message in (("bad_status", "invalid status_code 99"), ("bad_header", "contains a line break")):
            with self.subTest(kind=kind):
                status, ctype, body = self.shim.request("POST", "/?kind=" + kind)
                self.assertEqual((status, ctype), (500, "application/json"))
                self.assertEqual(json.loads(body), {"kind": "internal", "message": "internal server error"})
                wait_until(lambda: message in self.shim.stderr(), what="the error on stderr")


# ---------------------------------------------------------------------------
# shutdown within the server's budget (SIGKILL 5 s after SIGTERM)

STUCK = """
import os, threading, time

class PythonPredictor:
    def __init__(self, config):
        open("init-%d" % os.getpid(), "w").close()

    def predict(self, query_params):
        mode = query_params.get("mode")
        if mode == "stuck":
            open("stuck-%d" % os.getpid(), "w").close()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                time.sleep(0.05)
        if mode == "stop":
            import signal
            open("stopped-%d" % os.getpid(), "w").close()
            os.kill(os.getpid(), signal.SIGSTOP)
        return os.getpid()

    def post_predict(self, query_params):
        if query_params.get("post") == "forever":
            open("post-%d" % os.getpid(), "w").close()
            threading.Event().wait()
"""


def background_request(shim, path, timeout=DEADLINE):
    """Sends a POST from a thread; returns (thread, result dict)."""
    result = {}

    def run():
        try:
            result["r"] = shim.request("POST", path, timeout=timeout)
        except Exception as e:
            result["r"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


class TestShutdownBudget(ShimTestCase):
    def test_in_flight_request_gets_3_seconds(self):
        shim = self.start(STUCK)
        t, result = background_request(shim, "/?mode=stuck")
        wait_until(lambda: marker_pids(shim, "stuck-"), what="the request to start")
        started = time.monotonic()
        shim.proc.send_signal(signal.SIGTERM)
        self.assertEqual(shim.wait_exit(), 0)
        elapsed = time.monotonic() - started
        self.assertGreater(elapsed, 2.5)  # it did wait for the request...
        self.assertLess(elapsed, 6.0)  # ... but not forever (slack for a loaded machine)
        t.join(DEADLINE)
        self.assertIsInstance(result.get("r"), Exception)  # cut off without a response
        self.assertEqual(shim.stderr(), "")

    def test_post_predict_does_not_delay_exit(self):
        shim = self.start(STUCK)
        self.assertEqual(shim.request("POST", "/?post=forever")[0], 200)
        wait_until(lambda: marker_pids(shim, "post-"), what="post_predict to start")
        started = time.monotonic()
        shim.proc.send_signal(signal.SIGTERM)
        self.assertEqual(shim.wait_exit(), 0)
        self.assertLess(time.monotonic() - started, AT_ONCE)
        self.assertIn("test-api: shut down", shim.stdout())

    def test_sigterm_during_slow_init_exits_at_once(self):
        shim = self.start(
            """
            import time
            class PythonPredictor:
                def __init__(self, config):
                    open("initialising", "w").close()
                    time.sleep(30)
                def predict(self):
                    return 1
            """,
            ready=False,
        )
        wait_until(lambda: os.path.exists(os.path.join(shim.dir, "initialising")), what="__init__ to start")
        started = time.monotonic()
        shim.proc.send_signal(signal.SIGTERM)
        self.assertEqual(shim.wait_exit(), 0)
        self.assertLess(time.monotonic() - started, AT_ONCE)
        self.assertEqual(shim.stderr(), "")


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
        # a busy worker leaves new connections to an idle one for up to this long: generous,
        # so that a descheduled idle worker on a loaded machine still gets them
        env.setdefault("CORTEX_ACCEPT_DEFER_SECS", "5")
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

    def test_sigterm_within_budget(self):
        # worker A: a request that never ends (A stops by itself after 3 s);
        # worker B: stopped (SIGSTOP), so only SIGKILL ends it, after 4 s
        shim = self.start_workers(STUCK, processes=2)
        t1, _ = background_request(shim, "/?mode=stuck")
        stuck = wait_until(lambda: marker_pids(shim, "stuck-"), what="the first request to start")[0]
        # the busy worker defers accepting: the other one takes this request
        t2, _ = background_request(shim, "/?mode=stop")
        stopped = wait_until(lambda: marker_pids(shim, "stopped-"), what="the second request to start")[0]
        self.assertNotEqual(stuck, stopped)
        started = time.monotonic()
        shim.proc.send_signal(signal.SIGTERM)
        self.assertEqual(shim.wait_exit(), 0)
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, 6.5)  # the 4 s budget, with slack for a loaded machine
        self.assertGreater(elapsed, 3.5)
        out = shim.stdout()
        self.assertIn("worker process %d did not stop in time; killing it" % stopped, out)
        self.assertNotIn("worker process %d did not stop in time" % stuck, out)
        self.wait_gone([stuck, stopped], "the workers to be gone")
        t1.join(DEADLINE)
        t2.join(DEADLINE)

    def test_post_predict_counts_as_busy(self):
        # threads=1: a worker running a post_predict has no free thread, so a
        # new connection goes to the other worker
        shim = self.start_workers(STUCK, processes=2)
        status, _, body = shim.request("POST", "/?post=forever")
        self.assertEqual(status, 200)
        busy = json.loads(body)
        wait_until(lambda: marker_pids(shim, "post-") == [busy], what="post_predict to start")
        for _ in range(3):
            status, _, body = shim.request("POST", "/", timeout=5)
            self.assertEqual(status, 200)
            self.assertNotEqual(json.loads(body), busy)
        # and it does not delay the shutdown
        started = time.monotonic()
        shim.proc.send_signal(signal.SIGTERM)
        self.assertEqual(shim.wait_exit(), 0)
        self.assertLess(time.monotonic() - started, AT_ONCE)
        self.assertEqual(shim.stderr(), "")

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
