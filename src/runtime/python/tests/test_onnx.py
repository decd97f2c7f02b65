"""ONNX predictors: the onnx_client's input shaping (with a small stand-in for numpy, and with
numpy itself when this python has it), and an ONNXPredictor served end to end with stand-ins
for numpy and onnxruntime in its project (the shim's tests need neither installed)."""

import json
import os
import tempfile
import textwrap
import types
import unittest

from cortex_runtime import models
from cortex_runtime.model_sources import HttpSource
from cortex_runtime.model_store import ModelRequestError, ModelStore
from cortex_runtime.onnx_client import ONNXClient, ONNXInputError, onnx_inputs, signatures, target_shape, to_array

from .support import Shim, ShimTestCase

# Just enough of numpy for the client's shaping: nested lists of numbers, dtypes by name,
# reshape with one free dimension, astype, tolist.
FAKE_NUMPY = '''
_NUMERIC = {"float16", "float32", "float64", "int8", "int16", "int32", "int64",
            "uint8", "uint16", "uint32", "uint64"}
number = object()


class dtype:
    def __init__(self, name):
        self.name = str(name)

    def __str__(self):
        return self.name

    def __eq__(self, other):
        return str(self) == str(other)


def issubdtype(d, kind):
    return kind is number and str(d) in _NUMERIC


def _convert(x, name):
    if name.startswith("float"):
        return float(x)
    if name.startswith("int") or name.startswith("uint"):
        return int(x)
    if name == "bool":
        return bool(x)
    return x


def _flatten(value):
    if isinstance(value, (list, tuple)):
        items = [_flatten(v) for v in value]
        shapes = set(s for s, _ in items)
        if len(shapes) > 1:
            raise ValueError("setting an array element with a sequence (inhomogeneous shape)")
        inner = shapes.pop() if shapes else ()
        return (len(value),) + inner, [x for _, flat in items for x in flat]
    return (), [value]


class ndarray:
    def __init__(self, shape, data, dt):
        self.shape, self.data, self.dtype = tuple(shape), list(data), dtype(dt)

    def reshape(self, shape):
        shape = list(shape)
        known = 1
        for d in shape:
            if d != -1:
                known *= d
        if -1 in shape:
            if known == 0 or len(self.data) % known:
                raise ValueError("cannot reshape array of size %d into shape %s" % (len(self.data), tuple(shape)))
            shape[shape.index(-1)] = len(self.data) // known
        elif known != len(self.data):
            raise ValueError("cannot reshape array of size %d into shape %s" % (len(self.data), tuple(shape)))
        return ndarray(shape, self.data, self.dtype)

    def astype(self, dt):
        return ndarray(self.shape, [_convert(x, str(dt)) for x in self.data], dt)

    def tolist(self):
        def build(shape, data):
            if not shape:
                return data[0]
            step = len(data) // shape[0] if shape[0] else 0
            return [build(shape[1:], data[i * step:(i + 1) * step]) for i in range(shape[0])]
        return build(self.shape, self.data)


def array(value, dtype=None):
    shape, flat = _flatten(value)
    name = str(dtype) if dtype is not None else "float64"
    return ndarray(shape, [_convert(x, name) for x in flat], name)
'''

# An "onnxruntime" whose model file is JSON naming its inputs; running it gives x * 2 + 1 of
# each input, in the inputs' order.
FAKE_ONNXRUNTIME = '''
import json


class _Input:
    def __init__(self, d):
        self.name, self.type, self.shape = d["name"], d["type"], list(d["shape"])


def get_available_providers():
    return ["CPUExecutionProvider"]


class InferenceSession:
    def __init__(self, path, providers=None):
        with open(path) as f:
            self._inputs = json.load(f)["inputs"]

    def get_inputs(self):
        return [_Input(d) for d in self._inputs]

    def run(self, output_names, feed):
        import numpy
        return [numpy.ndarray(feed[d["name"]].shape, [x * 2 + 1 for x in feed[d["name"]].data],
                              feed[d["name"]].dtype) for d in self._inputs]
'''


def fake_numpy():
    module = types.ModuleType("fake_numpy")
    exec(FAKE_NUMPY, module.__dict__)
    return module


try:
    import numpy as real_numpy
except ImportError:
    real_numpy = None


class Meta:
    def __init__(self, name, type_, shape):
        self.name, self.type, self.shape = name, type_, shape


class FakeSession:
    def __init__(self, metas):
        self.metas = metas
        self.fed = None

    def get_inputs(self):
        return list(self.metas)

    def run(self, names, feed):
        self.fed = feed
        return [feed[m.name] for m in self.metas]


class TestShapes(unittest.TestCase):
    def test_free_unknown_and_fixed_dimensions(self):
        self.assertEqual(target_shape([None, 4]), [1, 4])
        self.assertEqual(target_shape(["batch", 4]), [-1, 4])
        self.assertEqual(target_shape(["N", "M", 3]), [-1, -1, 3])
        self.assertEqual(target_shape([]), [])
        # the metadata's own list is not changed
        shape = ["N", None]
        target_shape(shape)
        self.assertEqual(shape, ["N", None])


class ShapingCases:
    """Run with `self.np`: the stand-in, or numpy itself."""

    def test_a_flat_list_fits_a_batch_of_one(self):
        x = Meta("input", "tensor(float)", [None, 4])
        arr = to_array(self.np, [5.1, 3.5, 1.4, 0.2], x)
        self.assertEqual(tuple(arr.shape), (1, 4))
        self.assertEqual(str(arr.dtype), "float32")
        self.assertEqual(arr.tolist(), [[5.099999904632568, 3.5, 1.399999976158142, 0.20000000298023224]]
                         if self.np is real_numpy else [[5.1, 3.5, 1.4, 0.2]])

    def test_a_named_dimension_takes_a_batch(self):
        x = Meta("x", "tensor(int64)", ["batch", 2])
        arr = to_array(self.np, [[1, 2], [3, 4], [5, 6]], x)
        self.assertEqual(tuple(arr.shape), (3, 2))
        self.assertEqual(str(arr.dtype), "int64")
        self.assertEqual(to_array(self.np, [1, 2, 3, 4], x).tolist(), [[1, 2], [3, 4]])

    def test_two_free_dimensions_are_left_as_given(self):
        x = Meta("x", "tensor(double)", ["n", "m"])
        arr = to_array(self.np, [[1, 2, 3]], x)
        self.assertEqual(tuple(arr.shape), (1, 3))
        self.assertEqual(str(arr.dtype), "float64")

    def test_an_array_is_cast_to_the_declared_type(self):
        x = Meta("x", "tensor(float)", [None, 2])
        given = self.np.array([[1, 2]], dtype="int64")
        arr = to_array(self.np, given, x)
        self.assertEqual(str(arr.dtype), "float32")
        self.assertEqual(arr.tolist(), [[1.0, 2.0]])

    def test_a_non_numeric_array_for_a_numeric_input_is_refused(self):
        x = Meta("x", "tensor(float)", [None, 1])
        given = self.np.array([["a"]], dtype="object")
        with self.assertRaises(ONNXInputError) as e:
            to_array(self.np, given, x)
        self.assertIn("expected dtype 'float32'", str(e.exception))

    def test_a_shape_that_does_not_fit_is_an_input_error(self):
        x = Meta("x", "tensor(float)", [None, 4])
        with self.assertRaises(ONNXInputError) as e:
            to_array(self.np, [1, 2, 3], x)
        self.assertIn("failed to convert input 'x'", str(e.exception))

    def test_a_dict_names_the_inputs(self):
        metas = [Meta("a", "tensor(float)", [None, 2]), Meta("b", "tensor(int32)", [None, 1])]
        fed = onnx_inputs(self.np, {"a": [1, 2], "b": [7], "extra": 1}, metas)
        self.assertEqual(sorted(fed), ["a", "b"])
        self.assertEqual(fed["a"].tolist(), [[1.0, 2.0]])
        self.assertEqual(str(fed["b"].dtype), "int32")
        with self.assertRaises(ONNXInputError) as e:
            onnx_inputs(self.np, {"a": [1, 2]}, metas)
        self.assertEqual(str(e.exception), "missing key 'b' for model '_cortex_default'")
        with self.assertRaises(ONNXInputError) as e:
            onnx_inputs(self.np, [1, 2], metas)
        self.assertIn('with keys "a", "b"', str(e.exception))

    def test_a_single_input_takes_its_value_or_a_dict(self):
        metas = [Meta("x", "tensor(float)", [None, 2])]
        self.assertEqual(onnx_inputs(self.np, [1, 2], metas)["x"].tolist(), [[1.0, 2.0]])
        self.assertEqual(onnx_inputs(self.np, {"x": [3, 4]}, metas)["x"].tolist(), [[3.0, 4.0]])
        with self.assertRaises(ONNXInputError):
            onnx_inputs(self.np, {"y": [3, 4]}, metas)

    def test_the_client_runs_the_session_and_returns_its_outputs(self):
        session = FakeSession([Meta("x", "tensor(float)", [None, 2])])
        project = tempfile.mkdtemp(prefix="cortex-onnx-client-")
        with open(os.path.join(project, "model.onnx"), "w") as f:
            f.write("x")
        store = ModelStore({"model_path": "model.onnx"}, project, "api")
        inputs = list(session.get_inputs())
        store.start(lambda path, location: {"session": session, "signatures": inputs, "input_signatures": signatures(inputs)})
        client = ONNXClient(store, self.np)
        out = client.predict([1, 2])
        self.assertEqual(out[0].tolist(), [[1.0, 2.0]])
        self.assertEqual(client.predict([1, 2], "any-name", "1")[0].tolist(), [[1.0, 2.0]])
        with self.assertRaises(ModelRequestError):
            client.predict([1, 2], model_version="newest")
        self.assertEqual(
            client.input_signatures,
            {"_cortex_default": {"x": {"shape": [None, 2], "type": "float32"}}},
        )
        self.assertIs(client.get_model()["session"], session)
        self.assertEqual(client.get_model()["input_signatures"], {"x": {"shape": [None, 2], "type": "float32"}})


class TestShapingWithAStandIn(ShapingCases, unittest.TestCase):
    np = fake_numpy()


@unittest.skipIf(real_numpy is None, "numpy is not installed for this python")
class TestShapingWithNumpy(ShapingCases, unittest.TestCase):
    np = real_numpy


class TestModelFiles(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="cortex-onnx-test-")

    def test_a_file_or_the_one_onnx_file_of_a_directory(self):
        os.makedirs(os.path.join(self.dir, "m"))
        for name in ("model.onnx", "m/iris.onnx", "m/notes.txt"):
            with open(os.path.join(self.dir, name), "w") as f:
                f.write("x")
        at = lambda rel: os.path.join(self.dir, rel)
        self.assertEqual(models.onnx_file(at("model.onnx"), "model.onnx"), at("model.onnx"))
        self.assertEqual(models.onnx_file(at("m"), "m"), at("m/iris.onnx"))
        with self.assertRaises(models.ModelError) as e:
            models.onnx_file(at("missing.onnx"), "missing.onnx")
        self.assertIn("there is no file", str(e.exception))
        os.makedirs(at("empty"))
        with self.assertRaises(models.ModelError) as e:
            models.onnx_file(at("empty"), "empty")
        self.assertIn("no .onnx files", str(e.exception))


class TestDownloads(unittest.TestCase):
    """An http(s) model_path: fetched once per version into CORTEX_VENVS_DIR/models/."""

    def setUp(self):
        import http.server
        import threading

        self.requests = []
        requests = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                requests.append(self.path)
                if self.path.endswith("/missing.onnx"):
                    self.send_error(404)
                    return
                body = b"model bytes"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.http = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.base = "http://127.0.0.1:%d" % self.http.server_address[1]
        self.venvs = tempfile.mkdtemp(prefix="cortex-onnx-venvs-")
        self.saved = {k: os.environ.get(k) for k in ("CORTEX_VENVS_DIR", "CORTEX_API_VERSION")}
        os.environ["CORTEX_VENVS_DIR"] = self.venvs
        os.environ["CORTEX_API_VERSION"] = "v1"

    def tearDown(self):
        self.http.shutdown()
        self.http.server_close()
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def fetch(self, url):
        return HttpSource(url).local_path(1, None)

    def test_fetched_once_per_version(self):
        url = self.base + "/exported/iris.onnx"
        path = self.fetch(url)
        self.assertTrue(path.startswith(os.path.join(self.venvs, "models") + os.sep), path)
        with open(os.path.join(path, "iris.onnx"), "rb") as f:
            self.assertEqual(f.read(), b"model bytes")
        self.assertEqual(self.fetch(url), path)
        self.assertEqual(self.requests, ["/exported/iris.onnx"])
        os.environ["CORTEX_API_VERSION"] = "v2"
        self.assertNotEqual(self.fetch(url), path)
        self.assertEqual(len(self.requests), 2)

    def test_a_failed_download_says_why_and_leaves_nothing(self):
        with self.assertRaises(models.ModelError) as e:
            self.fetch(self.base + "/missing.onnx")
        self.assertIn("cannot download the model from %s/missing.onnx" % self.base, str(e.exception))
        self.assertIn("404", str(e.exception))
        left = [f for _, _, files in os.walk(os.path.join(self.venvs, "models")) for f in files if not f.endswith(".lock")]
        self.assertEqual(left, [])


ONNX_PREDICTOR = """
class ONNXPredictor:
    def __init__(self, onnx_client, config):
        self.client = onnx_client
        self.scale = config.get("scale", 1)

    def predict(self, payload, query_params):
        out = self.client.predict(payload["x"] if "x" in payload else payload)
        return {"y": out[0].tolist(), "scale": self.scale, "q": dict(query_params)}
"""

MODEL = json.dumps({"inputs": [{"name": "x", "type": "tensor(float)", "shape": [None, 4]}]})


class TestONNXPredictor(ShimTestCase):
    """Served end to end, numpy and onnxruntime being the stand-ins in the project."""

    @classmethod
    def setUpClass(cls):
        cls.shim = Shim(
            ONNX_PREDICTOR,
            config={"scale": 3},
            files={"numpy.py": FAKE_NUMPY, "onnxruntime.py": FAKE_ONNXRUNTIME, "model.onnx": MODEL},
            env={"CORTEX_PREDICTOR_TYPE": "onnx", "CORTEX_MODELS": json.dumps({"model_path": "model.onnx"})},
            api_name="onnx-api",
        )
        cls.shim.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.shim.close()

    def test_predict_runs_the_model(self):
        status, _, body = self.shim.post_json("/?k=v", {"x": [1, 2, 3, 4]})
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {"y": [[3.0, 5.0, 7.0, 9.0]], "scale": 3, "q": {"k": "v"}})

    def test_get_shows_the_input_signature(self):
        status, _, body = self.shim.request("GET", "/")
        self.assertEqual(status, 200)
        self.assertEqual(
            json.loads(body),
            {
                "message": "make a prediction by sending a post request to this endpoint with a json payload",
                "model_signatures": {"_cortex_default": {"x": {"shape": [None, 4], "type": "float32"}}},
            },
        )

    def test_a_bad_input_is_a_500_with_the_reason_logged(self):
        status, _, body = self.shim.post_json("/", {"x": [1, 2, 3]})
        self.assertEqual(status, 500, body)
        self.assertIn("failed to convert input 'x'", self.shim.stderr())


class TestONNXPredictorProblems(ShimTestCase):
    def exits_with(self, predictor, model_path, files=None):
        shim = Shim(
            predictor,
            files=dict({"numpy.py": FAKE_NUMPY, "onnxruntime.py": FAKE_ONNXRUNTIME, "model.onnx": MODEL}, **(files or {})),
            env={"CORTEX_PREDICTOR_TYPE": "onnx", "CORTEX_MODELS": json.dumps({"model_path": model_path})},
        )
        try:
            self.assertEqual(shim.wait_exit(), 3, shim.stderr())
            return shim.stderr()
        finally:
            shim.close()

    def test_the_class_must_be_onnx_predictor(self):
        err = self.exits_with(textwrap.dedent("""
            class PythonPredictor:
                def __init__(self, config):
                    pass
                def predict(self, payload):
                    return 1
        """), "model.onnx")
        self.assertIn("predictor.py does not define a class named ONNXPredictor", err)

    def test_a_missing_model_says_so(self):
        err = self.exits_with(ONNX_PREDICTOR, "nope.onnx")
        self.assertIn("cortex: error: failed to initialise the predictor: ModelError: model (model_path): there is no model at nope.onnx", err)
