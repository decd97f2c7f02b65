"""Threads: one pool per process runs __init__, predict and post_predict."""

import json
import threading
import time

from .support import DEADLINE, ShimTestCase, concurrent_posts, wait_until


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
