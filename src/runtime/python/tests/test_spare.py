"""A spare interpreter (`cortex_shim.py --spare`): it says it is ready, takes one replica's
start (with its listening socket) from the server's socket, enters it, and serves as that
replica; a start it cannot use ends it with a `cortex: error:` line."""

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import unittest

from .support import DEADLINE, SHIM, free_port, wait_until, RawConn

PREDICTOR = """
import os, sys

class PythonPredictor:
    def __init__(self, config):
        self.config = config

    def predict(self, payload):
        return {
            "config": self.config,
            "cwd": os.getcwd(),
            "argv": sys.argv,
            "path0": sys.path[:3],
            "pycache_prefix": getattr(sys, "pycache_prefix", None),
            "secret": os.environ.get("SPARE_ONLY"),
            "spare_fd": os.environ.get("CORTEX_SPARE_FD"),
            "answer": os.environ.get("ANSWER"),
            "fds": sorted(int(f) for f in os.listdir("/proc/self/fd")),
            "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups()],
            "proc_is_mine": os.stat("/proc/self/environ").st_uid == os.getuid(),
        }
"""


class Spare:
    """A spare process and the server's end of its socket."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="cortex-spare-test-")
        with open(os.path.join(self.dir, "predictor.py"), "w") as f:
            f.write(PREDICTOR)
        self.ours, theirs = socket.socketpair()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin"),
            "CORTEX_SPARE_FD": str(theirs.fileno()),
            "SPARE_ONLY": "x",
            "HOME": "/nonexistent",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-u", SHIM, "--spare"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=[theirs.fileno()],
        )
        theirs.close()
        self.ours.settimeout(DEADLINE)

    def expect(self, byte):
        self.assert_byte(self.ours.recv(1), byte)

    @staticmethod
    def assert_byte(got, byte):
        if got != byte:
            raise AssertionError("the spare said %r, not %r" % (got, byte))

    def send(self, start, fds=()):
        body = json.dumps(start).encode()
        data = struct.pack(">I", len(body)) + body
        # Split in two: the spare reads until it has the whole start.
        self.ours.sendmsg([data[:7]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, bytes(memoryview(struct.pack("%di" % len(fds), *fds))))] if fds else [])
        self.ours.sendall(data[7:])

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
        self.ours.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class SpareTest(unittest.TestCase):
    def spare(self):
        s = Spare()
        self.addCleanup(s.close)
        return s

    def start_for(self, spare, port, **extra):
        cache = os.path.join(spare.dir, "cache")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin"),
            "CORTEX_PORT": str(port),
            "CORTEX_LISTEN_FD": "3",
            "CORTEX_PREDICTOR_PATH": "predictor.py",
            "CORTEX_PREDICTOR_CONFIG": '{"k": 1}',
            "CORTEX_PROJECT_DIR": spare.dir,
            "PYTHONPATH": spare.dir,
            "PYTHONPYCACHEPREFIX": cache,
            "ANSWER": "42",
        }
        start = {
            "argv": [sys.executable, "-u", SHIM],
            "cwd": spare.dir,
            "env": env,
            "user": None,
            "parent": os.getpid(),
            "listen_fd": 0,
            "ruleset_fd": None,
        }
        start.update(extra)
        return start

    def test_a_spare_becomes_the_replica_it_is_given_and_serves_on_its_socket(self):
        spare = self.spare()
        spare.expect(b"R")
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        spare.send(self.start_for(spare, port), [listener.fileno()])
        listener.close()
        spare.expect(b"A")
        self.assertEqual(spare.ours.recv(1), b"", "the spare closes its socket to the server")

        status, _, body = wait_until(lambda: self.ask(port), what="the replica's answer")
        self.assertEqual(status, 200, body)
        got = json.loads(body)
        self.assertEqual(got["config"], {"k": 1})
        self.assertEqual(got["cwd"], spare.dir)
        self.assertEqual(got["argv"], [SHIM])
        # As for `python3 -u cortex_shim.py` with PYTHONPATH: the shim's directory, then
        # PYTHONPATH; the shim puts the project first.
        self.assertEqual(got["path0"], [spare.dir, os.path.dirname(SHIM), spare.dir])
        if hasattr(sys, "pycache_prefix"):
            self.assertEqual(got["pycache_prefix"], os.path.join(spare.dir, "cache"))
        # The spare's own environment is gone; the replica's is there.
        self.assertIsNone(got["secret"])
        self.assertIsNone(got["spare_fd"])
        self.assertEqual(got["answer"], "42")
        # Its listening socket is on fd 3 (the socket to the server is closed: see the EOF).
        self.assertIn(3, got["fds"])

    @unittest.skipUnless(os.geteuid() == 0, "only root can change a spare's user")
    def test_a_spare_started_as_root_becomes_the_replicas_user_for_good(self):
        spare = self.spare()
        for path in [spare.dir, os.path.join(spare.dir, "predictor.py")]:
            os.chmod(path, 0o755)
        spare.expect(b"R")
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        spare.send(self.start_for(spare, port, user=[65534, 65534]), [listener.fileno()])
        listener.close()
        spare.expect(b"A")
        status, _, body = wait_until(lambda: self.ask(port), what="the replica's answer")
        self.assertEqual(status, 200, body)
        got = json.loads(body)
        self.assertEqual(got["ids"], [65534, 65534, 65534, 65534, []])
        # Dumpable again, as after an exec: its /proc entries are its user's.
        self.assertTrue(got["proc_is_mine"])

    @staticmethod
    def ask(port):
        try:
            conn = RawConn(port)
        except OSError:
            return None
        conn.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        got = conn.response()
        conn.close()
        return got

    def test_a_start_the_spare_cannot_use_ends_it_with_an_error_line(self):
        spare = self.spare()
        spare.expect(b"R")
        # It names a descriptor that was not sent.
        spare.send(self.start_for(spare, free_port(), listen_fd=1))
        self.assertEqual(spare.ours.recv(1), b"", "no b'A' for a start it did not enter")
        self.assertEqual(spare.proc.wait(timeout=DEADLINE), 1)
        err = spare.proc.stderr.read().decode()
        self.assertIn("cortex: error: the spare interpreter cannot become the replica:", err)
        self.assertIn("descriptor 1 of 0", err)

    def test_a_spare_whose_server_goes_away_exits(self):
        spare = self.spare()
        spare.expect(b"R")
        spare.ours.close()
        self.assertEqual(spare.proc.wait(timeout=DEADLINE), 1)
        self.assertIn("closed the spare's socket", spare.proc.stderr.read().decode())


if __name__ == "__main__":
    unittest.main()
