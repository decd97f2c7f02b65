"""Helpers the cortex shim gives predictor code (`import cortex_runtime`): warn(message)
and error(message) record messages of the deployment; save_model(name, directory) saves a
new model.

This package is also the shim itself, which the cortex server runs through `cortex_shim.py`
beside it: `main` (start there: its doc is the shim's protocol), `settings`, `predictor`,
`server`, `connection`, `http_wire`, `payload`, `responses`, `batch`, `lifecycle`,
`supervisor`, `venv`, `reporting`, `log` and `tracebacks`."""

from . import reporting as _reporting
from .reporting import ServerError, save_model

__all__ = ["warn", "error", "save_model", "ServerError"]


def warn(message):
    """Records a warning of this deployment; shown by `cortex get <api>`."""
    return _reporting.report_log("warning", message)


def error(message):
    """Records an error of this deployment (it does not stop the replica)."""
    return _reporting.report_log("error", message)
