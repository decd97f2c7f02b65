"""Batch workers: POST /batches streams and on_job_complete."""

import json
import os
import shutil
import signal
import tempfile
import time
from unittest import mock

from .support import AT_ONCE, ShimTestCase, StreamConn, ndjson, wait_until, wait_until_refused


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
        # The batch may end only once the stop has been taken (the listener is closed then).
        wait_until_refused(shim.port)
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
