"""Model files kept on this machine: the API's model directory (`CORTEX_VENVS_DIR/models/`,
writable by its replicas and shared by them), downloads into it (`http(s)://` model files,
once, under a lock, written whole before they are seen), and the one `.onnx` file a model
directory stands for (cortex's form)."""

import fcntl
import hashlib
import os
import shutil
import tempfile
import urllib.parse

from .log import _flush_output, _log

DOWNLOAD_TIMEOUT = 60  # seconds without a byte before a download is given up


class ModelError(Exception):
    """The model cannot be found or fetched."""


def is_url(location):
    return location.split("://", 1)[0].lower() in ("http", "https") and "://" in location


def model_dir(key, per_api_version=False):
    """Where the download named by `key` is kept (`per_api_version`: a new version of the API
    downloads it again, for what cannot tell a changed file from an unchanged one)."""
    base = os.environ.get("CORTEX_VENVS_DIR", "").strip() or os.path.join(tempfile.gettempdir(), "cortex")
    if per_api_version:
        key = "%s\0%s" % (os.environ.get("CORTEX_API_VERSION", ""), key)
    return os.path.join(base, "models", hashlib.sha256(key.encode()).hexdigest()[:24])


def onnx_file(path, location):
    """The .onnx file of a model: `path` itself, or the one .onnx file in the directory."""
    if os.path.isdir(path):
        found = sorted(f for f in os.listdir(path) if f.endswith(".onnx") and os.path.isfile(os.path.join(path, f)))
        if len(found) != 1:
            raise ModelError(
                "%s is a directory with %s .onnx file%s; it must hold exactly one"
                % (location, len(found) or "no", "" if len(found) == 1 else "s")
            )
        return os.path.join(path, found[0])
    if not os.path.isfile(path):
        raise ModelError("%s: there is no file at %s" % (location, path))
    return path


def _file_name(url):
    name = os.path.basename(urllib.parse.urlsplit(url).path)
    if not name or name in (".", ".."):
        return "model.onnx"
    return name


def download(url, directory):
    """The local copy of the file at `url` in `directory` (downloaded if it is not there)."""
    target = os.path.join(directory, _file_name(url))
    if os.path.isfile(target):
        return directory
    os.makedirs(os.path.dirname(directory), exist_ok=True)
    with open(directory + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isfile(target):
            return directory
        _log("INFO", "downloading the model from %s" % _redacted(url))
        _flush_output()
        os.makedirs(directory, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=directory, prefix=".download-")
        import urllib.request  # only for a download: its import is a fifth of a replica's start

        try:
            with os.fdopen(fd, "wb") as out:
                request = urllib.request.Request(url, headers={"User-Agent": "cortex"})
                with _opener(url).open(request, timeout=DOWNLOAD_TIMEOUT) as response:
                    shutil.copyfileobj(response, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.rename(partial, target)
        except Exception as e:
            try:
                os.unlink(partial)
            except OSError:
                pass
            raise ModelError("cannot download the model from %s: %s" % (_redacted(url), e)) from None
        _log("INFO", "downloaded the model (%d bytes)" % os.path.getsize(target))
    return directory


def _opener(url):
    """urllib's opener: the environment's proxies, but none for this machine's own addresses."""
    import urllib.request

    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.startswith("127.") or host == "::1":
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def _redacted(url):
    """`url` without a password it may carry."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = "%s:%d" % (host, parts.port)
    return urllib.parse.urlunsplit((parts.scheme, "%s:***@%s" % (parts.username or "", host), parts.path, parts.query, ""))
