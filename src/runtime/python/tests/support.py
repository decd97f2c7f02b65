"""What the shim's tests share: a shim process on a temporary project, raw HTTP connections,
waiting."""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest


# the entry file the cortex server runs, beside the cortex_runtime package
SHIM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cortex_shim.py")
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


def wait_until_refused(port):
    """Waits until nothing accepts connections on `port` (a shim that took its stop signal
    closes its listener first)."""

    def refused():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return False
        except OSError:
            return True

    wait_until(refused, what="the shim to stop accepting")


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
            os.makedirs(os.path.dirname(os.path.join(self.dir, name)), exist_ok=True)
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
