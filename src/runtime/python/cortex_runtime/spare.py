"""A spare interpreter: a python the server starts before any replica needs it, which has
already paid for its start and the runtime's imports, and becomes exactly one replica.

The server runs `python3 -u cortex_shim.py --spare` as its own user, in its own process
group (and cgroup, see below), with a unix stream socket on the descriptor CORTEX_SPARE_FD,
only the harmless part of its environment (what every replica gets of it) and a HOME that does not exist (so no user
site directory, as for a replica, whose HOME is new and empty). The spare imports everything a replica imports, writes b"R" on the socket
and waits. The server then sends one replica's start: a 4-byte big-endian length and that
many bytes of JSON, with the replica's descriptors (its listening socket, its Landlock
ruleset) attached to the first bytes (SCM_RIGHTS):

    {"argv": [...], "cwd": "...", "env": {...}, "user": [uid, gid] or null,
     "parent": <the server's pid>,
     "listen_fd": <index in the descriptors> or null,
     "ruleset_fd": <index in the descriptors> or null}

The spare enters the replica's confinement in the order the server's own start of a replica
does between fork and exec. The first step, the cgroup, is behind it: where the server makes
cgroups, it moves every spare into one of its own before the spare is ready, which becomes
the replica's run's (so a replica whose compute.mem is a cgroup's limit is never given a
spare, whose memory so far is counted elsewhere). Then: its user (no supplementary groups, its gid, its
uid; a root uid must not come back), the parent-death signal, no new privileges and the
Landlock ruleset. It closes every other descriptor, writes b"A", and only then takes the
replica's environment, working directory and arguments and runs the shim: user code runs in
a process that never held anything the replica may not hold. Anything that goes wrong before
b"A" exits 1 with a `cortex: error:` line, and the server starts the replica the usual way.

One spare becomes one replica, never more: no two replicas share an interpreter's memory,
address layout or hash seed. What still tells a replica from a spare apart from one started
anew: its command line (`/proc/self/cmdline`, `sys.orig_argv`) ends in `--spare`, and
`/proc/self/environ` shows the environment the spare started with.
"""

import array
import ctypes
import json
import os
import signal
import socket
import struct
import sys

# Everything a replica imports at start: imported here, before the spare says it is ready.
from . import main as _main  # noqa: F401  (the import is the point)

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
# landlock_restrict_self: the same number on every architecture (the generic syscall table).
_SYS_LANDLOCK_RESTRICT_SELF = 446
_MAX_FDS = 2
_LISTEN_FD = 3

_libc = ctypes.CDLL(None, use_errno=True)


class SpareError(Exception):
    """Why the spare cannot become the replica it was given."""


def _checked(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise SpareError("%s: %s" % (what, os.strerror(err)))


def _prctl(option, value):
    _checked(_libc.prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)), "prctl(%d)" % option)


def _receive(sock):
    """The start message and the descriptors that came with it."""
    data = b""
    fds = []
    want = None
    while want is None or len(data) < want:
        chunk, ancillary, _flags, _addr = sock.recvmsg(65536, socket.CMSG_SPACE(_MAX_FDS * 4))
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got = array.array("i")
                got.frombytes(payload[: len(payload) - len(payload) % 4])
                fds.extend(got)
        if not chunk:
            raise SpareError("the server closed the spare's socket")
        data += chunk
        if want is None and len(data) >= 4:
            want = 4 + struct.unpack(">I", data[:4])[0]
    return json.loads(data[4:want].decode("utf-8")), fds


def _close_all_but(keep):
    """Closes every descriptor of this process but `keep`."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own descriptor, already closed


def _enter(start, fds):
    """Enters the replica's confinement, as the server's own start of a replica does between
    fork and exec."""
    def fd_at(key):
        index = start.get(key)
        if index is None:
            return None
        if not 0 <= index < len(fds):
            raise SpareError("the start names descriptor %d of %d" % (index, len(fds)))
        return fds[index]

    listen_fd, ruleset_fd = fd_at("listen_fd"), fd_at("ruleset_fd")
    # The user, no-new-privs and the ruleset are set per thread by the kernel (glibc brings
    # every thread along for the user only): there must be no other thread.
    if len(os.listdir("/proc/self/task")) != 1:
        raise SpareError("the spare runs more than one thread")
    user = start.get("user")
    if user:
        uid, gid = user
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            raise SpareError("the replica's user could become root again")
    # A change of user resets the parent-death signal: first the user, then the signal.
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != start["parent"]:
        raise SpareError("the server is gone")
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    if ruleset_fd is not None:
        _checked(_libc.syscall(ctypes.c_long(_SYS_LANDLOCK_RESTRICT_SELF), ctypes.c_int(ruleset_fd), ctypes.c_uint(0)), "landlock_restrict_self")
        os.close(ruleset_fd)
    if listen_fd is not None and listen_fd != _LISTEN_FD:
        os.dup2(listen_fd, _LISTEN_FD)
        os.close(listen_fd)
    if listen_fd is not None:
        os.set_inheritable(_LISTEN_FD, True)


def _become(start):
    """Takes the replica's environment, working directory and arguments, as its exec would
    have given them."""
    env = start["env"]
    os.environ.clear()
    os.environ.update(env)
    os.chdir(start["cwd"])
    # What the interpreter reads from the environment at start, set as it would have set it
    # (the server gives a spare only a replica whose other start-time settings, PYTHON*, LC_*,
    # LD_*, TZ..., are the spare's own).
    if hasattr(sys, "pycache_prefix"):
        sys.pycache_prefix = env.get("PYTHONPYCACHEPREFIX") or None
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[1:1] = extra
    sys.argv = list(start["argv"][2:])
    tempfile = sys.modules.get("tempfile")
    if tempfile is not None:
        tempfile.tempdir = None


def become_replica():
    """Waits for a replica to become, then becomes it (or exits 1 saying why not)."""
    fd = int(os.environ["CORTEX_SPARE_FD"])
    if fd == _LISTEN_FD:
        # The replica's listening socket goes there.
        fd, _ = os.dup(fd), os.close(fd)
    sock = socket.socket(fileno=fd)
    try:
        sock.sendall(b"R")
        start, fds = _receive(sock)
        _close_all_but({0, 1, 2, sock.fileno()} | set(fds))
        _enter(start, fds)
        sock.sendall(b"A")
        sock.close()
        # A change of user leaves the process not dumpable (its /proc entries root's, no
        # core dumps), where an exec would have made it dumpable again: as a new process.
        _prctl(_PR_SET_DUMPABLE, 1)
        _become(start)
    except (OSError, ValueError, KeyError, TypeError, SpareError) as e:
        sys.stderr.write("cortex: error: the spare interpreter cannot become the replica: %s\n" % e)
        sys.stderr.flush()
        os._exit(1)
