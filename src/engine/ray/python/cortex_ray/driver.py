"""The driver of one group (one API version's replicas): a Ray job's entrypoint,
`python -m cortex_ray`, that keeps the group's actors matching what the cortex server wants.

Environment: `CORTEX_RAY_SERVER` (the server's base URL, reachable from the nodes),
`CORTEX_RAY_GROUP` (`[a-z0-9-]+`), `CORTEX_RAY_TOKEN` (bearer token for the server),
`CORTEX_RAY_INTERVAL` (seconds between syncs, default 0.5).

Every interval the driver polls its actors, then does ONE request,
`POST {server}/api/v2/engine/ray/groups/{group}/sync`, body

    {"driver": "<pid>@<node id>",
     "replicas": [{"id", "generation", "state": "pending|starting|running|exited",
                   "address": "host:port"|null, "pid": int|null, "node": "<node id>"|null,
                   "oom_bytes": int|null (the run was killed for using more than its
                   memory_limit),
                   "exit_code": int|null, "death_cause": str|null,
                   "stdout": "...", "stderr": "..."}]}

(output written since the last successful sync, at most 256 KiB of utf-8 per stream; more
waits for the next sync), and gets 200 `{"replicas": [{"id", "generation", "argv", "env",
"num_cpus", "memory", "num_gpus", "resources", "takes_socket", "grace_seconds",
"memory_limit"}]}`, the
desired set (an optional `cwd` is honoured too, and an optional `working_dir`, a URL Ray
downloads and unpacks as the actor's working directory; in `argv`, `env` and `cwd` the actor
replaces `@CORTEX_RAY_WORKING_DIR@` with that directory and `@CORTEX_RAY_SCRATCH@` with a
directory of its node it may write). Then:

- a desired id without an actor: a named, detached actor `cortex-{group}-{id}` in namespace
  `cortex` (`get_if_exists`, `max_restarts=0`, the given resources) is made and told to run
  the generation;
- a desired generation above the actor's: the actor stops its child (SIGTERM to the group,
  SIGKILL after `grace_seconds`) and starts the new one. The driver never restarts anything on
  its own: a child that exits is reported `exited` with its status until the server bumps the
  generation (or drops the replica);
- an actor no longer desired: its child is stopped gracefully, then the actor is killed;
- an actor that dies (or is unreachable, or does not answer a status call for
  STATUS_TIMEOUT seconds after it had answered before): reported `exited` with
  `death_cause` (and `exit_code` null) until the server bumps the generation, then a new actor
  is made (the dead one's name is freed with `ray.kill` first), on another node than the one
  it was lost on when another fits (a soft label rule);
- 404 or 410: the group is gone: every actor of the group is stopped and killed, exit 0;
  network errors and other answers: retried at the next interval (the actors keep serving),
  for at most CORTEX_RAY_ORPHAN_SECONDS (default 120): a driver whose server has not answered
  that long takes the group for gone (a server that stopped for good must not leave its
  replicas running in the cluster);
- SIGTERM (a Ray job stop): exit at once WITHOUT touching the actors; a new driver of the group
  finds them by name (every live named actor of namespace `cortex` whose identity is this
  group's) and adopts them: the same generation is not started again.
"""

import os
import signal
import sys
import threading
import time

from . import sync as sync_mod
from .actor import ReplicaActor, cap_utf8

NAMESPACE = "cortex"
# A status call of an actor that had answered before, unanswered this long: the actor is
# taken for dead (its node is likely lost; Ray takes 12-15 s to say so).
STATUS_TIMEOUT = 15.0
# How long a removed actor gets beyond its grace period to stop its child before it is killed.
STOP_SLACK = 5.0
# Output the driver keeps per stream and replica while syncs fail.
PENDING_CAP = 4 << 20
SYNC_CAP = 256 << 10


def log(message):
    print("cortex driver: %s" % message, file=sys.stderr, flush=True)


def actor_name(group, replica_id):
    return "cortex-%s-%s" % (group, replica_id)


class Replica:
    """What the driver knows of one replica (an actor, or the memory of a dead one)."""

    def __init__(self, replica_id):
        self.id = replica_id
        self.handle = None  # None: no live actor (never made, or dead)
        self.actor_id = None
        self.generation = None  # the generation the actor runs (as far as the driver knows)
        self.asked = None  # the generation last passed to ensure()
        self.state = "pending"
        self.address = None
        self.pid = None
        self.oom_bytes = None
        self.node = None
        self.exit_code = None
        self.death_cause = None
        self.answered = False  # the actor answered a status call at least once
        self.status_ref = None
        self.status_since = 0.0
        self.stdout = ""
        self.stderr = ""
        self.dead_actor_ids = set()
        self.failed_node = None
        self.target_node = None  # the node its actor was asked to run on

    def report(self):
        out, self.stdout = cap_utf8(self.stdout, SYNC_CAP)
        err, self.stderr = cap_utf8(self.stderr, SYNC_CAP)
        return {
            "id": self.id,
            # 0 while unknown: an adopted actor that has not answered yet.
            "generation": _first_int(self.generation, self.asked, 0),
            "state": self.state,
            "address": self.address,
            "pid": self.pid,
            "oom_bytes": self.oom_bytes,
            "node": self.node,
            "exit_code": self.exit_code,
            "death_cause": self.death_cause,
            "stdout": out,
            "stderr": err,
        }

    def unreport(self, sent):
        """Puts the output of a sync that failed back in front."""
        self.stdout = _keep_tail(sent["stdout"] + self.stdout)
        self.stderr = _keep_tail(sent["stderr"] + self.stderr)


def _first_int(*values):
    for v in values:
        if v is not None:
            return v
    return 0


def _keep_tail(text):
    if len(text) <= PENDING_CAP:
        return text
    dropped = len(text) - PENDING_CAP
    return "[cortex: %d characters of output dropped]\n%s" % (dropped, text[-PENDING_CAP:])


class Driver:
    def __init__(self, ray, server, group, token, interval, orphan_after=120.0):
        self.ray = ray
        self.orphan_after = orphan_after
        self.last_answer = time.monotonic()
        self.server = server
        self.group = group
        self.token = token
        self.interval = interval
        self.replicas = {}  # id -> Replica
        self.stopping = []  # [(handle, status ref or None, deadline, shutdown sent)]
        self.stop_event = threading.Event()
        self.node_id = ray.get_runtime_context().get_node_id()
        self.name = "%d@%s" % (os.getpid(), self.node_id)
        self.remote_class = ray.remote(ReplicaActor)
        self.grace = {}  # id -> grace seconds last desired

    # --- adoption ----------------------------------------------------------------------------

    def adopt(self):
        """Finds the live actors of this group (a driver before this one made them)."""
        prefix = actor_name(self.group, "")
        handles = []
        for name in self.ray.util.list_named_actors():
            if not name.startswith(prefix):
                continue
            try:
                handles.append(self.ray.get_actor(name, namespace=NAMESPACE))
            except ValueError:
                continue  # gone meanwhile
        refs = [h.identity.remote() for h in handles]
        for handle, ref in zip(handles, refs):
            try:
                group, replica_id = self.ray.get(ref, timeout=10)
            except Exception as e:
                log("an actor of the group does not answer (%s): ignored" % type(e).__name__)
                continue
            if group != self.group:
                continue
            r = Replica(replica_id)
            r.handle = handle
            r.actor_id = handle._actor_id.hex()
            self.replicas[replica_id] = r
            log("adopted the actor of replica %s" % replica_id)

    # --- one tick --------------------------------------------------------------------------------

    def poll(self):
        """Asks every live actor for its status and takes the answers that come within a
        second (the others are taken at a later tick)."""
        now = time.monotonic()
        for r in self.replicas.values():
            if r.handle is not None and r.status_ref is None:
                r.status_ref = r.handle.status.remote()
                r.status_since = now
        refs = [r.status_ref for r in self.replicas.values() if r.status_ref is not None]
        ready = set()
        if refs:
            done, _ = self.ray.wait(
                refs, num_returns=len(refs), timeout=min(1.0, self.interval + 0.5)
            )
            ready = set(done)
        now = time.monotonic()
        for r in self.replicas.values():
            if r.status_ref is None:
                continue
            if r.status_ref in ready:
                ref, r.status_ref = r.status_ref, None
                try:
                    status = self.ray.get(ref)
                except self.ray.exceptions.RayActorError as e:
                    self.died(r, "%s: %s" % (type(e).__name__, _first_line(e)))
                    continue
                except self.ray.exceptions.RayError as e:
                    self.died(r, "%s: %s" % (type(e).__name__, _first_line(e)))
                    continue
                self.take_status(r, status)
            elif r.answered and now - r.status_since > STATUS_TIMEOUT:
                self.died(r, "GetTimeoutError: no status answer in %.0f s" % STATUS_TIMEOUT)

    def take_status(self, r, s):
        r.answered = True
        r.generation = s["generation"]
        r.state = s["state"]
        r.address = s["address"]
        r.pid = s.get("pid")
        r.oom_bytes = s.get("oom_bytes")
        r.node = s["node"]
        r.exit_code = s["exit_code"]
        r.death_cause = None
        r.stdout = _keep_tail(r.stdout + s["stdout"])
        r.stderr = _keep_tail(r.stderr + s["stderr"])

    def died(self, r, cause):
        log("replica %s: actor lost: %s" % (r.id, cause))
        if r.actor_id:
            r.dead_actor_ids.add(r.actor_id)
        r.failed_node = r.node
        try:
            # Frees the name, and makes sure an actor that was only unreachable does not come
            # back with its program still running.
            self.ray.kill(r.handle, no_restart=True)
        except Exception:
            pass
        r.handle = None
        r.status_ref = None
        r.state = "exited"
        r.address = None
        r.pid = None
        r.exit_code = None
        r.death_cause = cause
        if r.generation is None:
            r.generation = r.asked

    def apply(self, desired):
        """Makes the actors match the desired set."""
        wanted = {d["id"]: d for d in desired}
        for replica_id in list(self.replicas):
            if replica_id not in wanted:
                self.remove(self.replicas.pop(replica_id))
        for d in desired:
            self.grace[d["id"]] = d["grace_seconds"]
            r = self.replicas.get(d["id"])
            if r is None:
                r = self.replicas[d["id"]] = Replica(d["id"])
            if r.handle is None:
                if r.death_cause is not None and d["generation"] <= (r.generation or 0):
                    continue  # dead: waits for the server to bump the generation
                if not self.create(r, d):
                    continue
            if r.asked is None or d["generation"] > r.asked:
                r.asked = d["generation"]
                r.handle.ensure.remote(d["generation"], _spec(d))

    def create(self, r, d):
        options = dict(
            name=actor_name(self.group, r.id),
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=0,
            max_task_retries=0,
            num_cpus=d["num_cpus"],
            num_gpus=d["num_gpus"],
            resources=d["resources"],
        )
        if d["memory"]:
            options["memory"] = d["memory"]
        if d.get("working_dir"):
            options["runtime_env"] = {"working_dir": d["working_dir"]}
        target = None
        if not d["resources"]:
            # Replicas spread over the nodes, so that losing one loses as few as it can: each
            # new actor prefers the alive node with the fewest of the group's actors (and not
            # the node its last actor was lost on), any node when that one cannot take it.
            # (A label rule: Ray's soft node affinity was seen placing on the driver's node.)
            target = self.pick_node(avoid=r.failed_node)
            if target is not None:
                options["label_selector"] = {"ray.io/node-id": target}
                options["fallback_strategy"] = [{"label_selector": {}}]
        elif r.failed_node:
            # A soft rule: rather not the node where the last actor was lost (Ray may place
            # new actors on a dying node for 12-15 s), any node when no other fits.
            options["label_selector"] = {"ray.io/node-id": "!" + r.failed_node}
            options["fallback_strategy"] = [{"label_selector": {}}]
        try:
            handle = self.remote_class.options(**options).remote(self.group, r.id)
        except (TypeError, ValueError):
            if "label_selector" not in options:
                raise
            del options["label_selector"], options["fallback_strategy"]
            handle = self.remote_class.options(**options).remote(self.group, r.id)
        actor_id = handle._actor_id.hex()
        if actor_id in r.dead_actor_ids:
            # The name still points at the actor that just failed (Ray has not marked it dead
            # yet): kill it again and retry at the next tick.
            try:
                self.ray.kill(handle, no_restart=True)
            except Exception:
                pass
            return False
        r.handle = handle
        r.actor_id = actor_id
        r.target_node = target
        r.failed_node = None
        r.answered = False
        r.asked = None
        r.generation = None
        r.state = "pending"
        r.address = None
        r.pid = None
        r.node = None
        r.exit_code = None
        r.death_cause = None
        log("replica %s: actor %s%s" % (r.id, actor_id, " for node %s" % target if target else ""))
        return True

    def pick_node(self, avoid):
        """The alive node with the fewest live actors of the group, other than `avoid` when
        there is another (None when the nodes cannot be listed)."""
        try:
            nodes = sorted(n["NodeID"] for n in self.ray.nodes() if n.get("Alive"))
        except Exception:
            return None
        nodes = [n for n in nodes if n != avoid] or nodes
        if not nodes:
            return None
        load = dict.fromkeys(nodes, 0)
        for other in self.replicas.values():
            node = other.node or other.target_node
            if other.handle is not None and node in load:
                load[node] += 1
        return min(nodes, key=lambda n: load[n])

    def remove(self, r):
        """Stops a replica no longer desired: a graceful stop of its child, then ray.kill."""
        if r.handle is None:
            return
        grace = self.grace.pop(r.id, 10.0)
        try:
            r.handle.shutdown.remote(grace)
        except Exception:
            pass
        log("replica %s: stopping" % r.id)
        self.stopping.append([r.handle, None, time.monotonic() + grace + STOP_SLACK, r.id])

    def reap(self):
        """Kills the removed actors whose child has stopped (or whose time is up)."""
        now = time.monotonic()
        left = []
        for entry in self.stopping:
            handle, ref, deadline, _ = entry
            done = now >= deadline
            if not done:
                if ref is None:
                    entry[1] = ref = handle.status.remote()
                ready, _ = self.ray.wait([ref], timeout=0)
                if ready:
                    entry[1] = None
                    try:
                        done = self.ray.get(ref)["stopped"]
                    except Exception:
                        done = True  # dead already
            if done:
                try:
                    self.ray.kill(handle, no_restart=True)
                except Exception:
                    pass
            else:
                left.append(entry)
        self.stopping = left

    def tick(self):
        self.poll()
        self.reap()
        reports = [r.report() for r in self.replicas.values()]
        # A replica whose program is still stopping is named until it is gone: the server's
        # stop (a delete, a scale-down) returns only then.
        stopping = [entry[3] for entry in self.stopping]
        body = {"driver": self.name, "replicas": reports, "stopping": stopping}
        try:
            desired = sync_mod.sync(
                self.server, self.group, self.token, body, timeout=max(5.0, 4 * self.interval)
            )
        except sync_mod.SyncFailed as e:
            log("sync failed: %s" % e)
            for sent in reports:
                r = self.replicas.get(sent["id"])
                if r is not None:
                    r.unreport(sent)
            silent = time.monotonic() - self.last_answer
            if silent > self.orphan_after:
                raise sync_mod.GroupGone(
                    "the server has not answered for %.0f s" % silent
                ) from None
            return
        self.last_answer = time.monotonic()
        self.apply(desired)

    def group_gone(self):
        """Stops and kills every actor of the group, and waits (bounded) for it."""
        log("the group is gone: stopping its %d replicas" % len(self.replicas))
        for r in list(self.replicas.values()):
            self.remove(r)
        self.replicas.clear()
        while self.stopping:
            self.reap()
            if self.stopping:
                time.sleep(0.1)

    def run(self):
        self.adopt()
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except sync_mod.GroupGone as e:
                log(str(e))
                self.group_gone()
                return 0
            wait = self.interval - (time.monotonic() - started)
            if wait > 0:
                self.stop_event.wait(wait)
        log("stopped by a signal; the actors keep running")
        return 0


def _spec(d):
    return {
        "argv": d["argv"],
        "env": d["env"],
        "cwd": d.get("cwd"),
        "takes_socket": d["takes_socket"],
        "grace_seconds": d["grace_seconds"],
        "memory_limit": d.get("memory_limit"),
    }


def _first_line(e):
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""


def main():
    try:
        server = os.environ["CORTEX_RAY_SERVER"]
        group = os.environ["CORTEX_RAY_GROUP"]
        token = os.environ["CORTEX_RAY_TOKEN"]
    except KeyError as e:
        log("missing environment variable %s" % e)
        return 2
    interval = float(os.environ.get("CORTEX_RAY_INTERVAL") or 0.5)
    orphan_after = float(os.environ.get("CORTEX_RAY_ORPHAN_SECONDS") or 120)

    import ray

    ray.init(namespace=NAMESPACE, log_to_driver=False)
    driver = Driver(ray, server, group, token, interval, orphan_after)

    # After ray.init(), which installs its own handler: a job stop ends the loop and leaves
    # the detached actors serving. A second signal exits at once.
    def on_term(signum, frame):
        if driver.stop_event.is_set():
            os._exit(0)
        driver.stop_event.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    log("group %s, server %s, every %.2f s, as %s" % (group, server, interval, driver.name))
    return driver.run()
