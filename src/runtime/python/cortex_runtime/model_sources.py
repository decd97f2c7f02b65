"""Where a model's versions come from (`predictor.model_path`, `models.paths[].model_path`,
`models.dir`): a path in the project, `file:///...`, an `http(s)://` URL or `s3://bucket/prefix`.

A location holds one model, either unversioned (its files, or one file) or versioned: numbered
subdirectories (`1523423423/`), each a version of the model. A source answers two things: its
versions now (`versions()`: number -> fingerprint, which changes when the version's files do),
and a local path holding one version (`local_path(version, fingerprint)`: the location itself
when it is on this machine, else a download kept in the API's model directory). An unversioned
model is version 1, as cortex had it.

`s3://` uses boto3 (installed into the API's virtualenv when a location is on S3) with the
standard AWS environment variables of the API (`predictor.env`, `.env`), `AWS_ENDPOINT_URL`
included, with path-style addressing for such an endpoint; without credentials, anonymously."""

import hashlib
import os
import shutil
import tempfile
import urllib.parse

from .models import ModelError, download, model_dir

UNVERSIONED = 1


def source_for(location, project_dir):
    """The source of `location` (as written in cortex.yaml)."""
    scheme = location.split("://", 1)[0].lower() if "://" in location else ""
    if scheme in ("http", "https"):
        return HttpSource(location)
    if scheme == "s3":
        return S3Source(location)
    if scheme == "file":
        return LocalSource(location, urllib.parse.unquote(location[len("file://"):]))
    if scheme:
        raise ModelError("%s: only paths in the project, file:///, http(s):// and s3:// are supported" % location)
    return LocalSource(location, os.path.join(project_dir, location))


def _versioned(names):
    """The version numbers among directory entry names (empty when the model is unversioned)."""
    return sorted(int(n) for n in names if n.isdigit())


def _digest(items):
    h = hashlib.sha256()
    for item in items:
        h.update(repr(item).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


class LocalSource:
    """A model on this machine's disk, used in place (never copied)."""

    remote = False
    polled = True

    def __init__(self, location, path):
        self.location = location
        self.path = path

    def versions(self):
        if os.path.isfile(self.path):
            st = os.stat(self.path)
            return {UNVERSIONED: _digest([(st.st_size, st.st_mtime_ns)])}
        if not os.path.isdir(self.path):
            return {}
        numbers = [n for n in _versioned(os.listdir(self.path)) if os.path.isdir(os.path.join(self.path, str(n)))]
        if not numbers:
            return {UNVERSIONED: _tree_digest(self.path)}
        return {n: _tree_digest(os.path.join(self.path, str(n))) for n in numbers}

    def local_path(self, version, fingerprint):
        versioned = os.path.join(self.path, str(version))
        return versioned if os.path.isdir(versioned) else self.path

    def children(self):
        """`models.dir`: each subdirectory is a model named after it."""
        if not os.path.isdir(self.path):
            raise ModelError("models.dir %s: there is no directory at %s" % (self.location, self.path))
        return {
            name: LocalSource(self.location.rstrip("/") + "/" + name, os.path.join(self.path, name))
            for name in sorted(os.listdir(self.path))
            if not name.startswith(".") and os.path.isdir(os.path.join(self.path, name))
        }


def _tree_digest(path):
    """What changes when a file under `path` is added, removed, resized or rewritten."""
    entries = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            entries.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
    return _digest(entries)


class HttpSource:
    """One file at a URL: a single, fixed version (a URL cannot be listed), downloaded once per
    API version."""

    remote = True
    polled = False
    prefetchable = True

    def __init__(self, url):
        self.location = url

    def versions(self):
        return {UNVERSIONED: "url"}

    def local_path(self, version, fingerprint):
        return download(self.location, model_dir(self.location, per_api_version=True))


class S3Source:
    """The objects under an `s3://bucket/prefix`, each version downloaded into its own
    directory (named by the version's fingerprint, so a changed version is a new download)."""

    remote = True
    polled = True

    def __init__(self, location):
        parts = urllib.parse.urlsplit(location)
        self.location = location
        self.bucket = parts.netloc
        self.prefix = parts.path.lstrip("/")
        # the prefix as a directory: what the objects of the model are listed under
        self.base = self.prefix if not self.prefix or self.prefix.endswith("/") else self.prefix + "/"
        if not self.bucket:
            raise ModelError("%s: an s3:// location names a bucket, like s3://my-bucket/models/iris/" % location)

    def _objects(self):
        """(key relative to the prefix, etag, size) of every object under the prefix."""
        client = _s3_client()
        found = []
        try:
            # the prefix may be a single object (a model file)
            if self.prefix and not self.prefix.endswith("/"):
                single = _head(client, self.bucket, self.prefix)
                if single is not None:
                    return [("", single["ETag"], single["ContentLength"])]
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.base)
            for page in pages:
                for obj in page.get("Contents", []):
                    rel = obj["Key"][len(self.base):]
                    if rel and not rel.endswith("/"):
                        found.append((rel, obj.get("ETag", ""), obj.get("Size", 0)))
        except Exception as e:
            raise ModelError("cannot list %s: %s" % (self.location, _s3_error(e))) from None
        return found

    def versions(self):
        objects = self._objects()
        if objects and objects[0][0] == "":
            return {UNVERSIONED: _digest(objects)}
        numbers = set(_versioned(rel.split("/", 1)[0] for rel, _, _ in objects if "/" in rel))
        if not numbers:
            return {UNVERSIONED: _digest(sorted(objects))} if objects else {}
        return {
            n: _digest(sorted(o for o in objects if o[0].startswith("%d/" % n)))
            for n in sorted(numbers)
        }

    def local_path(self, version, fingerprint):
        target = model_dir("%s\0%s\0%s" % (self.location, version, fingerprint))
        if os.path.isdir(target):
            return target
        objects = self._objects()
        single = objects and objects[0][0] == ""
        if not single and any(rel.startswith("%d/" % version) for rel, _, _ in objects):
            wanted = [rel for rel, _, _ in objects if rel.startswith("%d/" % version)]
            strip = len("%d/" % version)
        else:
            wanted, strip = [rel for rel, _, _ in objects], 0
        parent = os.path.dirname(target)
        os.makedirs(parent, exist_ok=True)
        partial = tempfile.mkdtemp(dir=parent, prefix=".download-")
        client = _s3_client()
        try:
            for rel in wanted:
                key = self.prefix if single else self.base + rel
                name = os.path.basename(self.prefix) if single else rel[strip:]
                out = os.path.join(partial, name)
                os.makedirs(os.path.dirname(out), exist_ok=True)
                client.download_file(self.bucket, key, out)
            os.rename(partial, target)
        except Exception as e:
            shutil.rmtree(partial, ignore_errors=True)
            if os.path.isdir(target):  # another process got there first
                return target
            raise ModelError("cannot download %s version %s: %s" % (self.location, version, _s3_error(e))) from None
        return target

    def children(self):
        client = _s3_client()
        names = []
        try:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.base, Delimiter="/")
            for page in pages:
                for common in page.get("CommonPrefixes", []):
                    name = common["Prefix"][len(self.base):].rstrip("/")
                    if name and not name.startswith("."):
                        names.append(name)
        except Exception as e:
            raise ModelError("cannot list %s: %s" % (self.location, _s3_error(e))) from None
        return {n: S3Source("s3://%s/%s%s/" % (self.bucket, self.base, n)) for n in sorted(names)}


def _s3_client():
    """boto3's S3 client with the API's AWS settings; anonymous when it has no credentials (a
    public bucket, such as cortex's examples', can then be read)."""
    try:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config
    except ImportError:
        raise ModelError("boto3 is not installed in the API's virtualenv (cortex adds it for s3:// models)") from None
    session = boto3.session.Session()
    options = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    if endpoint:
        options["s3"] = {"addressing_style": "path"}
    if session.get_credentials() is None:
        options["signature_version"] = UNSIGNED
    region = session.region_name or "us-east-1"
    return session.client("s3", endpoint_url=endpoint, region_name=region, config=Config(**options))


def _head(client, bucket, key):
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except Exception as e:
        code = str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def _s3_error(e):
    """boto's error, said plainly (credentials missing, no such bucket, access denied...)."""
    response = getattr(e, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        err = response["Error"]
        return "%s: %s" % (err.get("Code", "error"), err.get("Message", "") or "")
    name = type(e).__name__
    if name == "NoCredentialsError":
        return "no AWS credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the API's env or .env"
    return "%s: %s" % (name, e)

