"""ONNX predictors (`type: onnx`): the `onnx_client` handed to `ONNXPredictor.__init__`, as
cortex 0.2x had it. `onnx_client.predict(model_input)` converts the input to numpy arrays of
the model's declared element types and shapes and runs the model with onnxruntime; it returns
the list of the model's outputs (what `InferenceSession.run` returns).

What `predict` accepts:
    - a dict of input name -> value (every input of the model must be there; extra keys are
      ignored); a model with one input also takes the value alone;
    - each value is a numpy array (cast to the input's element type when both are numeric,
      refused when only one is) or anything `numpy.array` takes (nested lists, scalars);
    - each array is then reshaped to the input's shape, where a named (symbolic) dimension is
      free (-1) and an unknown one counts as 1, when at most one dimension is free: a list of
      four numbers fits a [None, 4] input as [[a, b, c, d]].

numpy and onnxruntime are imported only when a client is made (they are in the API's
virtualenv, not the shim's standard library); the shaping takes the numpy module as an
argument, so it can be tested without them."""

import os

from .model_store import SINGLE_MODEL_NAME

# onnxruntime's type names -> numpy's.
ONNX_TO_NP_TYPE = {
    "tensor(float16)": "float16",
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int32)": "int32",
    "tensor(uint32)": "uint32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(uint16)": "uint16",
    "tensor(int64)": "int64",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": "object",
}


class ONNXInputError(ValueError):
    """The input given to `onnx_client.predict` does not fit the model."""


def numpy_type(onnx_type):
    """The numpy element type of an onnxruntime input type (the type itself if unknown)."""
    return ONNX_TO_NP_TYPE.get(onnx_type, onnx_type)


def target_shape(shape):
    """The shape an input is reshaped to: a named dimension (a str) is free (-1), an unknown
    one (None) is 1, a number stays."""
    out = []
    for dim in shape or []:
        if isinstance(dim, str):
            out.append(-1)
        elif isinstance(dim, int) and not isinstance(dim, bool):
            out.append(dim)
        else:
            out.append(1)
    return out


def to_array(np, value, meta, model_name=SINGLE_MODEL_NAME):
    """`value` as a numpy array for the input `meta` (with `.name`, `.type`, `.shape`)."""
    dtype = ONNX_TO_NP_TYPE.get(meta.type)
    if dtype is None:
        raise ONNXInputError(
            "input '%s' of model '%s' has the type %s, which cannot be converted to"
            % (meta.name, model_name, meta.type)
        )
    shape = target_shape(meta.shape)
    try:
        if isinstance(value, np.ndarray):
            array = value
            if np.issubdtype(array.dtype, np.number) == np.issubdtype(np.dtype(dtype), np.number):
                if str(array.dtype) != dtype:
                    array = array.astype(dtype)
            else:
                raise ValueError("expected dtype '%s' but found '%s'" % (dtype, array.dtype))
        else:
            array = np.array(value, dtype=dtype)
        # a shape with more than one free dimension cannot be inferred: left as it is
        if shape.count(-1) <= 1:
            array = array.reshape(shape)
        return array
    except ONNXInputError:
        raise
    except Exception as e:
        raise ONNXInputError(
            "failed to convert input '%s' to a numpy array for model '%s': %s"
            % (meta.name, model_name, e)
        ) from e


def onnx_inputs(np, model_input, metas, model_name=SINGLE_MODEL_NAME):
    """`model_input` as the dict of input name -> numpy array that `InferenceSession.run`
    takes, for a model whose inputs are `metas`."""
    metas = list(metas)
    if len(metas) == 1 and not isinstance(model_input, dict):
        return {metas[0].name: to_array(np, model_input, metas[0], model_name)}
    if not isinstance(model_input, dict):
        raise ONNXInputError(
            "expected model_input to be a dictionary with keys %s for model '%s'"
            % (", ".join('"%s"' % m.name for m in metas), model_name)
        )
    inputs = {}
    for meta in metas:
        if model_input.get(meta.name) is None:
            raise ONNXInputError("missing key '%s' for model '%s'" % (meta.name, model_name))
        inputs[meta.name] = to_array(np, model_input[meta.name], meta, model_name)
    return inputs


def signatures(metas):
    """The inputs' names, numpy types and shapes, as `GET` on the API shows them."""
    return {m.name: {"shape": list(m.shape or []), "type": numpy_type(m.type)} for m in metas}


class ONNXClient:
    """The API's onnx models (one for `predictor.model_path`, or `predictor.models`), each
    version an onnxruntime session made when the store loads it."""

    def __init__(self, store, np):
        self._store = store
        self._np = np

    def predict(self, model_input, model_name=None, model_version="latest"):
        """Converts `model_input` to the model's inputs and runs it: the list of its outputs."""
        model = self._store.get(model_name, model_version)
        inputs = onnx_inputs(self._np, model_input, model["signatures"], model_name or SINGLE_MODEL_NAME)
        return model["session"].run([], inputs)

    def get_model(self, model_name=None, model_version="latest"):
        """The model as cortex 0.22 returned it: its session and input signatures."""
        model = self._store.get(model_name, model_version)
        return {k: model[k] for k in ("session", "signatures", "input_signatures")}

    @property
    def input_signatures(self):
        """model name -> input signatures, of the models loaded now (`GET` on the API)."""
        return {name: model["input_signatures"] for name, model in self._store.loaded().items()}


def session_loader(np):
    """The store's loader for onnx models: a session of the version's .onnx file (onnxruntime's
    CPU session unless the replica was given a GPU)."""
    import onnxruntime

    from .models import onnx_file

    available = list(onnxruntime.get_available_providers())
    providers = [p for p in available if p == "CUDAExecutionProvider" and os.environ.get("CUDA_VISIBLE_DEVICES")]
    providers.append("CPUExecutionProvider")
    providers = [p for p in providers if p in available] or None

    def load(path, location):
        model_file = onnx_file(path, location)
        try:
            session = onnxruntime.InferenceSession(model_file, providers=providers)
        except TypeError:  # onnxruntime before 1.3 takes no providers
            session = onnxruntime.InferenceSession(model_file)
        inputs = list(session.get_inputs())
        return {
            "session": session,
            "signatures": inputs,
            "input_signatures": signatures(inputs),
        }

    return load
