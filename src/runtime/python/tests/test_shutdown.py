"""Signals and shutdown within the server's budget (SIGKILL 5 s after SIGTERM)."""

import json
import os
import signal
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

from cortex_runtime.predictor import shutdown_pool

from .support import AT_ONCE, DEADLINE, ECHO, RawConn, STUCK, ShimTestCase, background_request, marker_pids, wait_until, wait_until_refused


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
                wait_until_refused(shim.port)
                conn.send(body)
                status, headers, answer = conn.response()
                self.assertEqual(status, 200)
                self.assertEqual(json.loads(answer)["payload"], {"text": "late"})
                self.assertEqual(headers.get("connection"), "close")
                self.assertEqual(shim.wait_exit(), 0)


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


class TestShutdownPool(unittest.TestCase):
    def test_queued_calls_are_cancelled_and_the_running_one_goes_on(self):
        pool = ThreadPoolExecutor(max_workers=1)
        release = threading.Event()
        running = pool.submit(release.wait, DEADLINE)
        wait_until(running.running, what="the first call to start")
        queued = [pool.submit(time.sleep, 0) for _ in range(3)]
        shutdown_pool(pool)
        self.assertTrue(all(f.cancelled() for f in queued))
        self.assertFalse(running.done())
        with self.assertRaises(RuntimeError):
            pool.submit(time.sleep, 0)
        release.set()
        self.assertTrue(running.result(timeout=DEADLINE))
        for t in list(pool._threads):
            t.join(DEADLINE)
            self.assertFalse(t.is_alive(), "a pool thread did not exit")
