"""Batch workers (`CORTEX_KIND=BatchAPI`): the stream of batches of a POST /batches, and
the routes a batch worker's connection adds."""

import collections
import json
import time

from .http_wire import BadRequest, ChunkedBody, PayloadTooLarge
from .log import _describe, _log
from .predictor import _ShutDown, _call_guarded
from .tracebacks import _format_traceback


class BatchStream:
    """A POST /batches of a batch worker (the cortex server's own protocol with the shim): the
    request body is a stream of batches, one JSON object per line
    (`{"batch_id": "...", "payload": [...]}`), sent chunked; the answer streams (chunked,
    `application/x-ndjson`) one line per batch, in order, as soon as it is done:
    `{"batch_id": "...", "ok": true, "ms": 1.2}` or `{..., "ok": false, "error": "..."}`.

    Each batch runs as soon as its line is in and the one before it has run, so the sender
    decides how far ahead of the outcomes the worker may go: the cortex server sends the line
    of batch k+1 only once the outcome of batch k-1 is committed, which bounds what a server
    SIGKILL runs again (see `feeder.rs`). The answer ends once the body has ended and every
    batch in it has run; it ends early (fewer lines than batches, then the connection closes)
    when the worker is shutting down: the batches without a line never ran. A line that is not
    a batch gets `{"ok": false, "error": ...}` in its place; a body whose framing breaks (or a
    line longer than the body limit) gets one such line, then the connection closes."""

    __slots__ = ("limit", "partial", "lines", "body_done")

    def __init__(self, limit):
        self.limit = limit
        self.partial = bytearray()  # the start of a line not complete yet
        self.lines = collections.deque()
        self.body_done = False

    def push(self, body, buf):
        """Takes what has come of `body` (a LengthBody or ChunkedBody) from `buf`. Raises
        BadRequest or PayloadTooLarge."""
        if isinstance(body, ChunkedBody):
            self.body_done = body.feed(buf)
            data, body.chunks = b"".join(body.chunks), []
        else:
            n = min(body.length, len(buf))
            data = bytes(buf[:n])
            del buf[:n]
            body.length -= n
            self.body_done = body.length == 0
        partial = self.partial
        partial += data
        start = 0
        while True:
            end = partial.find(b"\n", start)
            if end < 0:
                break
            line = bytes(partial[start:end]).strip()
            if line:
                self.lines.append(line)
            start = end + 1
        del partial[:start]
        if len(partial) > self.limit:
            raise PayloadTooLarge()
        if self.body_done and partial.strip():
            self.lines.append(bytes(partial).strip())
            partial.clear()

    def next_line(self):
        return self.lines.popleft() if self.lines else None


class BatchRoutes:
    """The routes of a batch worker's `Connection` (a mixin of it): POST /batches and
    POST /on-job-complete."""

    def _stream_batches(self):
        """Reads the batches of a POST /batches as they come and runs each once it is in
        (see `BatchStream`). True when the stream is over (the connection may read its next
        request); False while it waits for more of the body or for a batch to run."""
        stream, server = self.batches, self.server
        while not self.busy and not self.closed:
            if not stream.body_done:
                try:
                    stream.push(self.body, self.buf)
                except (BadRequest, PayloadTooLarge) as e:
                    # the framing is lost: say why in place of the next outcome, and close
                    message = str(e) or "the batches are larger than the limit of %d bytes" % stream.limit
                    self.write_chunk((json.dumps({"ok": False, "error": message}) + "\n").encode("utf-8"))
                    return self._end_batches(close=True)
            if server.shutting_down.is_set():
                # the batches not started never run: the server delivers them again
                return self._end_batches(close=not stream.body_done)
            line = stream.next_line()
            if line is not None:
                self._run_batch(line)
                continue
            if stream.body_done:
                return self._end_batches()
            if self.eof:
                return self._end_batches(close=True)
            return False
        return False

    def _end_batches(self, close=False):
        self.batches, self.head, self.body = None, None, None
        if close:
            self.must_close = True
        self.end_stream()
        return not self.closed

    def _run_batch(self, line):
        """Runs one batch of a POST /batches on the predictor's thread and streams its
        outcome line."""
        server = self.server
        predictor = server.predictor
        api_name = server.settings["api_name"]
        try:
            batch = json.loads(line)
            if not isinstance(batch, dict) or "payload" not in batch:
                raise ValueError("expected {\"batch_id\": ..., \"payload\": ...}")
        except ValueError as e:
            self.write_chunk((json.dumps({"ok": False, "error": "the batch is not valid: %s" % e}) + "\n").encode())
            return
        batch_id = str(batch.get("batch_id", ""))

        def run_one():
            values = {"payload": batch["payload"], "batch_id": batch_id}
            kwargs = {n: values[n] for n in predictor.predict_args}
            start = time.perf_counter()
            try:
                predictor.instance.predict(**kwargs)
                return {"batch_id": batch_id, "ok": True, "ms": (time.perf_counter() - start) * 1000}
            except BaseException as e:  # SystemExit in user code too: this batch failed
                _log("ERROR", "%s: exception in predict: %s" % (api_name, _describe(e)), _format_traceback(e))
                return {
                    "batch_id": batch_id,
                    "ok": False,
                    "error": "predict raised %s" % _describe(e),
                    "ms": (time.perf_counter() - start) * 1000,
                }

        def ran(outcome):
            if outcome is _ShutDown:
                # the pool is shut down: this batch never ran, nor will the others
                self._end_batches(close=True)
                return
            self.write_chunk((json.dumps(outcome) + "\n").encode("utf-8"))

        server.call(run_one, (), {}, ran, self)

    def _on_job_complete(self):
        """POST /on-job-complete of a batch worker: runs the predictor's
        on_job_complete() once every batch of the job is done; 404 when it has
        none."""
        server = self.server
        hook = getattr(server.predictor.instance, "on_job_complete", None)
        if hook is None or not callable(hook):
            self.send_json(404, {"kind": "not_found", "message": "the predictor has no on_job_complete"})
            return
        api_name = server.settings["api_name"]

        def done(outcome):
            if outcome is _ShutDown:
                self._shut_down("the worker is shutting down")
                return
            _, exc = outcome
            if exc is not None:
                _log(
                    "ERROR", "%s: exception in on_job_complete: %s" % (api_name, _describe(exc)), _format_traceback(exc)
                )
                self.send_json(500, {"kind": "internal", "message": "on_job_complete raised %s" % _describe(exc)})
                return
            self.send_json(200, {"message": "on_job_complete ran"})

        server.call(_call_guarded, (hook,), {}, done, self)
