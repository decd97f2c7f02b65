"""The user's `PythonPredictor` (or `ONNXPredictor`): importing the predictor file, checking
the arguments its methods declare, constructing it, and the one thread pool per process that
runs every call of user code."""

import concurrent.futures
import importlib.util
import inspect
import os
import queue
import sys
from concurrent.futures import ThreadPoolExecutor

from .log import _describe, _log
from .model_store import store_for
from .python_client import PythonClient
from .tracebacks import _format_traceback

INIT_ARGS = ("config", "job_spec", "python_client")
ONNX_INIT_ARGS = ("onnx_client", "config", "job_spec")
PREDICT_ARGS = ("payload", "query_params", "headers")
BATCH_PREDICT_ARGS = ("payload", "batch_id")
POST_PREDICT_ARGS = ("response", "payload", "query_params", "headers")


class PredictorError(Exception):
    """A problem with the user's predictor detected by the shim itself."""


def _parameters(fn):
    """(names, required names, accepts **kwargs) of a callable's parameters."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return [], [], False
    names, required, var_kw = [], [], False
    for p in sig.parameters.values():
        if p.kind == p.VAR_KEYWORD:
            var_kw = True
        elif p.kind == p.VAR_POSITIONAL:
            continue
        else:
            names.append(p.name)
            if p.default is p.empty:
                required.append(p.name)
    return names, required, var_kw


def _select_args(fn, allowed, what):
    """Returns the argument names among `allowed` that `fn` declares; raises
    PredictorError if `fn` requires an argument that cortex does not provide."""
    names, required, var_kw = _parameters(fn)
    unknown = [n for n in required if n not in allowed]
    if unknown:
        raise PredictorError(
            "%s has unexpected required argument%s %s (allowed: %s)"
            % (
                what,
                "s" if len(unknown) > 1 else "",
                ", ".join(repr(n) for n in unknown),
                ", ".join(allowed),
            )
        )
    if var_kw:
        return list(allowed)
    return [n for n in allowed if n in names]


class Predictor:
    def __init__(self, instance, predict_args, post_predict, post_predict_args, summary=None):
        self.instance = instance
        self.predict_args = predict_args
        self.post_predict = post_predict
        self.post_predict_args = post_predict_args
        # what `GET` on the API adds to its message (onnx models' input signatures), when asked
        self._summary = summary

    @property
    def summary(self):
        return self._summary() if self._summary is not None else {}


def class_name(settings):
    """The class the predictor file must define."""
    return "ONNXPredictor" if settings.get("predictor_type") == "onnx" else "PythonPredictor"


def load_predictor(settings):
    path = os.path.join(settings["project_dir"], settings["predictor_path"])
    rel = settings["predictor_path"]
    if not os.path.isfile(path):
        raise PredictorError("predictor file %s does not exist" % rel)

    spec = importlib.util.spec_from_file_location("cortex_predictor", path)
    if spec is None or spec.loader is None:
        raise PredictorError("cannot import %s as a python module" % rel)
    module = importlib.util.module_from_spec(spec)
    sys.modules["cortex_predictor"] = module
    spec.loader.exec_module(module)

    name = class_name(settings)
    cls = getattr(module, name, None)
    if cls is None:
        raise PredictorError("%s does not define a class named %s" % (rel, name))
    if not inspect.isclass(cls):
        raise PredictorError("%s in %s is not a class" % (name, rel))
    if not callable(getattr(cls, "predict", None)):
        raise PredictorError("class %s in %s has no predict method" % (name, rel))

    onnx = settings.get("predictor_type") == "onnx"
    init_args = _select_args(cls, ONNX_INIT_ARGS if onnx else INIT_ARGS, "%s.__init__" % name)
    values = {"config": settings["config"], "job_spec": settings.get("job_spec"), "python_client": None}
    summary = None
    store = store_for(settings)
    if onnx:
        # imported here: onnxruntime and numpy are in the API's virtualenv only
        import numpy

        from .onnx_client import ONNXClient, session_loader

        store.start(session_loader(numpy))
        client = ONNXClient(store, numpy)
        values["onnx_client"] = client

        def summary():
            return {"model_signatures": client.input_signatures}

    elif store is not None:
        _check_model_methods(cls, init_args, rel)
        values["python_client"] = PythonClient(store)
    instance = cls(**{n: values[n] for n in init_args})
    if store is not None and not onnx:
        store.start(lambda path, location: instance.load_model(path))

    allowed = BATCH_PREDICT_ARGS if settings.get("batch") else PREDICT_ARGS
    predict_args = _select_args(instance.predict, allowed, "%s.predict" % name)
    post_predict = getattr(instance, "post_predict", None)
    post_predict_args = []
    if post_predict is not None:
        if not callable(post_predict):
            post_predict = None
        else:
            post_predict_args = _select_args(
                post_predict, POST_PREDICT_ARGS, "%s.post_predict" % name
            )
    return Predictor(instance, predict_args, post_predict, post_predict_args, summary)


def _check_model_methods(cls, init_args, rel):
    """A python predictor whose API names models takes `python_client` and loads with
    `load_model(self, model_path)`."""
    if "python_client" not in init_args:
        raise PredictorError(
            "PythonPredictor.__init__ in %s must take python_client when predictor.model_path or "
            "predictor.models is set (def __init__(self, config, python_client)); keep it and call "
            "python_client.get_model() in predict" % rel
        )
    if not callable(getattr(cls, "load_model", None)):
        raise PredictorError(
            "PythonPredictor in %s must define load_model(self, model_path) when predictor.model_path "
            "or predictor.models is set: it loads one version of a model from the directory "
            "model_path and returns it (python_client.get_model() hands it to predict)" % rel
        )
    _select_args(cls.load_model, ("self", "model_path"), "PythonPredictor.load_model")


def _init_failure_text(exc):
    """The text reported when the predictor cannot be loaded: the
    `cortex: error: ...` line, then the traceback (unless the shim found the
    problem itself)."""
    text = "cortex: error: failed to initialise the predictor: %s\n" % _describe(exc)
    if not isinstance(exc, PredictorError):
        text += _format_traceback(exc)
    return text


class _ShutDown(Exception):
    """The pool was shut down before the call ran."""


def _make_pool(settings):
    return ThreadPoolExecutor(max_workers=settings["threads"], thread_name_prefix="cortex-predictor")


def shutdown_pool(pool):
    """Shuts the pool down without waiting: calls not started yet are cancelled, running ones
    go on (the process is about to exit anyway)."""
    if sys.version_info >= (3, 9):
        pool.shutdown(wait=False, cancel_futures=True)
        return
    # before 3.9 `shutdown` cannot cancel: drain the queue as 3.9 does
    pool.shutdown(wait=False)
    while True:
        try:
            item = pool._work_queue.get_nowait()
        except queue.Empty:
            break
        if item is not None:
            item.future.cancel()
    pool._work_queue.put(None)  # wakes an idle thread, which then exits


def _call_guarded(fn, *args, **kwargs):
    """Runs in the pool: (result, None), or (None, exception) so that the
    exception's traceback holds the user's frames only, not the pool's."""
    try:
        return fn(*args, **kwargs), None
    except BaseException as e:  # SystemExit in user code too: reported, not fatal
        return None, e


def _load_in_pool(pool, settings):
    """Imports and constructs the predictor on the pool (its first task), and
    waits for it here: in short waits, so that this (main) thread runs signal
    handlers promptly whichever thread the kernel delivered the signal to."""
    future = pool.submit(_call_guarded, load_predictor, settings)
    while True:
        try:
            predictor, exc = future.result(timeout=0.1)
            break
        except concurrent.futures.TimeoutError:
            continue
    if exc is not None:
        raise exc
    return predictor


def _run_post_predict(fn, args, api_name):
    try:
        fn(**args)
    except BaseException as e:
        _log("ERROR", "%s: exception in post_predict: %s" % (api_name, _describe(e)), _format_traceback(e))
