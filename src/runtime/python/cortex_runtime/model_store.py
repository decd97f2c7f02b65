"""An API's models (`predictor.model_path` or `predictor.models`), loaded on demand by the
predictor's loader (`PythonPredictor.load_model`, or an onnxruntime session), and kept live:

- `get(name, version)`: the model loaded from that version ("latest", None or omitted: the
  highest number there is now); unknown names and versions raise ModelNotFound (a 404), a
  version that is not a number ModelRequestError (a 400);
- without `cache_size`, every model's latest version is loaded at start (a broken model fails
  the replica, as it should); with it, models are loaded when first asked for and at most
  `cache_size` stay in memory, and at most `disk_cache_size` downloaded versions on disk (least
  recently used go first);
- live reloading: every `CORTEX_MODEL_RELOAD_SECONDS` (10) the locations are listed again: a
  version whose files changed or that is gone is dropped (and loaded again when asked for),
  a new one is used for "latest" from then on (and loaded at once without a cache).

The loaded models are this process's; downloads are shared by the API's replicas, each
version in its own directory, read under a shared lock that eviction respects."""

import collections
import contextlib
import fcntl
import os
import shutil
import threading
import time

from .log import _describe, _log
from .model_sources import source_for
from .models import ModelError

# The model name cortex used for `predictor.model_path` (one model per API).
SINGLE_MODEL_NAME = "_cortex_default"
DEFAULT_RELOAD_SECONDS = 10.0


class ModelNotFound(LookupError):
    """The predictor asked for a model or version the API does not have (a 404)."""


class ModelRequestError(ValueError):
    """The predictor asked for a version that is not a number or "latest" (a 400)."""


def reload_seconds():
    text = os.environ.get("CORTEX_MODEL_RELOAD_SECONDS", "").strip()
    try:
        value = float(text) if text else DEFAULT_RELOAD_SECONDS
    except ValueError:
        value = DEFAULT_RELOAD_SECONDS
    return max(value, 0.1)


def parse_version(version):
    """None for the latest version, else the version's number."""
    if version is None:
        return None
    text = str(version).strip()
    if text in ("", "latest"):
        return None
    if not text.isdigit():
        raise ModelRequestError("model_version must be a number or 'latest', got %r" % (version,))
    return int(text)


def store_for(settings):
    """The API's model store, or None when it names no models."""
    spec = settings.get("models")
    if not spec:
        return None
    return ModelStore(spec, settings["project_dir"], settings["api_name"])


class ModelStore:
    def __init__(self, spec, project_dir, api_name):
        self.api_name = api_name
        self.single = "model_path" in spec
        self.cache_size = spec.get("cache_size")
        self.disk_cache_size = spec.get("disk_cache_size")
        self._project_dir = project_dir
        if self.single:
            self._fixed = {SINGLE_MODEL_NAME: source_for(spec["model_path"], project_dir)}
            self._dir = None
        elif spec.get("dir"):
            self._fixed = None
            self._dir = source_for(spec["dir"], project_dir)
        else:
            self._fixed = {p["name"]: source_for(p["model_path"], project_dir) for p in spec.get("paths") or []}
            self._dir = None
        self._loader = None
        self._lock = threading.RLock()
        self._sources = {}
        self._listing = {}  # name -> {version: fingerprint}
        self._loaded = collections.OrderedDict()  # (name, version) -> (fingerprint, model)
        self._on_disk = collections.OrderedDict()  # (name, version, fingerprint) -> path (downloads)
        self._loading = {}  # (name, version) -> lock

    @property
    def names(self):
        with self._lock:
            return sorted(self._listing)

    @property
    def caching(self):
        return self.cache_size is not None

    def prefetch(self):
        """Downloads what the standard library can (`http(s)://` files), for the server's
        preparation run; the rest is fetched by the replicas."""
        for source in (self._fixed or {}).values():
            if getattr(source, "prefetchable", False):
                source.local_path(1, None)

    def start(self, loader):
        """Lists the models, loads each one's latest version unless caching, and starts the
        live reloading. Raises ModelError when a model cannot be listed or loaded."""
        self._loader = loader
        self.refresh(strict=True)
        if not self.caching:
            for name in self.names:
                self.get(name)
        if any(getattr(s, "polled", False) for s in self._all_sources()):
            threading.Thread(target=self._reload_loop, name="cortex-model-reload", daemon=True).start()

    def _all_sources(self):
        with self._lock:
            return list(self._sources.values()) + ([self._dir] if self._dir is not None else [])

    def refresh(self, strict=False):
        """Lists every location again, dropping the versions that changed or are gone."""
        sources = self._dir.children() if self._dir is not None else dict(self._fixed)
        listing = {}
        for name, source in sources.items():
            try:
                listing[name] = source.versions()
            except ModelError:
                if strict:
                    raise
                with self._lock:
                    listing[name] = self._listing.get(name, {})
                continue
            if strict and not listing[name] and self._dir is None:
                raise ModelError("model %s: there is no model at %s" % (self._shown(name), source.location))
        with self._lock:
            self._sources = sources
            old, self._listing = self._listing, listing
            for key in list(self._loaded):
                name, version = key
                now = listing.get(name, {}).get(version)
                if now != self._loaded[key][0]:
                    del self._loaded[key]
                    _log("INFO", "%s: model %s version %d %s" % (
                        self.api_name, self._shown(name), version, "changed; it is loaded again" if now else "is gone"))
        for name, versions in listing.items():
            for version in set(versions) - set(old.get(name, {})):
                if old:
                    _log("INFO", "%s: model %s has a new version %d" % (self.api_name, self._shown(name), version))

    def _shown(self, name):
        return "(model_path)" if name == SINGLE_MODEL_NAME else repr(name)

    def _reload_loop(self):
        while True:
            time.sleep(reload_seconds())
            try:
                self.refresh()
                if not self.caching:
                    for name in self.names:
                        self.get(name)
                self._drop_stale_downloads()
            except Exception as e:  # keeps serving what it has
                _log("WARNING", "%s: checking the models for new versions failed: %s" % (self.api_name, _describe(e)))

    def resolve(self, name, version):
        """(name, version number, fingerprint) of what `get(name, version)` returns."""
        number = parse_version(version)
        with self._lock:
            if self.single:
                name = SINGLE_MODEL_NAME
            elif name is None:
                raise ModelNotFound("model_name was not given; the models are: %s" % ", ".join(self.names))
            elif name not in self._listing:
                raise ModelNotFound("there is no model named %r; the models are: %s" % (name, ", ".join(self.names)))
            versions = self._listing[name]
            if not versions:
                raise ModelNotFound("model %s has no versions now" % self._shown(name))
            if number is None:
                number = max(versions)
            elif number not in versions:
                raise ModelNotFound("model %s has no version %d; it has %s" % (
                    self._shown(name), number, ", ".join(str(v) for v in sorted(versions))))
            return name, number, versions[number]

    def get(self, name=None, version="latest"):
        name, number, fingerprint = self.resolve(name, version)
        key = (name, number)
        with self._lock:
            hit = self._loaded.get(key)
            if hit is not None and hit[0] == fingerprint:
                self._loaded.move_to_end(key)
                return hit[1]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                hit = self._loaded.get(key)
                if hit is not None and hit[0] == fingerprint:
                    return hit[1]
                source = self._sources[name]
            model = self._load(name, number, fingerprint, source)
            with self._lock:
                self._loaded[key] = (fingerprint, model)
                self._loaded.move_to_end(key)
                while self.caching and len(self._loaded) > self.cache_size:
                    evicted, _ = self._loaded.popitem(last=False)
                    _log("INFO", "%s: model %s version %d leaves the memory cache" % (
                        self.api_name, self._shown(evicted[0]), evicted[1]))
            return model

    def loaded(self):
        """name -> the model of its latest version, for the models whose latest is loaded."""
        with self._lock:
            out = {}
            for name, versions in self._listing.items():
                hit = self._loaded.get((name, max(versions))) if versions else None
                if hit is not None:
                    out[name] = hit[1]
            return out

    def _load(self, name, number, fingerprint, source):
        path = source.local_path(number, fingerprint)
        if source.remote:
            self._remember_download((name, number, fingerprint), path)
        _log("INFO", "%s: loading model %s version %d" % (self.api_name, self._shown(name), number))
        with _shared(path) if source.remote else contextlib.nullcontext():
            try:
                return self._loader(path, source.location)
            except ModelError:
                raise
            except Exception as e:
                raise ModelError("loading model %s version %d failed: %s" % (self._shown(name), number, _describe(e))) from e

    def _remember_download(self, key, path):
        with self._lock:
            self._on_disk[key] = path
            self._on_disk.move_to_end(key)
            limit = self.disk_cache_size if self.caching else None
            while limit is not None and len(self._on_disk) > limit:
                (name, number, _), old = self._on_disk.popitem(last=False)
                if _remove_unused(old):
                    _log("INFO", "%s: model %s version %d leaves the disk cache" % (self.api_name, self._shown(name), number))

    def _drop_stale_downloads(self):
        """Removes this process's downloads of versions that changed or are gone."""
        with self._lock:
            stale = [k for k in self._on_disk if self._listing.get(k[0], {}).get(k[1]) != k[2]]
            paths = [self._on_disk.pop(k) for k in stale]
        for path in paths:
            _remove_unused(path)


class _shared:
    """A shared lock on a downloaded version while it is read (eviction takes it exclusively)."""

    def __init__(self, path):
        self._path = path
        self._file = None

    def __enter__(self):
        lock = self._path.rstrip("/") + ".lock"
        if os.path.isdir(os.path.dirname(lock)) and os.access(os.path.dirname(lock), os.W_OK):
            try:
                self._file = open(lock, "a")
                fcntl.flock(self._file, fcntl.LOCK_SH)
            except OSError:
                self._file = None
        return self

    def __exit__(self, *exc):
        if self._file is not None:
            self._file.close()


def _remove_unused(path):
    """Removes a downloaded version unless some replica is reading it now."""
    lock = path.rstrip("/") + ".lock"
    try:
        with open(lock, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(path, ignore_errors=True)
        os.unlink(lock)
        return True
    except OSError:
        return False
