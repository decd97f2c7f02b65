"""Reporting to the cortex server (its Model Bazaar job routes) with the replica's job
token: deployment logs and statuses, and saving a model."""

import io
import json
import os

from .log import _log, _one_line

# urllib.request (with http.client, email and ssl) and tarfile are imported when first used:
# most replicas never report, and importing them is a fifth of a replica's start.

REPORT_TIMEOUT = 10.0
# saving waits for the server's deploy lock, which an API being stopped holds for seconds
SAVE_TIMEOUT = 120.0


class ServerError(Exception):
    """The cortex server refused a request, or could not be reached."""


def _call_server(method, path, data=None, token=None, content_type="application/json", timeout=REPORT_TIMEOUT):
    """Sends `data` (bytes) to the cortex server's `path` with `token` (default:
    the replica's job token); the parsed JSON answer. Raises ServerError."""
    import urllib.error
    import urllib.request

    url = os.environ.get("CORTEX_SERVER_URL", "")
    token = token or os.environ.get("CORTEX_JOB_TOKEN", "")
    if not url or not token:
        raise ServerError("CORTEX_SERVER_URL and CORTEX_JOB_TOKEN are not set (is this replica run by cortex?)")
    headers = {"Authorization": "Bearer " + token}
    if data is not None:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(url.rstrip("/") + path, data=data, headers=headers, method=method)
    # loopback or not, a proxy meant for the outside world must not see this
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("message", detail)
        except (ValueError, AttributeError):
            pass
        raise ServerError("%s %s: %d %s" % (method, path, e.code, _one_line(detail)))
    except (OSError, ValueError) as e:
        raise ServerError("%s %s: %s" % (method, path, e))
    try:
        return json.loads(body or b"null")
    except ValueError:
        return None


def _report(path, body):
    """POSTs `body` (JSON) to the cortex server's `path` with the replica's job
    token; True when it was accepted. Best effort: without CORTEX_SERVER_URL and
    CORTEX_JOB_TOKEN (a shim run by hand) nothing is sent, and a refusal is only
    logged (the engine tells the server what the replica does anyway)."""
    if not os.environ.get("CORTEX_SERVER_URL") or not os.environ.get("CORTEX_JOB_TOKEN"):
        return False
    try:
        _call_server("POST", path, json.dumps(body).encode("utf-8"))
        return True
    except ServerError as e:
        _log("WARNING", "the cortex server did not take a report: %s" % e)
        return False


def save_model(name, directory):
    """Saves `directory` as a new model named `name`: this model's spec and files,
    with the directory's files over them. Returns the new model's id; it is
    private to this model's owner and can be deployed once this returns."""
    model = os.environ.get("CORTEX_MODEL_ID", "")
    if not model:
        raise ServerError("CORTEX_MODEL_ID is not set (is this replica run by cortex?)")
    if not os.path.isdir(directory):
        raise ValueError("%r is not a directory" % (directory,))
    answer = _call_server(
        "POST",
        "/api/v2/deploy/%s/save" % model,
        json.dumps({"model_name": name}).encode("utf-8"),
        timeout=SAVE_TIMEOUT,
    )
    new_id, update_token = answer["model_id"], answer["update_token"]
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for entry in sorted(os.listdir(directory)):
            tar.add(os.path.join(directory, entry), arcname=entry)
    _call_server(
        "PUT",
        "/api/v2/deploy/%s/files" % new_id,
        buf.getvalue(),
        update_token,
        "application/gzip",
        timeout=SAVE_TIMEOUT,
    )
    _call_server(
        "POST",
        "/api/v2/deploy/update-status",
        json.dumps({"status": "complete"}).encode("utf-8"),
        update_token,
    )
    return new_id


def report_log(level, message):
    """Records a warning or an error of this deployment (`cortex get`, and the
    Model Bazaar status route, show it)."""
    return _report("/api/v2/deploy/log", {"level": level, "message": str(message)})


def report_status(status):
    return _report("/api/v2/deploy/update-status", {"status": status})


def report_init_failure(text):
    """Tells the server why the replica could not start: the `cortex: error:`
    line as an error of the deployment, and the status `failed`."""
    first = text.splitlines()[0] if text else "the predictor could not be initialised"
    if first.startswith("cortex: error: "):
        first = first[len("cortex: error: "):]
    report_log("error", first)
    report_status("failed")
