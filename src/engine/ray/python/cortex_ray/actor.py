"""`ReplicaActor`: the Ray actor behind one replica. It runs the replica program as a child
process and reports on it; the driver decides everything else.

The driver wraps the class with `ray.remote` (this module must stay importable on the nodes:
a class defined in the driver's `__main__` would be pickled by value). Every method returns at
once: a supervisor thread owned by the actor starts and stops the child, and two threads per
child drain its stdout and stderr into buffers that `status()` hands over (and clears).

The child:
- gets exactly the environment it is given, plus `CORTEX_HOST` (the node's IP address) and
  `CORTEX_PORT` (and `CORTEX_LISTEN_FD=3` with a TCP socket bound to
  $CORTEX_HOST:$CORTEX_PORT, not listening, on fd 3 when it takes its socket), and `CUDA_VISIBLE_DEVICES` with the actor's GPUs when it has some and the
  environment does not set it;
- runs in its own process group, which a stop signals: SIGTERM, then SIGKILL after the grace
  period;
- gets SIGKILL when the actor's process dies (PR_SET_PDEATHSIG, Linux), so that killing the
  actor (`ray.kill`, a lost worker) does not leave the program serving as an orphan. Its own
  children, if it leaves them behind, are not covered.
"""

import codecs
import ctypes
import os
import queue
import signal
import socket
import subprocess
import tempfile
import threading
import time

# Output kept per stream while nobody asks for it (no driver, or a driver that is behind):
# beyond this the oldest text is dropped, with a note.
BUFFER_CAP = 1 << 20
# Most output (bytes of utf-8) one status() hands over per stream.
STATUS_CAP = 256 << 10
# In the spec's argv, env values and cwd: the actor's working directory (the replica's bundle,
# unpacked by Ray on this node) and a directory of this node the replica may write (its
# virtualenvs). The server cannot know either path.
WORKING_DIR_MARK = "@CORTEX_RAY_WORKING_DIR@"
SCRATCH_MARK = "@CORTEX_RAY_SCRATCH@"
# How often a child with a memory limit has its resident memory summed.
MEMORY_EVERY = 0.25
# How long the supervisor waits for a child's pipes to reach EOF after it exited, so that
# its last output is in the buffers before it is reported `exited`.
DRAIN_WAIT = 0.5

try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # not Linux-like: no parent-death signal
    _libc = None
_PR_SET_PDEATHSIG = 1


def cap_utf8(text, limit):
    """(head, rest): the longest prefix of `text` whose utf-8 form fits in `limit` bytes."""
    if len(text) * 4 <= limit:
        return text, ""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text, ""
    head = data[:limit].decode("utf-8", "ignore")
    return head, text[len(head):]


class _Stream:
    """Decoded output of one stream of the child, waiting for the next status()."""

    def __init__(self):
        self.chunks = []
        self.size = 0
        self.dropped = 0

    def add(self, text):
        if not text:
            return
        self.chunks.append(text)
        self.size += len(text)
        while self.size > BUFFER_CAP and len(self.chunks) > 1:
            old = self.chunks.pop(0)
            self.size -= len(old)
            self.dropped += len(old)
        if self.size > BUFFER_CAP:
            keep = self.chunks[0][-BUFFER_CAP:]
            self.dropped += self.size - len(keep)
            self.chunks, self.size = [keep], len(keep)

    def take(self):
        text = "".join(self.chunks)
        if self.dropped:
            text = "[cortex: %d characters of output dropped]\n%s" % (self.dropped, text)
            self.dropped = 0
        head, rest = cap_utf8(text, STATUS_CAP)
        self.chunks = [rest] if rest else []
        self.size = len(rest)
        return head


class ReplicaActor:
    """One replica: `ensure(generation, spec)` runs that generation of the program (once),
    `status()` reports, `shutdown(grace)` stops the program for good."""

    def __init__(self, group, replica_id):
        import ray  # the actor runs under Ray; the module itself imports without it

        self.group = group
        self.replica_id = replica_id
        self.node = ray.get_runtime_context().get_node_id()
        # The address the cortex server reaches this node at (127.0.0.1 in a loopback-only
        # test cluster): the replica listens there, not on every interface.
        try:
            self.ip = ray.util.get_node_ip_address() or "127.0.0.1"
        except Exception:
            self.ip = "127.0.0.1"
        # The GPUs Ray gave this actor (num_gpus): the child's environment is only what it is
        # given, so they are handed over as CUDA_VISIBLE_DEVICES unless the spec sets it.
        try:
            self.gpu_ids = [str(g) for g in ray.get_gpu_ids()]
        except Exception:
            self.gpu_ids = []
        self.lock = threading.Lock()
        # Guarded by lock: what status() reports.
        self.generation = None  # the generation asked for last
        self.state = "starting"  # starting | running | exited | stopped
        self.address = None
        self.pid = None  # the running child's process id (on this node)
        self.oom_bytes = None  # the run was killed for using this much memory
        self.exit_code = None
        self.out = {"stdout": _Stream(), "stderr": _Stream()}
        self.shutting_down = False
        self.commands = queue.Queue()
        # The supervisor thread lives as long as the actor's process: the parent-death signal
        # of a child is tied to the thread that forked it.
        self.supervisor = threading.Thread(
            target=self._supervise, name="cortex-replica-supervisor", daemon=True
        )
        self.supervisor.start()

    # --- methods the driver calls (all return at once) ------------------------------------

    def identity(self):
        """(group, replica id): lets a driver tell its group's actors from another group's
        whose name shares the prefix."""
        return self.group, self.replica_id

    def ensure(self, generation, spec):
        """Runs `generation` of the program described by `spec` (argv, env, cwd,
        takes_socket, grace_seconds): nothing when this generation (or a later one) was asked
        for already, else the running child is stopped and the new one started. Returns the
        generation in effect."""
        with self.lock:
            if self.shutting_down:
                return self.generation
            if self.generation is not None and generation <= self.generation:
                return self.generation
            self.generation = generation
            self.state = "starting"
            self.address = None
            self.exit_code = None
            self.oom_bytes = None
        self.commands.put(("run", generation, spec))
        return generation

    def shutdown(self, grace_seconds):
        """Stops the program for good (SIGTERM to its group, SIGKILL after `grace_seconds`);
        status() says `stopped` once it is gone."""
        with self.lock:
            self.shutting_down = True
        self.commands.put(("stop", grace_seconds))
        return True

    def status(self):
        """{generation, state, address, pid, node, exit_code, stdout, stderr, stopped}: the
        output is what was written since the last call."""
        with self.lock:
            return {
                "generation": self.generation,
                "state": "exited" if self.state == "stopped" else self.state,
                "address": self.address,
                "pid": self.pid if self.state == "running" else None,
                "oom_bytes": self.oom_bytes,
                "node": self.node,
                "exit_code": self.exit_code,
                "stdout": self.out["stdout"].take(),
                "stderr": self.out["stderr"].take(),
                "stopped": self.state == "stopped",
            }

    # --- the supervisor thread --------------------------------------------------------------

    def _supervise(self):
        child = None  # (Popen, generation, drain threads)
        grace = 10.0
        limit = None  # bytes the child's process group may have resident
        next_check = 0.0
        while True:
            try:
                command = self.commands.get(timeout=0.1)
            except queue.Empty:
                command = None
            if child is not None and child[0].poll() is not None:
                self._exited(child)
                child = None
            if child is not None and limit and time.monotonic() >= next_check:
                next_check = time.monotonic() + MEMORY_EVERY
                used = group_rss(child[0].pid)
                if used > limit:
                    _kill_group(child[0].pid, signal.SIGKILL)
                    child[0].wait()
                    with self.lock:
                        if child[1] == self.generation:
                            self.oom_bytes = used
                    self._exited(child)
                    child = None
            if command is None:
                continue
            if command[0] == "run":
                _, generation, spec = command
                if child is not None:
                    self._stop(child, grace)
                    child = None
                with self.lock:
                    if self.shutting_down or generation != self.generation:
                        continue  # superseded while the old one stopped
                grace = float(spec.get("grace_seconds", grace))
                limit = spec.get("memory_limit")
                child = self._start(generation, spec)
            elif command[0] == "stop":
                if child is not None:
                    self._stop(child, float(command[1]))
                    child = None
                with self.lock:
                    self.state = "stopped"
                    self.address = None

    def _start(self, generation, spec):
        sock = None
        spec = expand_marks(spec)
        env = dict(spec.get("env") or {})
        try:
            if spec.get("takes_socket"):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.ip, 0))
                port = sock.getsockname()[1]
                env["CORTEX_LISTEN_FD"] = "3"
            else:
                port = _free_port(self.ip)
            env["CORTEX_PORT"] = str(port)
            env["CORTEX_HOST"] = self.ip
            if self.gpu_ids and "CUDA_VISIBLE_DEVICES" not in env:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpu_ids)
            fd = sock.fileno() if sock is not None else None
            process = subprocess.Popen(
                spec["argv"],
                env=env,
                cwd=spec.get("cwd") or None,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(3,) if fd is not None else (),
                preexec_fn=lambda: _in_child(fd),
            )
        except Exception as e:  # the program cannot start (no such file, bad cwd, ...)
            if sock is not None:
                sock.close()
            with self.lock:
                self.out["stderr"].add("cortex: cannot start %r: %s\n" % (spec.get("argv"), e))
                if generation == self.generation:
                    self.state = "exited"
                    self.exit_code = 127
            return None
        if sock is not None:
            sock.close()  # the child holds it now
        drains = [
            threading.Thread(target=self._drain, args=(process.stdout, "stdout"), daemon=True),
            threading.Thread(target=self._drain, args=(process.stderr, "stderr"), daemon=True),
        ]
        for t in drains:
            t.start()
        with self.lock:
            if generation == self.generation:
                self.state = "running"
                self.pid = process.pid
                self.address = "%s:%d" % (self.ip, port)
        return (process, generation, drains)

    def _drain(self, pipe, name):
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        fd = pipe.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            text = decoder.decode(data, final=not data)
            if text:
                with self.lock:
                    self.out[name].add(text)
            if not data:
                break
        pipe.close()

    def _exited(self, child):
        process, generation, drains = child
        deadline = time.monotonic() + DRAIN_WAIT
        for t in drains:
            t.join(max(0.0, deadline - time.monotonic()))
        _kill_group(process.pid, signal.SIGKILL)  # what it left behind in its group
        with self.lock:
            if generation == self.generation and self.state == "running":
                self.state = "exited"
                self.exit_code = process.returncode
                self.address = None

    def _stop(self, child, grace):
        process = child[0]
        _kill_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=max(0.0, grace))
        except subprocess.TimeoutExpired:
            _kill_group(process.pid, signal.SIGKILL)
            process.wait()
        self._exited(child)


def expand_marks(spec):
    """`spec` with the working directory and scratch marks replaced by this node's paths."""
    scratch = os.path.join(tempfile.gettempdir(), "cortex-ray")
    os.makedirs(scratch, mode=0o700, exist_ok=True)
    here = os.getcwd()

    def expand(text):
        return text.replace(WORKING_DIR_MARK, here).replace(SCRATCH_MARK, scratch)

    out = dict(spec)
    out["argv"] = [expand(a) for a in spec["argv"]]
    out["env"] = {k: expand(v) for k, v in (spec.get("env") or {}).items()}
    if spec.get("cwd"):
        out["cwd"] = expand(spec["cwd"])
    return out


def group_rss(pgid):
    """The resident memory of every process of process group `pgid`, in bytes (what the
    local engine samples: a replica's memory limit holds for what it starts too)."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        # After the command's closing parenthesis: state, ppid, pgrp, ... rss is field 24.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 21 and fields[2] == str(pgid):
            total += int(fields[21]) * page
    return total


def _in_child(fd):
    """Runs in the child between fork and exec: its own process group, SIGKILL when the
    actor's process dies, the socket on fd 3."""
    os.setpgid(0, 0)
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if fd is not None and fd != 3:
        os.dup2(fd, 3)


def _free_port(ip):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def _kill_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
