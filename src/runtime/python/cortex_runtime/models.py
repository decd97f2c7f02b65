"""An onnx predictor's model (`predictor.model_path`, `CORTEX_MODEL_PATH`) as a local file:
a file or directory in the project, a `file:///` path, or an `http(s)://` URL downloaded once
per API version (`CORTEX_API_VERSION`) into the API's own writable directory
(`CORTEX_VENVS_DIR/models/`), by the preparation run when the server makes one, else by the
first replica. A directory stands for the one `.onnx` file in it (cortex's form)."""

import fcntl
import hashlib
import os
import shutil
import tempfile
import urllib.parse
import urllib.request

from .log import _flush_output, _log

DOWNLOAD_TIMEOUT = 60  # seconds without a byte before a download is given up


class ModelError(Exception):
    """The model cannot be found or fetched."""


def is_url(model_path):
    return model_path.split("://", 1)[0].lower() in ("http", "https") and "://" in model_path


def local_model(settings):
    """The local file of the settings' model, downloaded first when it is a URL."""
    model_path = settings["model_path"]
    if is_url(model_path):
        path = _download(settings, model_path)
    elif model_path.lower().startswith("file://"):
        path = urllib.parse.unquote(model_path[len("file://"):])
    elif "://" in model_path:
        raise ModelError("model_path %s: only paths in the project, file:/// and http(s):// are supported" % model_path)
    else:
        path = os.path.join(settings["project_dir"], model_path)
    return _model_file(path, model_path)


def _model_file(path, model_path):
    if os.path.isdir(path):
        found = sorted(f for f in os.listdir(path) if f.endswith(".onnx") and os.path.isfile(os.path.join(path, f)))
        if len(found) != 1:
            raise ModelError(
                "model_path %s is a directory with %s .onnx file%s; it must hold exactly one"
                % (model_path, len(found) or "no", "" if len(found) == 1 else "s")
            )
        return os.path.join(path, found[0])
    if not os.path.isfile(path):
        raise ModelError("model_path %s: there is no file at %s" % (model_path, path))
    return path


def download_dir(settings, url):
    """Where `url`'s model is kept for this version of the API."""
    base = os.environ.get("CORTEX_VENVS_DIR", "").strip() or os.path.join(tempfile.gettempdir(), "cortex")
    version = os.environ.get("CORTEX_API_VERSION", "")
    key = hashlib.sha256(("%s\0%s\0%s" % (settings["api_name"], version, url)).encode()).hexdigest()[:24]
    return os.path.join(base, "models", key)


def _file_name(url):
    name = os.path.basename(urllib.parse.urlsplit(url).path)
    if not name or name in (".", ".."):
        return "model.onnx"
    return name


def _download(settings, url):
    directory = download_dir(settings, url)
    target = os.path.join(directory, _file_name(url))
    if os.path.isfile(target):
        return target
    os.makedirs(os.path.dirname(directory), exist_ok=True)
    with open(directory + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isfile(target):
            return target
        _log("INFO", "%s: downloading the model from %s" % (settings["api_name"], _redacted(url)))
        _flush_output()
        os.makedirs(directory, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=directory, prefix=".download-")
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
        size = os.path.getsize(target)
        _log("INFO", "%s: downloaded the model (%d bytes)" % (settings["api_name"], size))
    return target


def _opener(url):
    """urllib's opener: the environment's proxies, but none for this machine's own addresses."""
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
