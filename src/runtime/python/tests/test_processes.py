"""Several processes per replica (CORTEX_PROCESSES_PER_REPLICA)."""

import json
import os
import signal
import socket
import threading
import time

from .support import (
    AT_ONCE,
    DEADLINE,
    ECHO,
    INIT_FAILED_PREFIX,
    STUCK,
    ShimTestCase,
    background_request,
    concurrent_posts,
    marker_pids,
    pid_alive,
    wait_until,
)


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
