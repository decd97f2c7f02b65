"""Tracebacks of user code as its author knows it: without the shim's own frames (nor
importlib's), and with the project's files named relative to the project."""

import os
import traceback

from .settings import ENTRY_FILE, PACKAGE_DIR


def _keep_frame(frame):
    filename = frame.filename or ""
    if filename.startswith("<"):
        return not filename.startswith("<frozen importlib")
    path = os.path.abspath(filename)
    return os.path.dirname(path) != PACKAGE_DIR and path != ENTRY_FILE


def _project_roots():
    """The project directory as this replica runs it (the server's unpacked copy), both as
    written and with links resolved."""
    root = os.environ.get("CORTEX_PROJECT_DIR") or os.getcwd()
    return {os.path.abspath(root), os.path.realpath(root)}


def _as_in_project(filename):
    """`filename` relative to the project when it lies in it, as its author knows it
    (`predictor.py`), not as the server's copy's path; other paths as they are."""
    if not filename or filename.startswith("<"):
        return filename
    path = os.path.abspath(filename)
    for root in _project_roots():
        if path.startswith(root.rstrip(os.sep) + os.sep):
            return os.path.relpath(path, root)
    return filename


def _relative_frame(frame):
    frame.line  # read the source line while the real path still names the file
    frame.filename = _as_in_project(frame.filename)
    return frame


def _trim(te, seen):
    if te is None or id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list(
        [_relative_frame(f) for f in te.stack if _keep_frame(f)]
    )
    if getattr(te, "filename", None):  # a SyntaxError names its file itself
        te.filename = _as_in_project(te.filename)
    _trim(te.__cause__, seen)
    _trim(te.__context__, seen)


def _format_traceback(exc):
    """The traceback of `exc` without the shim's own frames and importlib's."""
    try:
        te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
        _trim(te, set())
        return "".join(te.format())
    except Exception:  # never fail while reporting a failure
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
