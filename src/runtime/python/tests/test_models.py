"""An API's models (`model_path`, `models.paths`, `models.dir`): versions, "latest", live
reloading, the memory cache, and a python predictor's `python_client` served end to end."""

import json
import os
import shutil
import tempfile
import textwrap
import unittest

from cortex_runtime.model_store import ModelNotFound, ModelRequestError, ModelStore

from .support import Shim, ShimTestCase, wait_until


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def read_model(path, location):
    """A loader: the model is the text of its model.txt."""
    with open(os.path.join(path, "model.txt") if os.path.isdir(path) else path) as f:
        return f.read()


class TestVersions(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="cortex-models-")
        self.loads = []

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def store(self, spec):
        store = ModelStore(spec, self.dir, "api")

        def loader(path, location):
            self.loads.append(os.path.relpath(path, self.dir))
            return read_model(path, location)

        store.start(loader)
        return store

    def test_an_unversioned_model_is_version_1(self):
        write(os.path.join(self.dir, "m/model.txt"), "plain")
        store = self.store({"model_path": "m"})
        self.assertEqual(store.get(), "plain")
        self.assertEqual(store.get(None, "1"), "plain")
        self.assertEqual(store.get("any-name", "latest"), "plain")
        with self.assertRaises(ModelNotFound):
            store.get(None, "2")

    def test_the_latest_is_the_highest_number(self):
        for v in ("1", "20", "3"):
            write(os.path.join(self.dir, "m", v, "model.txt"), "v" + v)
        store = self.store({"model_path": "m"})
        self.assertEqual(store.get(), "v20")
        self.assertEqual(store.get(None, None), "v20")
        self.assertEqual(store.get(None, 3), "v3")
        with self.assertRaises(ModelNotFound) as e:
            store.get(None, "4")
        self.assertIn("has no version 4; it has 1, 3, 20", str(e.exception))
        with self.assertRaises(ModelRequestError):
            store.get(None, "newest")

    def test_named_models_need_a_known_name(self):
        write(os.path.join(self.dir, "a/model.txt"), "A")
        write(os.path.join(self.dir, "b/7/model.txt"), "B7")
        store = self.store({"paths": [{"name": "a", "model_path": "a"}, {"name": "b", "model_path": "b"}]})
        self.assertEqual(store.get("a"), "A")
        self.assertEqual(store.get("b", "7"), "B7")
        with self.assertRaises(ModelNotFound) as e:
            store.get()
        self.assertIn("model_name was not given; the models are: a, b", str(e.exception))
        with self.assertRaises(ModelNotFound) as e:
            store.get("c")
        self.assertIn("there is no model named 'c'", str(e.exception))

    def test_a_models_dir_names_its_models_by_subdirectory(self):
        write(os.path.join(self.dir, "all/x/model.txt"), "X")
        write(os.path.join(self.dir, "all/y/2/model.txt"), "Y2")
        store = self.store({"dir": "all"})
        self.assertEqual(store.names, ["x", "y"])
        self.assertEqual(store.get("y"), "Y2")
        write(os.path.join(self.dir, "all/z/model.txt"), "Z")
        store.refresh()
        self.assertEqual(store.get("z"), "Z")

    def test_without_a_cache_every_latest_version_is_loaded_at_start(self):
        write(os.path.join(self.dir, "a/model.txt"), "A")
        write(os.path.join(self.dir, "b/model.txt"), "B")
        self.store({"paths": [{"name": "a", "model_path": "a"}, {"name": "b", "model_path": "b"}]})
        self.assertEqual(sorted(self.loads), ["a", "b"])

    def test_a_missing_model_fails_the_start(self):
        from cortex_runtime.models import ModelError

        with self.assertRaises(ModelError) as e:
            self.store({"paths": [{"name": "a", "model_path": "nowhere"}]})
        self.assertIn("model 'a': there is no model at nowhere", str(e.exception))

    def test_a_new_version_is_picked_up_and_a_changed_one_reloaded(self):
        write(os.path.join(self.dir, "m/1/model.txt"), "one")
        store = self.store({"model_path": "m"})
        self.assertEqual(store.get(), "one")
        write(os.path.join(self.dir, "m/2/model.txt"), "two")
        store.refresh()
        self.assertEqual(store.get(), "two")
        self.assertEqual(store.get(None, "1"), "one")
        path = os.path.join(self.dir, "m/1/model.txt")
        write(path, "one, retrained")
        os.utime(path, ns=(1, 1))  # a different mtime whatever the clock's resolution
        store.refresh()
        self.assertEqual(store.get(None, "1"), "one, retrained")
        shutil.rmtree(os.path.join(self.dir, "m/2"))
        store.refresh()
        self.assertEqual(store.get(), "one, retrained")
        with self.assertRaises(ModelNotFound):
            store.get(None, "2")

    def test_the_memory_cache_keeps_the_most_recently_used(self):
        for name in "abc":
            write(os.path.join(self.dir, name, "model.txt"), name.upper())
        spec = {"paths": [{"name": n, "model_path": n} for n in "abc"], "cache_size": 2, "disk_cache_size": 2}
        store = self.store(spec)
        self.assertEqual(self.loads, [], "a cache loads nothing before it is asked")
        store.get("a")
        store.get("b")
        store.get("a")
        store.get("c")  # evicts b, the least recently used
        self.assertEqual(sorted(store.loaded()), ["a", "c"])
        store.get("b")
        self.assertEqual(self.loads, ["a", "b", "c", "b"])


PYTHON_PREDICTOR = """
class PythonPredictor:
    def __init__(self, config, python_client):
        self.client = python_client

    def load_model(self, model_path):
        with open(model_path + "/model.txt") as f:
            return f.read().strip()

    def predict(self, payload, query_params):
        model = self.client.get_model(query_params.get("model"), query_params.get("version"))
        return {"model": model}
"""


class TestPythonClient(ShimTestCase):
    """A python predictor with models.paths, served; a version added while it runs is used."""

    def setUp(self):
        self.shim = Shim(
            PYTHON_PREDICTOR,
            files={"models/iris/1/model.txt": "iris-1", "models/wine/model.txt": "wine"},
            env={
                "CORTEX_MODELS": json.dumps(
                    {"paths": [{"name": "iris", "model_path": "models/iris"}, {"name": "wine", "model_path": "models/wine"}]}
                ),
                "CORTEX_MODEL_RELOAD_SECONDS": "0.2",
            },
        )
        self.shim.wait_ready()

    def tearDown(self):
        self.shim.close()

    def predict(self, query):
        status, _, body = self.shim.post_json("/?" + query, {})
        return status, json.loads(body)

    def test_models_by_name_and_version_with_live_reloading(self):
        self.assertEqual(self.predict("model=iris"), (200, {"model": "iris-1"}))
        self.assertEqual(self.predict("model=wine&version=1"), (200, {"model": "wine"}))
        status, body = self.predict("model=rose")
        self.assertEqual(status, 404, body)
        self.assertEqual(body["kind"], "model_not_found")
        self.assertIn("there is no model named 'rose'; the models are: iris, wine", body["message"])
        status, body = self.predict("model=iris&version=x")
        self.assertEqual(status, 400, body)
        write(os.path.join(self.shim.dir, "models/iris/2/model.txt"), "iris-2")
        wait_until(lambda: self.predict("model=iris") == (200, {"model": "iris-2"}), what="version 2 to be used")
        self.assertEqual(self.predict("model=iris&version=1"), (200, {"model": "iris-1"}))
        self.assertIn("model 'iris' has a new version 2", self.shim.stdout())


class TestPythonClientProblems(ShimTestCase):
    def exits_with(self, predictor):
        shim = Shim(
            predictor,
            files={"m/model.txt": "x"},
            env={"CORTEX_MODELS": json.dumps({"model_path": "m"})},
        )
        try:
            self.assertEqual(shim.wait_exit(), 3, shim.stderr())
            return shim.stderr()
        finally:
            shim.close()

    def test_init_must_take_python_client(self):
        err = self.exits_with(textwrap.dedent("""
            class PythonPredictor:
                def __init__(self, config):
                    pass
                def load_model(self, model_path):
                    return 1
                def predict(self, payload):
                    return 1
        """))
        self.assertIn("must take python_client when predictor.model_path or predictor.models is set", err)

    def test_load_model_is_required(self):
        err = self.exits_with(textwrap.dedent("""
            class PythonPredictor:
                def __init__(self, config, python_client):
                    pass
                def predict(self, payload):
                    return 1
        """))
        self.assertIn("must define load_model(self, model_path)", err)

    def test_a_failing_load_model_fails_the_start_with_its_traceback(self):
        err = self.exits_with(textwrap.dedent("""
            class PythonPredictor:
                def __init__(self, config, python_client):
                    pass
                def load_model(self, model_path):
                    raise RuntimeError("corrupt weights in " + model_path)
                def predict(self, payload):
                    return 1
        """))
        self.assertIn("loading model (model_path) version 1 failed: RuntimeError: corrupt weights in", err)
        self.assertIn('predictor.py", line 6, in load_model', err)
