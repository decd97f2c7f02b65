"""What predict() returns, made into an answer: status, body and headers."""

import asyncio
import json
import threading

from .http_wire import _TOKEN_CHARS


# not passed through from a returned Response: they describe the connection
# or the framing, which the shim does itself
_HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "content-length")
)


def _is_response(result):
    """True for objects that look like a starlette.responses.Response."""
    if isinstance(result, (bytes, bytearray, memoryview, str, dict, list, tuple, int, float)) or result is None:
        return False
    try:
        body = getattr(result, "body", None)
        status = getattr(result, "status_code", None)
    except Exception:
        return False
    return isinstance(body, (bytes, bytearray, memoryview)) and isinstance(status, int) and not isinstance(status, bool)


class _Drained:
    """A streaming response read whole: what `render` sends like any other response."""

    def __init__(self, response, body):
        self.status_code = response.status_code
        self.headers = getattr(response, "headers", None)
        self.media_type = getattr(response, "media_type", None)
        self.charset = getattr(response, "charset", None)
        self.body = body


def drained(result):
    """A streaming response (a `body_iterator` of bytes or str, sync or async, as starlette's
    StreamingResponse has) read whole, in the calling thread (the predictor's pool, never the
    event loop); anything else as it is."""
    if isinstance(result, (bytes, bytearray, memoryview, str, dict, list, tuple, int, float)) or result is None:
        return result
    iterator = getattr(result, "body_iterator", None)
    status = getattr(result, "status_code", None)
    if iterator is None or not isinstance(status, int) or isinstance(status, bool):
        return result
    chunks = []
    if hasattr(iterator, "__aiter__"):
        _drain_async(iterator, chunks)
    else:
        chunks.extend(iterator)
    charset = getattr(result, "charset", None) or "utf-8"
    body = b"".join(c.encode(charset) if isinstance(c, str) else bytes(c) for c in chunks)
    return _Drained(result, body)


def _drain_async(iterator, chunks):
    """Appends what an async iterator yields to `chunks`, on an event loop of its own: in this
    thread, or in a helper thread when this one already runs a loop."""

    async def collect():
        async for chunk in iterator:
            chunks.append(chunk)

    def run():
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(collect())
        finally:
            loop.close()

    if asyncio._get_running_loop() is None:
        run()
        return
    failed = []

    def in_thread():
        try:
            run()
        except BaseException as e:  # re-raised in the caller's thread
            failed.append(e)

    helper = threading.Thread(target=in_thread, name="cortex-drain", daemon=True)
    helper.start()
    helper.join()
    if failed:
        raise failed[0]


def predict_whole(predict, **kwargs):
    """`predict(**kwargs)`, a streaming response read whole."""
    return drained(predict(**kwargs))


def _header_text(value, what):
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1")
    elif not isinstance(value, str):
        value = str(value)
    if any(c in value for c in "\r\n\0"):
        raise ValueError("the response %s %r contains a line break" % (what, value))
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("the response %s %r is not latin-1" % (what, value)) from None
    return value


def _response_headers(result):
    """The headers of a returned Response-like object as (name, value) pairs."""
    headers = getattr(result, "headers", None)
    if headers is None:
        return []
    if hasattr(headers, "multi_items"):
        items = headers.multi_items()
    elif hasattr(headers, "items"):
        items = headers.items()
    else:
        items = headers
    pairs = []
    for item in items:
        name, value = item
        name = _header_text(name, "header name")
        if not name or any(c not in _TOKEN_CHARS for c in name):
            raise ValueError("invalid response header name %r" % name)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            pairs.append((name, _header_text(v, "header %s" % name)))
    return pairs


def render(result):
    """(status, body, [(header, value)]) for what predict() returned; raises
    TypeError or ValueError if it cannot be sent."""
    if isinstance(result, (bytes, bytearray, memoryview)):
        return 200, bytes(result), [("Content-Type", "application/octet-stream")]
    if isinstance(result, str):
        return 200, result.encode("utf-8"), [("Content-Type", "text/plain; charset=utf-8")]
    if _is_response(result):
        status = result.status_code
        if not 200 <= status <= 599:
            raise ValueError("the Response returned by predict() has an invalid status_code %d" % status)
        headers = [(k, v) for k, v in _response_headers(result) if k.lower() not in _HOP_BY_HOP]
        if not any(k.lower() == "content-type" for k, _ in headers):
            media_type = getattr(result, "media_type", None)
            if media_type:
                media_type = _header_text(media_type, "media_type")
                if media_type.lower().startswith("text/") and "charset=" not in media_type.lower():
                    charset = getattr(result, "charset", None) or "utf-8"
                    media_type += "; charset=%s" % _header_text(charset, "charset")
                headers.insert(0, ("Content-Type", media_type))
        return status, bytes(result.body), headers
    try:
        # NaN and Infinity are not JSON (strict parsers refuse them), as Starlette refused them.
        body = json.dumps(result, allow_nan=False).encode("utf-8")
    except ValueError as e:
        if "Out of range float" not in str(e):
            raise TypeError("the value returned by predict() is not JSON serialisable: %s" % e) from e
        raise ValueError(
            "the value returned by predict() is not JSON serialisable: it holds NaN or Infinity, "
            "which JSON has no number for; return None or a string in their place"
        ) from e
    except TypeError as e:
        raise TypeError("the value returned by predict() is not JSON serialisable: %s" % e) from e
    return 200, body, [("Content-Type", "application/json")]
