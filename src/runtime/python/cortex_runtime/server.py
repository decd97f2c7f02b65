"""The HTTP server of one serving process: its socket, the asyncio event loop that accepts
and serves connections, and how it hands calls to the predictor's thread."""

import asyncio
import os
import socket
import threading
import time

from .connection import Connection
from .log import _describe, _log
from .predictor import _ShutDown, _run_post_predict
from .tracebacks import _format_traceback


# idle keep-alive connections are closed after this many seconds; well above the
# idle timeout of common client pools so that a pooled connection is not closed
# under a client's feet
KEEP_ALIVE_TIMEOUT = 900


# several processes: a worker whose pool threads are all taken waits up to this
# long before accepting a new connection, so that an idle worker gets it
# (CORTEX_ACCEPT_DEFER_SECS changes it; the shim's tests use a longer wait, so
# that a loaded test machine does not make them flaky)
def _accept_defer():
    try:
        value = float(os.environ.get("CORTEX_ACCEPT_DEFER_SECS", "1"))
    except ValueError:
        return 1.0
    return value if 0 <= value <= 60 else 1.0


ACCEPT_DEFER = _accept_defer()
# a connection reading (or answering) nothing for this long is closed
IDLE_SWEEP_SECONDS = 30.0


def open_socket(settings):
    """The socket to serve on, bound but not listening: the one handed on
    CORTEX_LISTEN_FD, or a new one bound to $CORTEX_HOST (default 127.0.0.1):CORTEX_PORT."""
    fd = settings.get("listen_fd")
    if fd is not None:
        sock = socket.socket(fileno=fd)
        if sock.type != socket.SOCK_STREAM:
            sock.detach()
            raise OSError("CORTEX_LISTEN_FD=%d is not a TCP socket" % fd)
        return sock
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((os.environ.get("CORTEX_HOST") or "127.0.0.1", settings["port"]))
    except OSError:
        sock.close()
        raise
    return sock


class Server:
    """Serves HTTP on `sock` (bound; `server_activate` makes it listen, or a supervisor
    does) from one asyncio event loop. With one thread per process the loop runs on the
    pool's thread, the one that ran `__init__`, and calls the predictor itself (one call
    at a time, as the pool would); with more, the loop has its own thread and the pool runs
    the predictor. `gate_accept`: this process shares the socket with other workers."""

    request_queue_size = 256

    def __init__(self, settings, predictor, pool, sock, gate_accept=False):
        self.settings = settings
        self.predictor = predictor
        self.pool = pool
        self.inline = settings["threads"] == 1
        self.socket = sock
        self.fd = sock.fileno()
        self.server_address = sock.getsockname()
        self.shutting_down = threading.Event()
        self.stop_time = None
        self.loop = None
        self.loop_ended = threading.Event()
        # POST requests being answered, and post_predict calls queued or running:
        # together the pool's busy slots (besides connections whose first request
        # has not been read yet, `pending`)
        self.in_flight = 0
        self.post_busy = 0
        self.in_flight_cond = threading.Condition()
        # worker processes share the listening socket: a worker whose threads are all
        # taken defers accepting (up to ACCEPT_DEFER), so that an idle worker gets it
        self.gate_accept = gate_accept
        self.pending = 0
        self.accepting = False
        self.defer_until = None
        self.defer_handle = None
        self.connections = set()

    def server_activate(self):
        self.socket.listen(self.request_queue_size)

    def busy(self):
        """Taken slots (call with in_flight_cond held, or on the loop)."""
        return self.in_flight + self.post_busy + self.pending

    # -- the loop
    def start(self):
        """Runs the loop on its thread: the pool's (one thread), or a new one."""
        if self.inline:
            self.pool.submit(self._run)
        else:
            threading.Thread(target=self._run, name="cortex-http", daemon=True).start()

    def _run(self):
        try:
            loop = asyncio.new_event_loop()
            self.loop = loop
            self.socket.setblocking(False)
            loop.call_soon(self._listen)
            loop.call_later(IDLE_SWEEP_SECONDS, self._sweep_idle)
            if self.shutting_down.is_set():
                loop.call_soon(self._begin_shutdown)
            loop.run_forever()
        except BaseException as e:
            _log("ERROR", "%s: the HTTP server failed: %s" % (self.settings["api_name"], _describe(e)),
                 _format_traceback(e))
        finally:
            self.loop_ended.set()
            with self.in_flight_cond:
                self.in_flight_cond.notify_all()

    def shutdown(self):
        """Stops accepting and closes idle connections (any thread)."""
        loop = self.loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._begin_shutdown)
            except RuntimeError:  # the loop is closed
                pass

    def _begin_shutdown(self):
        self._stop_accepting()
        try:
            self.socket.close()
        except OSError:
            pass
        for conn in list(self.connections):
            if conn.batches is not None and not conn.busy:
                conn._process()  # a stream waiting for its next batch ends now
            conn.close_if_idle()

    # -- accepting
    def _listen(self):
        if not self.shutting_down.is_set():
            self.loop.add_reader(self.fd, self._accept)
            self.accepting = True

    def _stop_accepting(self):
        if self.accepting:
            self.loop.remove_reader(self.fd)
            self.accepting = False
        if self.defer_handle is not None:
            self.defer_handle.cancel()
            self.defer_handle = None

    def _accept(self):
        if self.gate_accept and self.busy() >= self.settings["threads"]:
            now = time.monotonic()
            if self.defer_until is None:
                self.defer_until = now + ACCEPT_DEFER
            if now < self.defer_until:
                # wait for a free slot (`slot_freed`) or the end of the deferral
                self._stop_accepting()
                self.defer_handle = self.loop.call_later(self.defer_until - now, self._resume_accept)
                return
        self.defer_until = None
        for _ in range(1 if self.gate_accept else 16):
            try:
                conn, _ = self.socket.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # another worker took it, or the client went away first
            except OSError as e:
                # out of descriptors (EMFILE, ENFILE) or memory: the socket stays readable, so
                # accepting pauses a moment instead of spinning; said once per pause
                _log("WARNING", "%s: cannot accept a connection: %s; retrying in 0.1 s" % (self.settings["api_name"], e))
                self._stop_accepting()
                self.defer_handle = self.loop.call_later(0.1, self._resume_accept)
                return
            conn.setblocking(False)
            self.pending += 1
            self.loop.create_task(self._connect(conn))

    async def _connect(self, conn):
        protocol = Connection(self)
        try:
            await self.loop.connect_accepted_socket(lambda: protocol, conn)
        except OSError:
            protocol.release_pending()
            conn.close()

    def _resume_accept(self):
        self.defer_handle = None
        if not self.accepting and not self.shutting_down.is_set():
            self._listen()

    def slot_freed(self):
        """A slot was given back (on the loop): a deferred accept may go on."""
        if self.gate_accept and not self.accepting and self.defer_until is not None:
            if self.defer_handle is not None:
                self.defer_handle.cancel()
            self._resume_accept()

    def _sweep_idle(self):
        deadline = time.monotonic() - KEEP_ALIVE_TIMEOUT
        for conn in list(self.connections):
            if conn.last_active < deadline and not conn.busy:
                conn.close()
        self.loop.call_later(IDLE_SWEEP_SECONDS, self._sweep_idle)

    # -- running user code
    def _outside_loop(self, fn, *args, **kwargs):
        """fn(...) on the loop's thread, with the loop not running meanwhile: a predictor may
        run an event loop of its own (asyncio.run)."""
        asyncio._set_running_loop(None)
        try:
            return fn(*args, **kwargs)
        finally:
            asyncio._set_running_loop(self.loop)

    def call(self, fn, args, kwargs, then, conn):
        """fn(*args, **kwargs) on the predictor's thread, then `then(result)` on the loop
        (`then(_ShutDown)` if the pool is shut down before it runs)."""
        if self.inline:
            then(self._outside_loop(fn, *args, **kwargs))
            return
        loop = self.loop
        try:
            future = self.pool.submit(fn, *args, **kwargs)
        except RuntimeError:
            then(_ShutDown)
            return
        conn.busy = True

        def done(f):
            try:
                loop.call_soon_threadsafe(conn.called, f, then)
            except RuntimeError:  # the loop is closed: the process is exiting
                pass

        future.add_done_callback(done)

    def enter(self):
        """A request starts (counted for a graceful stop; see `Connection.enter`)."""
        with self.in_flight_cond:
            self.in_flight += 1

    def leave(self):
        with self.in_flight_cond:
            self.in_flight -= 1
            self.in_flight_cond.notify_all()
        self.slot_freed()

    def post_predict(self, fn, args, conn):
        """Runs post_predict after the answer `conn` just wrote: on the pool, or (one thread)
        on this thread once the answer has gone out."""
        api_name = self.settings["api_name"]
        if self.inline:
            conn.after_flush(lambda: self._outside_loop(_run_post_predict, fn, args, api_name))
            return
        with self.in_flight_cond:
            self.post_busy += 1
        try:
            future = self.pool.submit(_run_post_predict, fn, args, api_name)
        except RuntimeError:  # the pool is shut down
            self.post_predict_done(None)
            return
        future.add_done_callback(self.post_predict_done)

    def post_predict_done(self, future):
        with self.in_flight_cond:
            self.post_busy -= 1
            self.in_flight_cond.notify_all()
        loop = self.loop
        if loop is not None and self.gate_accept:
            try:
                loop.call_soon_threadsafe(self.slot_freed)
            except RuntimeError:
                pass

    def flushed(self):
        """Whether every answer written has gone out (any thread: a glance, not a lock)."""
        for conn in list(self.connections):
            transport = conn.transport
            if transport is not None and transport.get_write_buffer_size():
                return False
        return True
