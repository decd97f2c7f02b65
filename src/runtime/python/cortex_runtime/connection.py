"""One client connection (an asyncio protocol): reading requests one after another,
routing them, and writing the answers, with back-pressure both ways."""

import asyncio
import concurrent.futures
import json
import socket
import time
import urllib.parse

from .batch import BatchRoutes, BatchStream
from .http_wire import BadRequest, HeadTooLarge, PayloadTooLarge, _REASONS, _http_date, parse_head, request_body
from .log import _describe, _log
from .model_store import ModelNotFound, ModelRequestError
from .payload import Headers, QueryParams, parse_payload
from .predictor import _ShutDown, _call_guarded
from .responses import predict_whole, render
from .tracebacks import _format_traceback

GET_MESSAGE = "make a prediction by sending a post request to this endpoint with a json payload"
# after a 413 the connection is closed; first the shim keeps reading (and
# dropping) what the client still sends for up to this long, so that the
# client is not reset before it has read the response
LINGER_SECONDS = 1.0
# what a connection buffers beyond the request it is answering before it stops reading
BUFFER_HIGH_WATER = 1024 * 1024
_METHODS_NOT_ALLOWED = frozenset(("PUT", "DELETE", "PATCH", "OPTIONS"))


class Connection(BatchRoutes, asyncio.Protocol):
    """One client connection: reads requests one after another (keep-alive), answers
    each before reading the next."""

    def __init__(self, server):
        self.server = server
        self.transport = None
        self.buf = bytearray()
        self.head = None  # the request being read
        self.body = None  # its body's reader: a LengthBody or a ChunkedBody
        self.busy = False  # the pool runs a call for it
        self.eof = False
        self.closed = False
        self.lingering = False
        self.reading_paused = False
        self.write_paused = False  # the client reads slower than answers are written
        self.flush_waiters = []  # called once what is written has gone out
        self.pending = True
        self.counted = False  # its POST counts as in flight (from its head to its answer)
        self.must_close = False
        self.streaming = False  # an answer is being streamed (start_stream .. end_stream)
        self.batches = None  # the BatchStream of a POST /batches being read and answered
        self.method = "GET"
        self.last_active = time.monotonic()

    # -- asyncio callbacks
    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        try:
            # responses go out in one write, but a client's delayed ACK must not hold them
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
        self.server.connections.add(self)
        if self.server.shutting_down.is_set():
            self.close()

    def connection_lost(self, exc):
        self.closed = True
        self.server.connections.discard(self)
        self.release_pending()
        self.leave()
        self._run_flush_waiters()

    def pause_writing(self):
        self.write_paused = True
        self._update_reading()

    def resume_writing(self):
        self.write_paused = False
        self._update_reading()
        if not self.transport.get_write_buffer_size():
            self._run_flush_waiters()
        if not self.closed and not self.busy:
            self._process()

    def data_received(self, data):
        if self.lingering or self.closed:
            return
        self.buf += data
        self.last_active = time.monotonic()
        if self.busy or self.write_paused:
            self._update_reading()
            return
        self._process()

    def eof_received(self):
        self.eof = True
        if self.lingering:
            self.close()
        elif not self.busy:
            self._process()
        return True  # half-closed: the answer may still be written

    # -- state
    def _update_reading(self):
        """Stops reading while answers wait to go out, or while a request is answered with
        much more already buffered; reads again once neither holds."""
        pause = self.write_paused or (self.busy and len(self.buf) > BUFFER_HIGH_WATER)
        if pause != self.reading_paused and not self.closed:
            self.reading_paused = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def enter(self):
        """Its request counts as in flight (a graceful stop waits for it)."""
        if not self.counted:
            self.counted = True
            self.server.enter()

    def leave(self):
        if self.counted:
            self.counted = False
            self.server.leave()

    def after_flush(self, fn):
        """Calls `fn` once what is written has gone out (at once if it has)."""
        if self.closed or not self.transport.get_write_buffer_size():
            fn()
            return
        self.flush_waiters.append(fn)
        if len(self.flush_waiters) == 1:
            self.server.loop.call_later(0.005, self._check_flushed)

    def _check_flushed(self):
        if not self.flush_waiters:
            return
        if self.closed or not self.transport.get_write_buffer_size():
            self._run_flush_waiters()
        elif not self.write_paused:  # paused: resume_writing says when
            self.server.loop.call_later(0.005, self._check_flushed)

    def _run_flush_waiters(self):
        waiters, self.flush_waiters = self.flush_waiters, []
        for fn in waiters:
            try:
                fn()
            except Exception as e:
                _log("ERROR", "error after an answer: %s" % _describe(e), _format_traceback(e))

    def release_pending(self):
        if self.pending:
            self.pending = False
            self.server.pending -= 1
            self.server.slot_freed()

    def close(self):
        if not self.closed:
            self.closed = True
            self.transport.close()

    def close_if_idle(self):
        """At shutdown: closes the connection unless a request is being read or answered."""
        if not self.busy and self.head is None and not self.buf:
            self.close()

    def called(self, future, then):
        """A pool call ended (on the loop)."""
        self.busy = False
        try:
            result = future.result()
        except (concurrent.futures.CancelledError, RuntimeError):
            result = _ShutDown
        try:
            then(result)
        except Exception as e:
            _log("ERROR", "error while answering a request: %s" % _describe(e), _format_traceback(e))
            self.leave()
            self.close()
        self._update_reading()
        if not self.closed and not self.write_paused:
            self._process()

    # -- reading requests
    def _process(self):
        try:
            self._read_requests()
        except Exception as e:
            _log("ERROR", "error while handling a connection: %s" % _describe(e), _format_traceback(e))
            self.close()

    def _read_requests(self):
        server = self.server
        limit = server.settings["max_body_bytes"]
        while not self.busy and not self.closed and not self.lingering and not self.write_paused:
            if self.head is None:
                try:
                    parsed = parse_head(self.buf)
                except HeadTooLarge:
                    self.method = "GET"
                    self.send_json(431, {"kind": "bad_request", "message": "the request headers are too large"},
                                   close=True)
                    return
                except BadRequest as e:
                    self.method = "GET"
                    self.send_json(400, {"kind": "bad_request", "message": str(e)}, close=True)
                    return
                if parsed is None:
                    if self.eof:
                        self.close()
                    elif server.shutting_down.is_set() and not self.buf:
                        self.close()
                    return
                head, taken = parsed
                del self.buf[:taken]
                self.head, self.method = head, head.method
                self.must_close = not head.keep_alive
                if head.method == "POST" and server.shutting_down.is_set():
                    self.release_pending()
                    message = "the worker is shutting down" if server.settings.get("batch") else "the api is shutting down"
                    self.send_json(503, {"kind": "not_ready", "message": message}, close=True)
                    return
                if head.method == "POST":
                    # in flight from its head on (its body may still be coming), counted
                    # before it stops being pending so the accept gate never sees it idle
                    self.enter()
                self.release_pending()
                try:
                    self.body = request_body(head, limit)
                except PayloadTooLarge:
                    self.send_too_large()
                    return
                except BadRequest as e:
                    self.send_json(400, {"kind": "bad_request", "message": str(e)}, close=True)
                    return
                if self.body.both_framings:
                    self.must_close = True
                if (
                    head.version == "HTTP/1.1"
                    and (head.get("Expect") or "").strip().lower() == "100-continue"
                    and self.body.missing(self.buf)
                ):
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                if head.method == "POST" and head.path == "/batches" and server.settings.get("batch"):
                    # read as it comes, a batch per line, each run as soon as it is in
                    self.batches = BatchStream(limit)
                    self.start_stream(200, "application/x-ndjson")
            if self.batches is not None:
                if not self._stream_batches():
                    return
                continue
            try:
                body = self.body.take(self.buf)
            except BadRequest as e:
                self.send_json(400, {"kind": "bad_request", "message": str(e)}, close=True)
                return
            except PayloadTooLarge:
                self.send_too_large()
                return
            if body is None:
                if self.eof:
                    self.send_json(400, {"kind": "bad_request", "message": self.body.incomplete}, close=True)
                return
            head, self.head, self.body = self.head, None, None
            self._dispatch(head, body)

    # -- responses
    def send(self, status, body, headers, close=False, linger=False):
        """Sends a response in one write; `headers` is a list of (name, value), or a
        content type. `linger`: after the answer, FIN, then what the client still sends is
        dropped (until it closes or LINGER_SECONDS pass), so that it is not reset before it
        reads the answer."""
        if self.closed:
            self.leave()
            return
        if isinstance(body, str):
            body = body.encode("utf-8")
        if isinstance(headers, str):
            headers = [("Content-Type", headers)]
        close = close or linger or self.must_close or self.server.shutting_down.is_set()
        lines = ["HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, ""))]
        names = {name.lower() for name, _ in headers}
        if "server" not in names:  # a returned Response may set its own
            lines.append("Server: cortex\r\n")
        if "date" not in names:
            lines.append("Date: %s\r\n" % _http_date())
        for name, value in headers:
            lines.append("%s: %s\r\n" % (name, value))
        if status not in (204, 304):
            lines.append("Content-Length: %d\r\n" % len(body))
        else:
            body = b""
        if close:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        data = "".join(lines).encode("latin-1")
        if self.method != "HEAD" and body:
            data += body
        self.transport.write(data)
        self.leave()  # the request is answered
        if linger and not self.server.shutting_down.is_set():
            self.lingering = True
            self.head, self.buf = None, bytearray()
            try:
                self.transport.write_eof()
            except (OSError, RuntimeError):
                pass
            self.server.loop.call_later(LINGER_SECONDS, self.close)
        elif close:
            self.close()

    def start_stream(self, status, content_type):
        """Starts an answer whose body follows in chunks (`write_chunk`, then `end_stream`)."""
        self.streaming = True
        head = "HTTP/1.1 %d %s\r\nServer: cortex\r\nDate: %s\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n" % (
            status,
            _REASONS.get(status, ""),
            _http_date(),
            content_type,
        )
        if not self.closed:
            self.transport.write(head.encode("latin-1"))

    def write_chunk(self, data):
        if data and not self.closed:
            self.transport.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self):
        """Ends a streamed answer: the request is answered."""
        if not self.streaming:
            return
        self.streaming = False
        if not self.closed:
            self.transport.write(b"0\r\n\r\n")
        self.leave()
        if self.must_close or self.server.shutting_down.is_set():
            self.close()

    def send_json(self, status, obj, close=False, linger=False):
        self.send(status, json.dumps(obj), "application/json", close=close, linger=linger)

    def send_too_large(self):
        limit = self.server.settings["max_body_bytes"]
        self.send_json(
            413,
            {"kind": "payload_too_large", "message": "the request body is larger than the limit of %d bytes" % limit},
            linger=True,
        )

    # -- routes
    def _dispatch(self, head, body):
        method = head.method
        if method in ("GET", "HEAD"):
            if head.path == "/healthz":
                if self.server.shutting_down.is_set():
                    self.send_json(503, {"status": "shutting down"}, close=True)
                else:
                    self.send_json(200, {"status": "ok"})
                return
            if head.path.split("?", 1)[0] == "/health":
                # What Model Bazaar deployments answer (its SDK waits for it through
                # `/<model_id>/health`).
                if self.server.shutting_down.is_set():
                    self.send_json(503, {"status": "shutting down"}, close=True)
                else:
                    self.send_json(200, {"status": "success"})
                return
            answer = {"message": GET_MESSAGE}
            answer.update(getattr(self.server.predictor, "summary", None) or {})
            self.send_json(200, answer)
        elif method == "POST":
            settings = self.server.settings
            if settings.get("batch") and head.path == "/on-job-complete":
                self._on_job_complete()
            else:
                self._predict(head, body)
        elif method in _METHODS_NOT_ALLOWED:
            self.send(
                405,
                json.dumps(
                    {
                        "kind": "method_not_allowed",
                        "message": "method %s is not allowed; send a POST to predict" % method,
                    }
                ),
                [("Allow", "GET, HEAD, POST"), ("Content-Type", "application/json")],
            )
        else:
            self.send_json(
                501,
                {"kind": "not_implemented", "message": "method %s is not supported; send a POST to predict" % method},
            )

    def _shut_down(self, message):
        self.send_json(503, {"kind": "not_ready", "message": message}, close=True)

    def _predict(self, head, body):
        server = self.server
        predictor = server.predictor
        api_name = server.settings["api_name"]
        try:
            payload = parse_payload(head.get("Content-Type", ""), body)
        except BadRequest as e:
            self.send_json(400, {"kind": "bad_request", "message": str(e)})
            return
        values = {
            "payload": payload,
            "query_params": QueryParams(urllib.parse.parse_qsl(head.query, keep_blank_values=True))
            if head.query
            else QueryParams(),
            "headers": Headers(head.headers),
            "batch_id": head.get("X-Cortex-Batch-ID", ""),
        }
        kwargs = {n: values[n] for n in predictor.predict_args}

        def predicted(outcome):
            if outcome is _ShutDown:
                self._shut_down("the api is shutting down")
                return
            result, exc = outcome
            if exc is None:
                try:
                    status, out, response_headers = render(result)
                except Exception as e:
                    exc = e
            if isinstance(exc, (ModelNotFound, ModelRequestError)) and not server.settings.get("batch"):
                # the predictor asked its client for a model the API does not have: the
                # request's fault (a name or version from its query), said to its sender
                _log("WARNING", "%s: %s" % (api_name, exc))
                status = 404 if isinstance(exc, ModelNotFound) else 400
                kind = "model_not_found" if status == 404 else "bad_request"
                self.send_json(status, {"kind": kind, "message": str(exc)})
                return
            if exc is not None:
                _log("ERROR", "%s: exception in predict: %s" % (api_name, _describe(exc)), _format_traceback(exc))
                # A batch's failure is kept with the job (its dead letters): say what it was.
                message = (
                    "predict raised %s" % _describe(exc) if server.settings.get("batch") else "internal server error"
                )
                self.send_json(500, {"kind": "internal", "message": message})
                return
            self.send(status, out, response_headers)
            if predictor.post_predict is not None:
                values["response"] = result
                args = {n: values[n] for n in predictor.post_predict_args}
                server.post_predict(predictor.post_predict, args, self)

        server.call(_call_guarded, (predict_whole, predictor.instance.predict), kwargs, predicted, self)
