"""Failures: a predictor that cannot load or raises, tracebacks named as in the project, the
socket the server hands."""

import json
import os
import socket
import tempfile
import unittest
from unittest import mock

from cortex_runtime.tracebacks import _as_in_project, _format_traceback

from .support import DEADLINE, ECHO, INIT_FAILED_PREFIX, ShimTestCase, wait_until


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
        self.assertNotIn("cortex_runtime", err)
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
                    text = _format_traceback(e)
                self.assertIn('File "pkg/model.py", line 2, in load', text)
                self.assertIn("raise ValueError('no weights')", text)
                self.assertNotIn(project, text)
                self.assertEqual(_as_in_project("/usr/lib/x.py"), "/usr/lib/x.py")
                self.assertEqual(_as_in_project("<string>"), "<string>")


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
