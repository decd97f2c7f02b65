"""The driver's one request per interval to the cortex server:
`POST {server}/api/v2/engine/ray/groups/{group}/sync` with the replicas' state; the answer is
the desired set (see `cortex_ray.driver` for both bodies)."""

import json
import urllib.error
import urllib.request


class GroupGone(Exception):
    """The server answered 404 or 410: the group no longer exists."""


class SyncFailed(Exception):
    """The request failed (network error, timeout, another status, a body that is not the
    expected JSON): retry at the next interval."""


def sync_url(server, group):
    return "%s/api/v2/engine/ray/groups/%s/sync" % (server.rstrip("/"), group)


def sync(server, group, token, body, timeout):
    """Sends `body` (a dict) and returns the answer's list of desired replicas. Raises
    GroupGone or SyncFailed."""
    data = json.dumps(body).encode("utf-8")
    request = urllib.request.Request(
        sync_url(server, group),
        data=data,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": "Bearer " + token,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as e:
        if e.code in (404, 410):
            raise GroupGone("the server answered %d" % e.code) from None
        detail = ""
        try:
            detail = e.read(300).decode("utf-8", "replace")
        except Exception:
            pass
        raise SyncFailed("the server answered %d %s" % (e.code, detail.strip())) from None
    except (OSError, ValueError) as e:  # URLError, timeouts, connection resets
        raise SyncFailed("%s: %s" % (type(e).__name__, e)) from None
    try:
        answer = json.loads(raw.decode("utf-8"))
        replicas = answer["replicas"]
        if not isinstance(replicas, list):
            raise ValueError("replicas is not a list")
        return [_desired(r) for r in replicas]
    except (ValueError, KeyError, TypeError) as e:
        raise SyncFailed("bad answer (%s): %.200r" % (e, raw)) from None


def _desired(r):
    """One desired replica of the answer, checked and with its defaults."""
    if not isinstance(r, dict):
        raise ValueError("a replica is not an object")
    rid = r["id"]
    if not isinstance(rid, str) or not rid:
        raise ValueError("bad replica id %r" % (rid,))
    argv = r["argv"]
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError("bad argv for %s" % rid)
    env = r.get("env") or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ValueError("bad env for %s" % rid)
    memory = r.get("memory")
    return {
        "id": rid,
        "generation": int(r["generation"]),
        "argv": argv,
        "env": env,
        "cwd": r.get("cwd"),
        "working_dir": r.get("working_dir"),
        "num_cpus": float(r.get("num_cpus") or 0),
        "memory": int(memory) if memory else None,
        "num_gpus": int(r.get("num_gpus") or 0),
        "resources": {str(k): float(v) for k, v in (r.get("resources") or {}).items()},
        "takes_socket": bool(r.get("takes_socket", False)),
        "grace_seconds": float(r.get("grace_seconds", 10.0)),
        "memory_limit": int(r["memory_limit"]) if r.get("memory_limit") else None,
    }
