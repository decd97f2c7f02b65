"""Several processes per replica (`CORTEX_PROCESSES_PER_REPLICA` > 1): the supervisor binds
the port, forks the workers, makes the socket listen once every worker is initialised, and
watches them (see `main`'s doc)."""

import os
import select
import signal
import sys
import threading
import time

from .lifecycle import _early_signal, _finish, _install_stop, _serve, _stop_requested
from .log import _describe, _flush_output, _log, _write_stderr
from .predictor import _init_failure_text, _load_in_pool, _make_pool
from .reporting import report_init_failure
from .server import Server, open_socket
from .settings import EXIT_BIND_FAILED, EXIT_INIT_FAILED, EXIT_OK, EXIT_WORKER_DIED
from .tracebacks import _format_traceback


# several processes: how long the supervisor lets workers finish after SIGTERM
# before it SIGKILLs them
WORKER_STOP_GRACE = 4.0


def _exit_text(status):
    """A wait status in words: `exit status 1`, `killed by signal 9 (SIGKILL)`."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            return "killed by signal %d" % sig
        return "killed by signal %d (%s)" % (sig, name)
    if os.WIFEXITED(status):
        return "exit status %d" % os.WEXITSTATUS(status)
    return "wait status %d" % status


def _pdeathsig_setter():
    """A function that asks the kernel to SIGKILL the calling process when its
    parent dies (Linux), or None. Resolved before forking."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None).prctl
    except Exception:
        return None

    def set_pdeathsig():
        prctl(1, ctypes.c_ulong(signal.SIGKILL))  # PR_SET_PDEATHSIG

    return set_pdeathsig


def _close_quietly(fd):
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Worker:
    """The supervisor's view of one worker process."""

    def __init__(self, pid, status_r, control_w):
        self.pid = pid
        self.status_r = status_r  # worker -> supervisor: b"ok\n" or b"fail\n<text>"
        self.control_w = control_w  # supervisor -> worker: b"g" once listening; EOF = supervisor gone
        self.buf = bytearray()
        self.ready = False
        self.status = None  # wait status once reaped

    @property
    def alive(self):
        return self.status is None

    def failure_text(self):
        if self.buf.startswith(b"fail\n"):
            return bytes(self.buf[5:]).decode("utf-8", "replace")
        return None


class Supervisor:
    """Binds the port, forks the worker processes, makes the socket listen once
    all of them are initialised, and supervises them (see `main`'s doc)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)

    def __init__(self, settings):
        self.settings = settings
        self.api_name = settings["api_name"]
        self.workers = []
        self.stop_requested = False
        self.sock = None
        self.wake_r = self.wake_w = None

    # -- signals: handlers only set a flag; the wakeup fd interrupts select()
    def _on_signal(self, signum, frame):
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stop_requested = True

    def run(self):
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        for sig in self.SIGNALS:
            signal.signal(sig, self._on_signal)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        if _stop_requested.is_set():
            return EXIT_OK
        try:
            return self._run()
        finally:
            # every path out of _run has reaped the workers
            for w in self.workers:
                _close_quietly(w.status_r)
                _close_quietly(w.control_w)
            if self.sock is not None:
                self.sock.close()

    def _run(self):
        settings, api_name = self.settings, self.api_name
        n = settings["processes"]
        try:
            self.sock = open_socket(settings)
        except OSError as e:
            _log("ERROR", "%s: could not listen on 127.0.0.1:%d: %s" % (api_name, settings["port"], e))
            return EXIT_BIND_FAILED
        # non-blocking: every worker wakes up for a new connection, one gets it
        self.sock.setblocking(False)
        port = self.sock.getsockname()[1]

        set_pdeathsig = _pdeathsig_setter()
        for index in range(1, n + 1):
            if self.stop_requested:
                return self._stop()
            try:
                self._spawn(index, n, set_pdeathsig)
            except OSError as e:
                _log("ERROR", "%s: could not start worker process %d of %d: %s" % (api_name, index, n, e))
                self._terminate()
                return EXIT_WORKER_DIED

        # initialisation: wait for every worker's report
        while True:
            if self.stop_requested:
                return self._stop()
            failed = self._first_init_failure()
            if failed is not None:
                return self._init_failed(failed)
            if all(w.ready for w in self.workers):
                break
            self._wait([w.status_r for w in self.workers if w.status_r is not None])
            self._reap()

        try:
            self.sock.listen(Server.request_queue_size)
        except OSError as e:
            _log("ERROR", "%s: could not listen on 127.0.0.1:%d: %s" % (api_name, port, e))
            self._terminate()
            return EXIT_BIND_FAILED
        for w in self.workers:
            try:
                os.write(w.control_w, b"g")
            except OSError:
                pass  # it died: reaped below
        # the workers hold the socket; this process only supervises
        self.sock.close()
        self.sock = None
        _log("INFO", "%s is ready on port %d (processes_per_replica=%d)" % (api_name, port, n))

        while True:
            if self.stop_requested:
                return self._stop()
            dead = [w for w in self.workers if not w.alive]
            if dead:
                for w in dead:
                    _log(
                        "ERROR",
                        "%s: worker process %d died unexpectedly (%s); stopping the replica"
                        % (api_name, w.pid, _exit_text(w.status)),
                    )
                self._terminate()
                return EXIT_WORKER_DIED
            self._wait([], timeout=1.0)
            self._reap()

    # -- worker processes
    def _spawn(self, index, n, set_pdeathsig):
        status_r, status_w = os.pipe()
        try:
            control_r, control_w = os.pipe()
        except OSError:
            _close_quietly(status_r)
            _close_quietly(status_w)
            raise
        parent_pid = os.getpid()
        inherited = [status_r, control_w, self.wake_r, self.wake_w]
        for w in self.workers:
            inherited += [w.status_r, w.control_w]
        _flush_output()
        # signals stay blocked until the worker has installed its own handlers
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, self.SIGNALS)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            for fd in (status_r, status_w, control_r, control_w):
                _close_quietly(fd)
            raise
        if pid == 0:
            code = 1
            try:
                code = _worker_main(
                    self.settings, self.sock, index, n, status_w, control_r,
                    parent_pid, set_pdeathsig, old_mask, inherited,
                )
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException as e:
                _log("ERROR", "%s: worker process failed: %s" % (self.api_name, _describe(e)), _format_traceback(e))
            finally:
                # never return into the supervisor's code, even if a signal
                # handler raises while exiting (_finish never returns)
                try:
                    signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGTERM, signal.SIGINT))
                finally:
                    _finish(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.close(status_w)
        os.close(control_r)
        self.workers.append(Worker(pid, status_r, control_w))

    def _wait(self, fds, timeout=1.0):
        """Waits for a signal (wakeup fd), a worker report or the timeout, and
        reads the reports that arrived."""
        try:
            readable, _, _ = select.select([self.wake_r] + fds, [], [], timeout)
        except InterruptedError:
            readable = []
        if self.wake_r in readable:
            try:
                while os.read(self.wake_r, 512):
                    pass
            except (BlockingIOError, InterruptedError):
                pass
        for w in self.workers:
            if w.status_r is not None and w.status_r in readable:
                self._read_report(w, block=True)

    def _read_report(self, w, block):
        """Reads what worker `w` has sent: once if `block` (select said it is
        readable), else everything available without blocking."""
        if not block:
            os.set_blocking(w.status_r, False)
        while w.status_r is not None:
            try:
                data = os.read(w.status_r, 65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if data:
                w.buf += data
                if w.buf.startswith(b"ok\n"):
                    w.ready = True
            if not data or w.ready:
                os.close(w.status_r)
                w.status_r = None
                return
            if block:
                return

    def _reap(self):
        for w in self.workers:
            if not w.alive:
                continue
            try:
                pid, status = os.waitpid(w.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = w.pid, 0
            if pid == w.pid:
                w.status = status

    def _first_init_failure(self):
        """The first worker whose initialisation failed (its report complete),
        or that died before the socket listened."""
        for w in self.workers:
            if not w.alive and w.status_r is not None:
                self._read_report(w, block=False)
            if not w.alive or (w.status_r is None and not w.ready and w.failure_text() is not None):
                return w
        return None

    def _init_failed(self, failed):
        # kill the others first so that nothing else reaches stderr
        for w in self.workers:
            if w.alive:
                try:
                    os.kill(w.pid, signal.SIGKILL)
                except OSError:
                    pass
        text = failed.failure_text()
        if text is None:
            if failed.alive:
                what = "closed its pipe to the supervisor"
            else:
                what = "ended (%s)" % _exit_text(failed.status)
            text = (
                "cortex: error: failed to initialise the predictor: WorkerError: worker process %d %s "
                "before the replica became ready\n" % (failed.pid, what)
            )
        _write_stderr(text)
        report_init_failure(text)
        self._reap_all()
        return EXIT_INIT_FAILED

    def _terminate(self):
        """SIGTERM to the live workers, SIGKILL to those left after the grace period."""
        for w in self.workers:
            if w.alive:
                try:
                    os.kill(w.pid, signal.SIGTERM)
                except OSError:
                    pass
        deadline = time.monotonic() + WORKER_STOP_GRACE
        self._reap()
        while any(w.alive for w in self.workers):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wait([], timeout=min(remaining, 0.5))
            self._reap()
        for w in self.workers:
            if w.alive:
                _log("WARNING", "%s: worker process %d did not stop in time; killing it" % (self.api_name, w.pid))
                try:
                    os.kill(w.pid, signal.SIGKILL)
                except OSError:
                    pass
        self._reap_all()

    def _reap_all(self):
        for w in self.workers:
            if w.alive:
                try:
                    _, w.status = os.waitpid(w.pid, 0)
                except ChildProcessError:
                    w.status = 0

    def _stop(self):
        self._terminate()
        _log("INFO", "%s: shut down" % self.api_name)
        return EXIT_OK


def _worker_main(settings, sock, index, n, status_w, control_r, parent_pid, set_pdeathsig, old_mask, inherited):
    """A worker process, right after fork (signals still blocked); returns its
    exit status."""
    signal.set_wakeup_fd(-1)
    for fd in inherited:
        _close_quietly(fd)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, _early_signal)
    signal.signal(signal.SIGINT, _early_signal)
    if set_pdeathsig is not None:
        try:
            set_pdeathsig()
        except Exception:
            pass
    if os.getppid() != parent_pid:  # the supervisor died before prctl
        return 1
    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    api_name = settings["api_name"]
    _log(
        "INFO",
        "%s: loading the predictor from %s (process %d of %d)" % (api_name, settings["predictor_path"], index, n),
    )
    pool = _make_pool(settings)
    try:
        predictor = _load_in_pool(pool, settings)
    except BaseException as e:
        if _stop_requested.is_set():
            return EXIT_OK
        _write_all(status_w, b"fail\n" + _init_failure_text(e).encode("utf-8", "replace"))
        return EXIT_INIT_FAILED
    _write_all(status_w, b"ok\n")
    os.close(status_w)

    # wait until the supervisor makes the socket listen; EOF: it is gone (short
    # waits: this thread must run the signal handlers promptly)
    while not select.select([control_r], [], [], 0.2)[0]:
        pass
    if os.read(control_r, 1) != b"g":
        return 1

    server = Server(settings, predictor, pool, sock, gate_accept=True)
    stop = _install_stop(server)

    def watch_supervisor():
        # the supervisor never writes again: EOF means it is gone
        try:
            os.read(control_r, 1)
        except OSError:
            pass
        stop()

    threading.Thread(target=watch_supervisor, name="watch_supervisor", daemon=True).start()
    return _serve(server)
