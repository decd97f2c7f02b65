"""Log lines and the shim's own output: one lock for stdout and stderr, so that lines
of several threads never interleave."""

import datetime
import os
import sys
import threading

_output_lock = threading.Lock()


def _log(level, msg, extra=""):
    """Writes `<timestamp>:cortex:pid-<pid>:<LEVEL>:<msg>` (plus `extra`, e.g. a
    traceback, verbatim) in one write. INFO and WARNING go to stdout, ERROR to
    stderr."""
    ts = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")
    text = "%s:cortex:pid-%d:%s:%s\n" % (ts, os.getpid(), level, msg)
    if extra:
        text += extra if extra.endswith("\n") else extra + "\n"
    stream = sys.stderr if level == "ERROR" else sys.stdout
    with _output_lock:
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            pass


def _one_line(text, limit=1000):
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _describe(exc):
    """`<ExceptionType>: <message>` on one line (just the type if no message)."""
    msg = _one_line(exc)
    name = type(exc).__name__
    return "%s: %s" % (name, msg) if msg else name


def _write_stderr(text):
    with _output_lock:
        try:
            sys.stderr.write(text if text.endswith("\n") else text + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def _flush_output():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
