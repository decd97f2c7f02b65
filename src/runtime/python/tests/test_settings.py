"""The environment: settings read from CORTEX_*, and .env."""

import json
import os
import unittest
from unittest import mock

from cortex_runtime.lifecycle import EXIT_HOOKS_GRACE, REQUEST_STOP_GRACE
from cortex_runtime.settings import EnvError, read_settings
from cortex_runtime.supervisor import WORKER_STOP_GRACE

from .support import ShimTestCase


class TestSettings(unittest.TestCase):
    def settings(self, **env):
        base = {"CORTEX_PORT": "8080", "CORTEX_PREDICTOR_PATH": "p.py"}
        base.update(env)
        with mock.patch.dict(os.environ, base, clear=True):
            return read_settings()

    def test_max_body_bytes(self):
        self.assertEqual(self.settings()["max_body_bytes"], 64 * 1024 * 1024)
        self.assertEqual(self.settings(CORTEX_MAX_BODY_BYTES="1000")["max_body_bytes"], 1000)
        for bad in ("0", "-1", "lots"):
            with self.subTest(bad=bad), self.assertRaises(EnvError):
                self.settings(CORTEX_MAX_BODY_BYTES=bad)

    def test_shutdown_budget(self):
        # the server SIGKILLs 5 s after SIGTERM
        self.assertLessEqual(REQUEST_STOP_GRACE + EXIT_HOOKS_GRACE, 4.0)
        self.assertLessEqual(WORKER_STOP_GRACE, 4.0)


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
