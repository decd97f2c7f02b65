"""A serving process's life: a stop signal before serving, serving until SIGTERM/SIGINT
with a bounded drain of in-flight requests, and exiting within the server's budget."""

import atexit
import os
import signal
import threading
import time

from .log import _flush_output
from .predictor import shutdown_pool
from .settings import EXIT_OK


# the server SIGKILLs a replica 5 s after its SIGTERM: in-flight requests get
# this long to finish after SIGTERM
REQUEST_STOP_GRACE = 3.0
# ... then atexit handlers get this long before the process exits anyway
EXIT_HOOKS_GRACE = 0.5
_stop_requested = threading.Event()


def _early_signal(signum, frame):
    _stop_requested.set()
    raise SystemExit(EXIT_OK)


def _install_stop(server):
    """SIGTERM/SIGINT stop `server` gracefully; returns the stop function."""

    def stop(signum=None, frame=None):
        if not server.shutting_down.is_set():
            server.stop_time = time.monotonic()
            server.shutting_down.set()
            server.shutdown()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return stop


def _serve(server):
    """Serves until stopped (this thread waits, running the signal handlers), then lets
    in-flight requests finish and their answers go out for up to REQUEST_STOP_GRACE after
    the stop signal. Queued post_predicts are dropped and running ones are not waited for:
    the caller exits with _finish. Returns the exit status."""
    server.start()
    failed = False
    try:
        while not server.shutting_down.wait(0.2):
            if server.loop_ended.is_set():
                failed = True
                break
    finally:
        start = server.stop_time if server.stop_time is not None else time.monotonic()
        deadline = start + REQUEST_STOP_GRACE
        with server.in_flight_cond:
            while not server.loop_ended.is_set() and (server.in_flight > 0 or not server.flushed()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                server.in_flight_cond.wait(min(remaining, 0.05))
        # (the loop closed the listening socket when the stop began; the process exits next)
        shutdown_pool(server.pool)
    return 1 if failed else EXIT_OK


def _finish(code):
    """Exits the process now with `code`. atexit handlers get EXIT_HOOKS_GRACE;
    the pool's threads (a predict or post_predict still running, an __init__
    interrupted by SIGTERM) are not waited for, unlike in a normal interpreter
    exit, so that the process stops within the server's budget."""

    def run_hooks():
        try:
            atexit._run_exitfuncs()
        except BaseException:
            pass

    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGTERM, signal.SIGINT))
        hooks = threading.Thread(target=run_hooks, name="atexit", daemon=True)
        hooks.start()
        hooks.join(EXIT_HOOKS_GRACE)
    finally:
        try:
            _flush_output()
        finally:
            os._exit(code)
