"""HTTP/1.1 requests as they arrive: parsing a request head, and reading a body framed by
Content-Length or chunked transfer encoding as it comes; the errors that get 400, 413 and
431; dates and reason phrases for answers."""

import email.utils
import http
import time
import urllib.parse

from .log import _one_line


# The request line and headers may take up to this many bytes (431 beyond)
HEAD_LIMIT = 64 * 1024
# the longest chunk size or trailer line of a chunked body
MAX_LINE = 8192
_REASONS = {s.value: s.phrase for s in http.HTTPStatus}
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_DIGITS = frozenset("0123456789")
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class BadRequest(Exception):
    pass


class PayloadTooLarge(Exception):
    pass


class HeadTooLarge(Exception):
    """The request line and headers are longer than HEAD_LIMIT."""


class RequestHead:
    """A request's line and headers (as sent: a list of (name, value) pairs; `by_name` holds
    each lower-case name's values)."""

    __slots__ = ("method", "target", "version", "headers", "by_name", "path", "query", "keep_alive")

    def __init__(self, method, target, version, headers):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        by_name = {}
        for k, v in headers:
            by_name.setdefault(k.lower(), []).append(v)
        self.by_name = by_name
        if target.startswith("/"):
            path, _, query = target.partition("?")
            self.path, self.query = path, query.partition("#")[0]
        else:  # absolute form (or "*")
            split = urllib.parse.urlsplit(target)
            self.path, self.query = split.path or "/", split.query
        connection = by_name.get("connection")
        tokens = {t.strip().lower() for v in connection for t in v.split(",")} if connection else ()
        if version == "HTTP/1.0":
            self.keep_alive = "keep-alive" in tokens
        else:
            self.keep_alive = "close" not in tokens

    def get(self, name, default=None):
        values = self.by_name.get(name.lower())
        return values[0] if values else default

    def get_all(self, name):
        return self.by_name.get(name.lower(), [])


def _head_end(buf):
    """(end of the head's last line, bytes the head takes with its blank line) or None."""
    crlf = buf.find(b"\n\r\n")
    lf = buf.find(b"\n\n")
    if crlf < 0 and lf < 0:
        return None
    if lf < 0 or 0 <= crlf < lf:
        return crlf, crlf + 3
    return lf, lf + 2


def parse_head(buf):
    """Parses a request head from the start of `buf` (a bytearray; empty lines before it
    are dropped): (RequestHead, bytes it takes), or None until it is complete. Raises
    HeadTooLarge, or BadRequest for a malformed request line or header."""
    while buf[:2] == b"\r\n" or buf[:1] == b"\n":
        del buf[: 2 if buf[:1] == b"\r" else 1]
    found = _head_end(buf)
    if found is None:
        if len(buf) > HEAD_LIMIT:
            raise HeadTooLarge()
        return None
    end, taken = found
    if taken > HEAD_LIMIT:
        raise HeadTooLarge()
    lines = bytes(buf[:end]).decode("latin-1").split("\n")
    words = lines[0].rstrip("\r").split(" ")
    if len(words) != 3 or not words[0] or not words[1]:
        raise BadRequest("malformed request line %r" % _one_line(lines[0].rstrip("\r"), 80))
    method, target, version = words
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest("unsupported HTTP version %r (HTTP/1.1 and HTTP/1.0 are)" % _one_line(version, 20))
    if any(c not in _TOKEN_CHARS for c in method):
        raise BadRequest("malformed method %r" % _one_line(method, 20))
    headers = []
    for line in lines[1:]:
        line = line.rstrip("\r")
        name, sep, value = line.partition(":")
        if not sep or not name or any(c not in _TOKEN_CHARS for c in name):
            raise BadRequest("malformed header line %r" % _one_line(line, 80))
        headers.append((name, value.strip(" \t")))
    return RequestHead(method, target, version, headers), taken


def request_body(head, limit):
    """A reader of the body of `head` as its framing says: a LengthBody (its Content-Length,
    0 without a body), or a ChunkedBody. Raises BadRequest or PayloadTooLarge."""
    codings = [c.strip().lower() for v in head.get_all("Transfer-Encoding") for c in v.split(",") if c.strip()]
    if codings:
        if codings != ["chunked"]:
            raise BadRequest("unsupported Transfer-Encoding: %s (only chunked is)" % ", ".join(codings))
        return ChunkedBody(limit, both_framings=bool(head.get_all("Content-Length")))
    values = head.get_all("Content-Length")
    if not values:
        return LengthBody(0)
    texts = {v.strip() for v in values}
    text = texts.pop()
    if texts or not text or any(c not in _DIGITS for c in text):
        raise BadRequest("invalid Content-Length")
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(limit)) or int(digits) > limit:
        raise PayloadTooLarge()
    return LengthBody(int(digits))


class LengthBody:
    """A request body of a known length."""

    both_framings = False
    incomplete = "incomplete request body"

    def __init__(self, length):
        self.length = length

    def take(self, buf):
        """The body, taken from `buf`, once it is all in; else None."""
        n = self.length
        if len(buf) < n:
            return None
        body = bytes(buf[:n])
        del buf[:n]
        return body

    def missing(self, buf):
        """Whether more of it is to come than `buf` holds."""
        return len(buf) < self.length


class ChunkedBody:
    """Decodes a chunked request body as it arrives."""

    incomplete = "incomplete chunked request body"

    def __init__(self, limit, both_framings=False):
        self.limit = limit
        # both framings: the connection is never reused
        self.both_framings = both_framings
        self.state = "size"
        self.remaining = 0
        self.total = 0
        self.trailers = 0
        self.chunks = []

    def _line(self, buf, what):
        i = buf.find(b"\n", 0, MAX_LINE + 1)
        if i < 0:
            if len(buf) > MAX_LINE:
                raise BadRequest("%s line is too long" % what)
            return None
        line = bytes(buf[: i + 1])
        del buf[: i + 1]
        return line

    def feed(self, buf):
        """Takes what it can from `buf`; True once the body and its trailers are in.
        Raises BadRequest or PayloadTooLarge."""
        while True:
            if self.state == "size":
                line = self._line(buf, "a chunk size")
                if line is None:
                    return False
                digits = line.split(b";", 1)[0].strip()
                if not digits or any(c not in _HEX_DIGITS for c in digits):
                    raise BadRequest(
                        "invalid chunk size %r in the request body" % _one_line(digits.decode("latin-1"), 40)
                    )
                significant = digits.lstrip(b"0")
                if len(significant) > 16:
                    raise BadRequest(
                        "absurd chunk size %r in the request body" % _one_line(digits.decode("latin-1"), 40)
                    )
                size = int(significant, 16) if significant else 0
                if size == 0:
                    self.state = "trailer"
                    continue
                if self.total + size > self.limit:
                    raise PayloadTooLarge()
                self.total += size
                self.remaining = size
                self.state = "data"
            elif self.state == "data":
                if not buf:
                    return False
                n = min(self.remaining, len(buf))
                self.chunks.append(bytes(buf[:n]))
                del buf[:n]
                self.remaining -= n
                if self.remaining:
                    return False
                self.state = "crlf"
            elif self.state == "crlf":
                if buf[:1] == b"\n":
                    del buf[:1]
                elif buf[:2] == b"\r\n":
                    del buf[:2]
                elif not buf or buf == b"\r":
                    return False
                else:
                    raise BadRequest("a chunk of the request body does not end with CRLF")
                self.state = "size"
            else:  # trailers, up to the empty line
                line = self._line(buf, "a trailer")
                if line is None:
                    return False
                if line in (b"\r\n", b"\n"):
                    return True
                self.trailers += len(line)
                if self.trailers > MAX_LINE:
                    raise BadRequest("the trailers of the chunked request body are too long")

    def take(self, buf):
        """The body, decoded from what `buf` holds (taken from it), once it is all in;
        else None. Raises BadRequest or PayloadTooLarge."""
        return b"".join(self.chunks) if self.feed(buf) else None

    def missing(self, buf):
        return True


_date_cache = [0, ""]


def _http_date():
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0], _date_cache[1] = now, email.utils.formatdate(now, usegmt=True)
    return _date_cache[1]
