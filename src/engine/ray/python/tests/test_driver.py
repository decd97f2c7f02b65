"""The driver and its replica actors against a real Ray cluster (.ci/ray/run.sh) and a fake
cortex server (http.server in a thread). Run by .ci/ray/test-driver.sh:

    bash .ci/ray/run.sh 'bash .ci/ray/test-driver.sh'

Each test has its own group; its jobs are stopped and its actors killed at the end, even
when it fails."""

import hashlib
import io
import json
import os
import signal
import socket
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_DIR = os.path.dirname(HERE)  # holds cortex_ray
PROGRAM = os.path.join(HERE, "replica_program.py")

RAY = os.environ.get("CORTEX_TEST_RAY_ADDRESS")
PYTHON = os.environ.get("CORTEX_TEST_RAY_PYTHON", sys.executable)
HEAD_NODE = os.environ.get("CORTEX_TEST_RAY_HEAD_NODE_ID")
NODE2 = os.environ.get("CORTEX_TEST_RAY_NODE2_NODE_ID")
SERVER_TOKEN = "test-server-token"


def ray_token():
    with open(os.environ["CORTEX_TEST_RAY_TOKEN_FILE"]) as f:
        return f.read().strip()


def ray_api(method, path, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(RAY + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + ray_token())
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def http_get(address, path, timeout=2):
    with urllib.request.urlopen("http://%s%s" % (address, path), timeout=timeout) as resp:
        return resp.status, resp.read().decode()


def wait_for(what, check, timeout=60, step=0.1):
    """Polls `check` until it returns something true; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as e:  # noqa: BLE001 - keep polling, remember why
            last = e
            value = None
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out after %ss waiting for %s (last error: %r)" % (timeout, what, last))


class FakeServer:
    """The cortex server's end of the sync: records every sync, answers the desired set
    the test sets (or a status code)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.desired = {}  # group -> list of replicas
        self.answer_status = {}  # group -> an HTTP status to answer instead
        self.syncs = {}  # group -> [body]
        self.output = {}  # (group, id) -> {"stdout": str, "stderr": str}
        self.refused = {}  # group -> syncs answered with answer_status
        self.bad_auth = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                parts = self.path.split("/")
                # /api/v2/engine/ray/groups/{group}/sync
                if len(parts) != 8 or parts[1:6] != ["api", "v2", "engine", "ray", "groups"] or parts[7] != "sync":
                    return self.answer(404, {"error": "no route"})
                group = parts[6]
                if self.headers.get("Authorization") != "Bearer " + SERVER_TOKEN:
                    with fake.lock:
                        fake.bad_auth += 1
                    return self.answer(401, {"error": "token"})
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    status = fake.answer_status.get(group)
                    desired = list(fake.desired.get(group, []))
                    if status:
                        fake.refused[group] = fake.refused.get(group, 0) + 1
                    else:
                        # Output is taken only with a 200: the driver sends it again otherwise.
                        fake.syncs.setdefault(group, []).append(body)
                        for r in body["replicas"]:
                            out = fake.output.setdefault((group, r["id"]), {"stdout": "", "stderr": ""})
                            out["stdout"] += r["stdout"]
                            out["stderr"] += r["stderr"]
                if status:
                    return self.answer(status, {"error": "refused"})
                self.answer(200, {"replicas": desired})

            def answer(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def set_desired(self, group, replicas):
        with self.lock:
            self.desired[group] = replicas

    def last_sync(self, group):
        with self.lock:
            syncs = self.syncs.get(group) or []
            return syncs[-1] if syncs else None

    def sync_count(self, group):
        with self.lock:
            return len(self.syncs.get(group) or [])

    def replica(self, group, rid):
        """The replica `rid` as the last sync reported it (None when absent)."""
        body = self.last_sync(group)
        for r in (body or {}).get("replicas", []):
            if r["id"] == rid:
                return r
        return None

    def out(self, group, rid):
        with self.lock:
            return dict(self.output.get((group, rid), {"stdout": "", "stderr": ""}))


def replica(rid, generation=1, **kw):
    env = {"TEST_REPLICA": rid}
    env.update(kw.pop("env", {}))
    r = {
        "id": rid,
        "generation": generation,
        "argv": [PYTHON, PROGRAM],
        "env": env,
        "num_cpus": 0,
        "memory": None,
        "num_gpus": 0,
        "resources": {},
        "takes_socket": True,
        "grace_seconds": 2.0,
    }
    r.update(kw)
    return r


class DriverTest(unittest.TestCase):
    server = None
    ray = None

    @classmethod
    def setUpClass(cls):
        if not RAY:
            raise unittest.SkipTest("no Ray cluster: run through .ci/ray/run.sh")
        cls.server = FakeServer()
        # The test process connects to the cluster as a Ray driver of its own, only to kill
        # what a test leaves behind.
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = ray_token()
        import ray

        ray.init(address=os.environ["CORTEX_TEST_RAY_GCS_ADDRESS"], namespace="cortex",
                 log_to_driver=False, logging_level="error")
        cls.ray = ray

    @classmethod
    def tearDownClass(cls):
        if cls.server:
            cls.server.close()
        if cls.ray:
            cls.ray.shutdown()

    def setUp(self):
        self.t0 = time.monotonic()
        self.group = "t%s-%s" % (self._testMethodName.split("_")[1], uuid.uuid4().hex[:6])
        self.jobs = []
        self.pids = set()
        self.addCleanup(self.cleanup)

    def cleanup(self):
        for job in self.jobs:
            try:
                ray_api("POST", "/api/jobs/%s/stop" % job)
            except Exception:
                pass
        prefix = "cortex-%s-" % self.group
        for name in self.ray.util.list_named_actors():
            if name.startswith(prefix):
                try:
                    self.ray.kill(self.ray.get_actor(name, namespace="cortex"), no_restart=True)
                except Exception:
                    pass
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        print("  [%s: %.1f s]" % (self._testMethodName, time.monotonic() - self.t0), file=sys.stderr)

    # --- helpers ---------------------------------------------------------------------------

    def submit_driver(self, interval="0.3", working_dir=None):
        """Submits the driver as a Ray job: run from this directory (the nodes share the
        machine's filesystem), or from `working_dir` (a URI Ray unpacks on each node)."""
        job = "cortex-driver-%s-%s" % (self.group, uuid.uuid4().hex[:6])
        runtime_env = {"env_vars": {
            "CORTEX_RAY_SERVER": self.server.url,
            "CORTEX_RAY_GROUP": self.group,
            "CORTEX_RAY_TOKEN": SERVER_TOKEN,
            "CORTEX_RAY_INTERVAL": interval,
        }}
        if working_dir:
            runtime_env["working_dir"] = working_dir
            entrypoint = "exec %s -m cortex_ray" % PYTHON
        else:
            entrypoint = "cd %s && exec %s -m cortex_ray" % (PKG_DIR, PYTHON)
        ray_api("POST", "/api/jobs/", {
            "entrypoint": entrypoint,
            "submission_id": job,
            "runtime_env": runtime_env,
            "metadata": {"cortex": "driver-test"},
        })
        self.jobs.append(job)
        return job

    def job_status(self, job):
        return ray_api("GET", "/api/jobs/%s" % job)["status"]

    def job_logs(self, job):
        try:
            return ray_api("GET", "/api/jobs/%s/logs" % job)["logs"]
        except Exception as e:
            return "(no logs: %s)" % e

    def wait_running(self, rid, generation=1, timeout=60):
        def check():
            r = self.server.replica(self.group, rid)
            if r and r["state"] == "running" and r["generation"] == generation and r["address"]:
                status, body = http_get(r["address"], "/healthz")
                if status == 200:
                    pid = int(http_get(r["address"], "/pid")[1])
                    self.pids.add(pid)
                    return dict(r, pid=pid)
            return None

        try:
            return wait_for("replica %s generation %d running" % (rid, generation), check, timeout)
        except AssertionError:
            for job in self.jobs:
                print(self.job_logs(job), file=sys.stderr)
            print("last sync:", self.server.last_sync(self.group), file=sys.stderr)
            raise

    def actor(self, rid):
        name = "cortex-%s-%s" % (self.group, rid)
        q = "/api/v0/actors?filter_keys=name&filter_predicates=%%3D&filter_values=%s" % name
        return ray_api("GET", q)["data"]["result"]["result"]

    def alive_actor_ids(self, rid):
        return sorted(a["actor_id"] for a in self.actor(rid) if a["state"] != "DEAD")

    # --- tests -----------------------------------------------------------------------------

    def test_1_two_replicas_run_and_forward_output(self):
        self.server.set_desired(self.group, [replica("a"), replica("b", takes_socket=False)])
        self.submit_driver()
        a = self.wait_running("a")
        b = self.wait_running("b")
        self.assertNotEqual(a["address"], b["address"])
        self.assertTrue(a["address"].startswith("127.0.0.1:"))
        self.assertTrue(a["node"])
        self.assertIsNone(a["exit_code"])
        self.assertIsNone(a["death_cause"])
        body = self.server.last_sync(self.group)
        self.assertRegex(body["driver"], r"^\d+@[0-9a-f]+$")
        for rid, info in (("a", a), ("b", b)):
            wait_for("output of %s" % rid, lambda rid=rid, info=info: (
                "hello stdout from %s pid %d\n" % (rid, info["pid"]) in self.server.out(self.group, rid)["stdout"]
                and "hello stderr from %s pid %d\n" % (rid, info["pid"]) in self.server.out(self.group, rid)["stderr"]
            ), timeout=20)
        self.assertEqual(self.server.bad_auth, 0)

    def test_2_generation_bump_and_removal(self):
        lingers = {"TEST_LINGER": "1.5"}  # b takes a while to stop (its grace is 2 s)
        self.server.set_desired(self.group, [replica("a"), replica("b", env=lingers)])
        self.submit_driver()
        a1 = self.wait_running("a")
        b1 = self.wait_running("b")
        actor_a = self.alive_actor_ids("a")
        self.server.set_desired(self.group, [replica("a", generation=2), replica("b", env=lingers)])
        a2 = self.wait_running("a", generation=2)
        self.assertNotEqual(a1["pid"], a2["pid"])
        wait_for("the old process gone", lambda: not os.path.exists("/proc/%d" % a1["pid"])
                 or open("/proc/%d/stat" % a1["pid"]).read().split()[2] == "Z", timeout=10)
        self.assertEqual(self.alive_actor_ids("a"), actor_a, "the same actor runs generation 2")
        # b untouched
        self.assertEqual(int(http_get(b1["address"], "/pid")[1]), b1["pid"])

        def b_unnamed():
            # Named as a replica, or as one whose program is still stopping.
            body = self.server.last_sync(self.group) or {}
            named = [r["id"] for r in body.get("replicas", [])] + body.get("stopping", [])
            return "b" not in named and "a" in named

        self.server.set_desired(self.group, [replica("a", generation=2)])
        wait_for("b gone from the syncs", b_unnamed, timeout=20)
        # The server takes a stop as done once no sync names the replica: its program is
        # gone by then (a delete returns only then).
        host, port = b1["address"].rsplit(":", 1)
        with self.assertRaises(OSError, msg="a sync stopped naming b while its port was open"):
            socket.create_connection((host, int(port)), timeout=1).close()
        wait_for("b's actor dead", lambda: self.alive_actor_ids("b") == [], timeout=30)
        self.assertEqual(int(http_get(a2["address"], "/pid")[1]), a2["pid"])

    def test_3_exit_code_reported_not_restarted(self):
        self.server.set_desired(self.group, [replica("x", env={"TEST_EXIT_CODE": "3"})])
        self.submit_driver()
        exited = wait_for("x exited 3", lambda: (
            (self.server.replica(self.group, "x") or {}).get("state") == "exited"
            and self.server.replica(self.group, "x")), timeout=60)
        self.assertEqual(exited["exit_code"], 3)
        self.assertIsNone(exited["death_cause"])
        self.assertEqual(exited["generation"], 1)
        wait_for("its output", lambda: "hello stderr from x" in self.server.out(self.group, "x")["stderr"], 10)
        # Not restarted: several syncs later it is still exited, and printed only once.
        n = self.server.sync_count(self.group)
        wait_for("5 more syncs", lambda: self.server.sync_count(self.group) >= n + 5, 20)
        r = self.server.replica(self.group, "x")
        self.assertEqual((r["state"], r["exit_code"], r["generation"]), ("exited", 3, 1))
        self.assertEqual(self.server.out(self.group, "x")["stdout"].count("hello stdout"), 1)
        # A bump starts it again (this time it stays up).
        self.server.set_desired(self.group, [replica("x", generation=2)])
        self.wait_running("x", generation=2)

    def test_4_driver_stop_leaves_replicas_and_new_driver_adopts(self):
        self.server.set_desired(self.group, [replica("a"), replica("b")])
        job1 = self.submit_driver()
        a = self.wait_running("a")
        b = self.wait_running("b")
        actors = {rid: self.alive_actor_ids(rid) for rid in ("a", "b")}
        driver1 = self.server.last_sync(self.group)["driver"]
        ray_api("POST", "/api/jobs/%s/stop" % job1)
        wait_for("job 1 ended", lambda: self.job_status(job1) in ("STOPPED", "SUCCEEDED", "FAILED"), 30)
        self.assertEqual(self.job_status(job1), "STOPPED")
        for info in (a, b):
            self.assertEqual(int(http_get(info["address"], "/pid")[1]), info["pid"])
        self.submit_driver()
        wait_for("a sync from the new driver", lambda: (
            self.server.last_sync(self.group)["driver"] != driver1
            and all((self.server.replica(self.group, rid) or {}).get("state") == "running" for rid in ("a", "b"))
        ), timeout=60)
        for rid, info in (("a", a), ("b", b)):
            r = self.server.replica(self.group, rid)
            self.assertEqual(r["address"], info["address"])
            self.assertEqual(int(http_get(r["address"], "/pid")[1]), info["pid"], "no new process")
            self.assertEqual(self.alive_actor_ids(rid), actors[rid], "the same actor")
        n = self.server.sync_count(self.group)
        wait_for("it keeps syncing", lambda: self.server.sync_count(self.group) >= n + 3, 20)

    def test_5_group_gone_kills_actors_and_ends(self):
        self.server.set_desired(self.group, [replica("a"), replica("b")])
        job = self.submit_driver()
        a = self.wait_running("a")
        b = self.wait_running("b")
        with self.server.lock:
            self.server.answer_status[self.group] = 410
        wait_for("the job SUCCEEDED", lambda: self.job_status(job) in ("SUCCEEDED", "FAILED", "STOPPED"), 60)
        self.assertEqual(self.job_status(job), "SUCCEEDED", self.job_logs(job))
        for rid in ("a", "b"):
            self.assertEqual(self.alive_actor_ids(rid), [])
        for info in (a, b):
            with self.assertRaises((OSError, urllib.error.URLError)):
                http_get(info["address"], "/healthz", timeout=1)

    def test_7_actor_death_reported_until_bumped(self):
        self.server.set_desired(self.group, [replica("a")])
        self.submit_driver()
        a1 = self.wait_running("a")
        [actor1] = self.alive_actor_ids("a")
        worker_pid = [x for x in self.actor("a") if x["actor_id"] == actor1][0]["pid"]
        os.kill(worker_pid, signal.SIGKILL)
        dead = wait_for("a reported dead", lambda: (
            (self.server.replica(self.group, "a") or {}).get("death_cause")
            and self.server.replica(self.group, "a")), timeout=30)
        self.assertEqual((dead["state"], dead["exit_code"], dead["generation"]), ("exited", None, 1))

        def program_gone():
            try:
                http_get(a1["address"], "/healthz", timeout=1)
                return False
            except (OSError, urllib.error.URLError):
                return True
        wait_for("the program died with its actor", program_gone, timeout=10)
        n = self.server.sync_count(self.group)
        wait_for("3 more syncs", lambda: self.server.sync_count(self.group) >= n + 3, 20)
        self.assertEqual(self.server.replica(self.group, "a")["state"], "exited")
        self.assertEqual(self.alive_actor_ids("a"), [], "no new actor before the bump")
        self.server.set_desired(self.group, [replica("a", generation=2)])
        a2 = self.wait_running("a", generation=2)
        self.assertNotEqual(a2["node"], a1["node"], "the replacement avoids the node it was lost on")
        [actor2] = self.alive_actor_ids("a")
        self.assertNotEqual(actor1, actor2)

    def test_8_server_errors_keep_replicas_and_output(self):
        self.server.set_desired(self.group, [replica("a")])
        self.submit_driver()
        a = self.wait_running("a")
        with self.server.lock:
            self.server.answer_status[self.group] = 503
        wait_for("a refused sync", lambda: self.server.refused.get(self.group, 0) >= 1, 10)
        http_get(a["address"], "/print?during-outage")
        wait_for("3 more refused syncs", lambda: self.server.refused.get(self.group, 0) >= 4, 20)
        self.assertEqual(int(http_get(a["address"], "/pid")[1]), a["pid"])
        with self.server.lock:
            del self.server.answer_status[self.group]
        wait_for("the output written during the outage",
                 lambda: "printed during-outage\n" in self.server.out(self.group, "a")["stdout"], 20)
        n = self.server.sync_count(self.group)
        wait_for("2 more syncs", lambda: self.server.sync_count(self.group) >= n + 2, 20)
        self.assertEqual(self.server.out(self.group, "a")["stdout"].count("printed during-outage"), 1)
        self.assertEqual(self.server.replica(self.group, "a")["state"], "running")

    def test_9_driver_shipped_as_uploaded_working_dir(self):
        # What the cortex server can do: upload the package (content-addressed name) and
        # start the driver from it, on a cluster whose nodes do not have the code.
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for name in sorted(os.listdir(os.path.join(PKG_DIR, "cortex_ray"))):
                if name.endswith(".py"):
                    z.write(os.path.join(PKG_DIR, "cortex_ray", name), "cortex_ray/" + name)
        data = buf.getvalue()
        package = "cortex_ray_%s.zip" % hashlib.sha256(data).hexdigest()[:32]
        req = urllib.request.Request(RAY + "/api/packages/gcs/" + package, data=data, method="PUT")
        req.add_header("Authorization", "Bearer " + ray_token())
        with urllib.request.urlopen(req, timeout=30) as resp:
            self.assertEqual(resp.status, 200)
        self.server.set_desired(self.group, [replica("a"), replica("b", resources={"node2": 1})])
        self.submit_driver(working_dir="gcs://" + package)
        self.wait_running("a")
        b = self.wait_running("b")
        self.assertEqual(b["node"], NODE2)

    def test_6_custom_resource_places_on_node2(self):
        self.server.set_desired(self.group, [replica("n2", resources={"node2": 1}),
                                             replica("h", resources={"head": 1})])
        self.submit_driver()
        n2 = self.wait_running("n2")
        h = self.wait_running("h")
        self.assertEqual(n2["node"], NODE2)
        self.assertEqual(h["node"], HEAD_NODE)
        self.assertNotEqual(n2["node"], h["node"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
