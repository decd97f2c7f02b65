"""What predict() receives: the payload parsed by the request's Content-Type (JSON, forms,
multipart with files, or the raw bytes) and the read-only `Headers`, `QueryParams` and
`FormData` dicts."""

import email.parser
import email.policy
import email.utils
import io
import json
import urllib.parse

from .http_wire import BadRequest
from .log import _describe


class _ReadOnlyDict(dict):
    """A read-only dict built from (key, value) pairs that keeps every pair for
    getlist(). A dict subclass so that json.dumps and dict() work on it."""

    __slots__ = ("_list",)
    _first_wins = False

    def __init__(self, items=()):
        if hasattr(items, "multi_items"):
            items = items.multi_items()
        elif hasattr(items, "items"):
            items = items.items()
        pairs = [(self._key(k), v) for k, v in items]
        values = {}
        for k, v in pairs:
            if not (self._first_wins and k in values):
                values[k] = v
        dict.__init__(self, values)
        self._list = pairs

    @staticmethod
    def _key(key):
        return key

    def __getitem__(self, key):
        return dict.__getitem__(self, self._key(key))

    def __contains__(self, key):
        try:
            return dict.__contains__(self, self._key(key))
        except TypeError:  # unhashable
            return False

    def get(self, key, default=None):
        try:
            return dict.get(self, self._key(key), default)
        except TypeError:
            return default

    def getlist(self, key):
        """Every value of `key`, in request order ([] if none)."""
        key = self._key(key)
        return [v for k, v in self._list if k == key]

    def multi_items(self):
        """Every (key, value) pair, repeated keys included, in request order."""
        return list(self._list)

    def copy(self):
        return type(self)(self._list)

    def __copy__(self):
        return self.copy()

    def __reduce__(self):
        return (type(self), (list(self._list),))

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, dict.__repr__(self))

    def _read_only(self, *args, **kwargs):
        raise TypeError("%s is read-only" % type(self).__name__)

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only


class Headers(_ReadOnlyDict):
    """The request headers: keys are lower case and lookups ignore case; a
    repeated header's value is its first one (getlist gives all of them)."""

    __slots__ = ()
    _first_wins = True

    @staticmethod
    def _key(key):
        return key.lower() if isinstance(key, str) else key


class QueryParams(_ReadOnlyDict):
    """The query parameters: the last value of a repeated one wins (getlist
    gives all of them)."""

    __slots__ = ()


class FormData(_ReadOnlyDict):
    """A form body (like Starlette's FormData): str values for plain fields,
    UploadFile for files; the last value of a repeated field wins."""

    __slots__ = ()

    def close(self):
        for _, v in self._list:
            if isinstance(v, UploadFile):
                v.close()


class UploadFile:
    """A file part of a multipart/form-data body (like Starlette's UploadFile,
    with synchronous methods)."""

    def __init__(self, filename, content_type, data, headers=None):
        self.filename = filename
        self.content_type = content_type
        self.headers = headers if headers is not None else Headers()
        self.size = len(data)
        self.file = io.BytesIO(data)

    def read(self, size=-1):
        return self.file.read(size)

    def seek(self, offset, whence=0):
        return self.file.seek(offset, whence)

    def close(self):
        self.file.close()

    def __repr__(self):
        return "UploadFile(filename=%r, content_type=%r, size=%d)" % (self.filename, self.content_type, self.size)


def _media_type(content_type):
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(content_type):
    media = _media_type(content_type)
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def parse_payload(content_type, body):
    """The `payload` for a request body (see `main`'s doc); raises BadRequest."""
    if _is_json(content_type):
        try:
            return json.loads(body)
        except ValueError as e:
            raise BadRequest("the request body is not valid JSON: %s" % e) from None
    media = _media_type(content_type)
    if media == "application/x-www-form-urlencoded":
        return parse_urlencoded(body)
    if media == "multipart/form-data":
        return parse_multipart(content_type, body)
    return body


def parse_urlencoded(body):
    try:
        text = body.decode("utf-8")
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("the application/x-www-form-urlencoded body is not valid UTF-8") from None
    except ValueError as e:
        raise BadRequest("the application/x-www-form-urlencoded body is malformed: %s" % e) from None
    return FormData(pairs)


_MULTIPART_DEFECTS = {
    "NoBoundaryInMultipartDefect": "the Content-Type has no boundary parameter",
    "StartBoundaryNotFoundDefect": "the boundary was not found in the body",
    "CloseBoundaryNotFoundDefect": "the closing boundary is missing (truncated body?)",
}


def _text(value):
    """A header parameter as str: RFC 2231 values collapsed, undecodable bytes replaced."""
    if isinstance(value, tuple):
        value = email.utils.collapse_rfc2231_value(value)
    value = str(value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # surrogate escapes from bytes that were not UTF-8
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


def parse_multipart(content_type, body):
    what = "the multipart/form-data body is malformed"
    header = " ".join(content_type.split())  # no line breaks into the synthetic message
    raw = b"Content-Type: " + header.encode("latin-1", "replace") + b"\r\n\r\n" + body
    try:
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    except Exception as e:  # the email package reports defects, but be safe
        raise BadRequest("%s: %s" % (what, _describe(e))) from None
    boundary = msg.get_boundary()
    if boundary is None:
        raise BadRequest("%s: %s" % (what, _MULTIPART_DEFECTS["NoBoundaryInMultipartDefect"]))
    stripped = body.strip()
    if not stripped or stripped == b"--" + boundary.encode("latin-1", "replace") + b"--":
        return FormData()  # no fields at all
    for defect in msg.defects:
        name = type(defect).__name__
        if name in _MULTIPART_DEFECTS:
            raise BadRequest("%s: %s" % (what, _MULTIPART_DEFECTS[name]))
    if not msg.is_multipart() or msg.defects:
        raise BadRequest("%s: %s" % (what, ", ".join(type(d).__name__ for d in msg.defects) or "no parts"))

    pairs = []
    for index, part in enumerate(msg.get_payload(), 1):
        if part.is_multipart():
            raise BadRequest("%s: part %d is itself multipart, which is not supported" % (what, index))
        if part.get_content_disposition() != "form-data":
            raise BadRequest("%s: part %d has no `Content-Disposition: form-data` header" % (what, index))
        name = part.get_param("name", header="content-disposition")
        if name is None:
            raise BadRequest("%s: part %d has no name" % (what, index))
        name = _text(name)
        if part.defects:
            raise BadRequest(
                "%s: part %d (%r): %s" % (what, index, name, ", ".join(type(d).__name__ for d in part.defects))
            )
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            ctype = part.get("Content-Type")
            value = UploadFile(
                _text(filename),
                _text(ctype) if ctype is not None else "",
                data,
                Headers((k, _text(v)) for k, v in part.items()),
            )
        else:
            charset = part.get_content_charset() or "utf-8"
            try:
                value = data.decode(charset)
            except (LookupError, UnicodeDecodeError):
                raise BadRequest("%s: the field %r is not valid %s" % (what, name, charset)) from None
        pairs.append((name, value))
    return FormData(pairs)
