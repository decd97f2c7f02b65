#!/usr/bin/env python3
"""The Ray engine against the local engine, side by side in one run (see BENCHMARKS.md).

    cargo build --release && bash .ci/ray/run.sh 'python3 bench/engines.py'

Runs inside the two-node cluster of .ci/ray/run.sh (loopback only), with the release binary
(or $CORTEX_BENCH_BIN). For each engine, one server, then:

1. deploy -> first 200 of a stdlib python predictor (3 rounds, after one untimed);
2. scale-up 1 -> 2 under load (8 clients, a 50 ms predictor, window 10s, no upscale
   stabilisation): load start -> the second replica ready;
3. replacement after `kill -9` of a replica's program: kill -> a ready replica with another
   process answering 200 (3 rounds);
4. memory per replica: the proportional set size (PSS) of every process but this script's,
   the server's and the cluster's own, before and after an API with 2 replicas is ready,
   divided by 2; and the server's own RSS growth.
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PREDICTOR = """import os
import time

class PythonPredictor:
    def __init__(self, config):
        self.delay = float(config.get("delay", 0))

    def predict(self, payload):
        if self.delay:
            time.sleep(self.delay)
        return {"pid": os.getpid()}
"""


def poll(what, f, timeout=180, every=0.01):
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = f()
            if v:
                return v
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for " + what)
        time.sleep(every)


def post(url, timeout=10):
    req = urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def pss_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def all_pids():
    return {int(p) for p in os.listdir("/proc") if p.isdigit()}


class Server:
    def __init__(self, engine, work):
        self.bin = os.environ.get("CORTEX_BENCH_BIN") or os.path.join(ROOT, "target", "release", "cortex")
        self.work = os.path.join(work, engine)
        os.makedirs(self.work)
        data = os.path.join(self.work, "data")
        args = [self.bin, "server", "--listen", "127.0.0.1:0", "--data-dir", data]
        if engine == "ray":
            args += [
                "--engine", "ray",
                "--ray-address", os.environ["CORTEX_TEST_RAY_ADDRESS"],
                "--ray-token-file", os.environ["CORTEX_TEST_RAY_TOKEN_FILE"],
            ]
        log = open(os.path.join(self.work, "server.log"), "w")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, env=dict(os.environ, CORTEX_LOG="warn"))
        runtime = os.path.join(data, "server.json")
        self.url = poll("the server", lambda: json.load(open(runtime))["url"])
        self.token = open(os.path.join(data, "admin.token")).read().strip()
        self.env = dict(
            os.environ,
            CORTEX_CLI_CONFIG_DIR=os.path.join(self.work, "cli"),
            CORTEX_ENDPOINT=self.url,
            CORTEX_TOKEN=self.token,
        )

    def cortex(self, *args, cwd=None):
        return subprocess.run(
            [self.bin, *args], cwd=cwd, env=self.env, check=True, capture_output=True, text=True
        ).stdout

    def api(self, name):
        req = urllib.request.Request(
            "%s/api/v2/apis/%s" % (self.url, name), headers={"Authorization": "Bearer " + self.token}
        )
        with urllib.request.urlopen(req) as r:
            return json.load(r)

    def ready(self, name):
        return [r for r in self.api(name)["replicas"] if r["phase"] == "ready"]

    def project(self, name, extra_yaml="", delay=0):
        path = os.path.join(self.work, name)
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "predictor.py"), "w") as f:
            f.write(PREDICTOR)
        with open(os.path.join(path, "cortex.yaml"), "w") as f:
            f.write(
                "- name: %s\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n"
                "    config: {delay: %s}\n%s" % (name, delay, extra_yaml)
            )
        return path

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)


def deploy_to_first_200(s):
    times = []
    for i in range(-1, 3):
        name = "first%d" % i if i >= 0 else "warmup"
        path = s.project(name)
        start = time.monotonic()
        s.cortex("deploy", cwd=path)
        poll("first 200", lambda: post(s.url + "/" + name, timeout=5) == 200, every=0.005)
        if i >= 0:
            times.append(time.monotonic() - start)
        s.cortex("delete", name, "-y")
        poll(name + " gone", lambda: name not in [a["name"] for a in list_apis(s)], every=0.05)
    return statistics.median(times)


def list_apis(s):
    req = urllib.request.Request(s.url + "/api/v2/apis", headers={"Authorization": "Bearer " + s.token})
    with urllib.request.urlopen(req) as r:
        body = json.load(r)
    return body if isinstance(body, list) else body.get("apis", [])


def scale_up(s):
    yaml = (
        "  autoscaling:\n    min_replicas: 1\n    max_replicas: 2\n    window: 10s\n"
        "    upscale_stabilization_period: 0s\n"
    )
    s.cortex("deploy", cwd=s.project("elastic", yaml, delay=0.05))
    poll("elastic ready", lambda: len(s.ready("elastic")) == 1)
    time.sleep(10)  # a whole window without traffic, as for an API that has been idle
    stop = threading.Event()

    def client():
        while not stop.is_set():
            post(s.url + "/elastic")

    threads = [threading.Thread(target=client) for _ in range(8)]
    start = time.monotonic()
    for t in threads:
        t.start()
    poll("a second replica", lambda: len(s.ready("elastic")) >= 2, every=0.05)
    took = time.monotonic() - start
    stop.set()
    for t in threads:
        t.join()
    s.cortex("delete", "elastic", "-y")
    return took


def replacement(s):
    s.cortex("deploy", cwd=s.project("victim"))
    times = []
    for _ in range(3):
        replica = poll("victim ready", lambda: (s.ready("victim") or [None])[0])
        pid = replica["pid"]
        start = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        poll(
            "a replacement",
            lambda: any(r["pid"] != pid for r in s.ready("victim")) and post(s.url + "/victim") == 200,
            every=0.005,
        )
        times.append(time.monotonic() - start)
        # Past the crash-loop window: the next kill is not the second in a row.
        time.sleep(1)
    s.cortex("delete", "victim", "-y")
    return statistics.median(times)


def memory(s, others):
    def pss_of_rest():
        return sum(pss_kib(p) for p in all_pids() - others)

    time.sleep(1)
    before, server_before = pss_of_rest(), rss_kib(s.proc.pid)
    s.cortex("deploy", cwd=s.project("pair", "  autoscaling:\n    min_replicas: 2\n    max_replicas: 2\n"))
    poll("two ready replicas", lambda: len(s.ready("pair")) == 2)
    for _ in range(20):
        post(s.url + "/pair")
    time.sleep(2)
    after, server_after = pss_of_rest(), rss_kib(s.proc.pid)
    s.cortex("delete", "pair", "-y")
    return (after - before) / 2 / 1024, (server_after - server_before) / 2 / 1024


def main():
    if "CORTEX_TEST_RAY_ADDRESS" not in os.environ:
        raise SystemExit("run this through .ci/ray/run.sh: bash .ci/ray/run.sh 'python3 bench/engines.py'")
    print("machine: %s, %d cores; %s; Ray %s, two nodes on one machine (1 CPU, 2 GiB each)" % (
        os.uname().machine, os.cpu_count(), time.strftime("%Y-%m-%d"),
        os.environ.get("CORTEX_TEST_RAY_VERSION", "?")))
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for engine in ("local", "ray"):
            s = Server(engine, work)
            try:
                time.sleep(2)  # the server compiles the runtime's bytecode for a moment
                # Everything that runs now (the cluster, this script, the server) is not a replica.
                others = all_pids()
                r = {}
                r["deploy"] = deploy_to_first_200(s)
                r["scale"] = scale_up(s)
                r["replace"] = replacement(s)
                r["pss"], r["server"] = memory(s, others)
                results[engine] = r
                print("%s: %s" % (engine, json.dumps(r)), file=sys.stderr)
            finally:
                s.stop()
    local, ray = results["local"], results["ray"]
    print()
    print("| measure | local engine | Ray engine |")
    print("|---|---|---|")
    print("| deploy -> first 200 (median of 3) | %.0f ms | %.0f ms |" % (local["deploy"] * 1000, ray["deploy"] * 1000))
    print("| scale-up 1 -> 2 under load: load start -> 2nd replica ready | %.1f s | %.1f s |" % (local["scale"], ray["scale"]))
    print("| replacement after kill -9 of the replica's program -> 200 from another (median of 3) | %.0f ms | %.0f ms |" % (local["replace"] * 1000, ray["replace"] * 1000))
    print("| memory per replica (PSS of the processes it adds: program; Ray: + its actor) | %.0f MiB | %.0f MiB |" % (local["pss"], ray["pss"]))
    print("| server RSS per replica | %.1f MiB | %.1f MiB |" % (local["server"], ray["server"]))


if __name__ == "__main__":
    main()
