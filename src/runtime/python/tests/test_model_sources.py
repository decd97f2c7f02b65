"""Models on S3: listing versions, downloading one, a prefix that is one object, `models.dir`
over common prefixes, and the disk cache's eviction (with moto's in-process S3 when this python
has moto and boto3; skipped otherwise, e.g. on the oldest interpreters)."""

import os
import shutil
import tempfile
import unittest

try:
    import boto3
    from moto import mock_aws
except ImportError:  # the shim itself needs neither
    boto3 = None

from cortex_runtime.model_sources import S3Source
from cortex_runtime.model_store import ModelStore


@unittest.skipIf(boto3 is None, "moto and boto3 are not installed for this python")
class TestS3(unittest.TestCase):
    def setUp(self):
        self.saved = dict(os.environ)
        self.venvs = tempfile.mkdtemp(prefix="cortex-s3-models-")
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_DEFAULT_REGION": "us-east-1",
                "CORTEX_VENVS_DIR": self.venvs,
            }
        )
        for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
            os.environ.pop(k, None)
        self.mock = mock_aws()
        self.mock.start()
        self.s3 = boto3.client("s3", region_name="us-east-1")
        self.s3.create_bucket(Bucket="models")

    def tearDown(self):
        self.mock.stop()
        os.environ.clear()
        os.environ.update(self.saved)
        shutil.rmtree(self.venvs, ignore_errors=True)

    def put(self, key, body):
        self.s3.put_object(Bucket="models", Key=key, Body=body.encode())

    def test_versions_and_their_download(self):
        self.put("iris/1/model.txt", "one")
        self.put("iris/2/model.txt", "two")
        self.put("iris/2/vocab/words.txt", "w")
        source = S3Source("s3://models/iris/")
        versions = source.versions()
        self.assertEqual(sorted(versions), [1, 2])
        path = source.local_path(2, versions[2])
        self.assertTrue(path.startswith(os.path.join(self.venvs, "models")), path)
        with open(os.path.join(path, "model.txt")) as f:
            self.assertEqual(f.read(), "two")
        self.assertTrue(os.path.isfile(os.path.join(path, "vocab", "words.txt")))
        self.assertEqual(source.local_path(2, versions[2]), path, "downloaded once")
        self.put("iris/2/model.txt", "two, retrained")
        changed = source.versions()
        self.assertNotEqual(changed[2], versions[2])
        self.assertEqual(changed[1], versions[1])

    def test_an_unversioned_prefix_and_a_single_object(self):
        self.put("plain/model.txt", "plain")
        self.put("file.onnx", "bytes")
        plain = S3Source("s3://models/plain")
        self.assertEqual(list(plain.versions()), [1])
        with open(os.path.join(plain.local_path(1, plain.versions()[1]), "model.txt")) as f:
            self.assertEqual(f.read(), "plain")
        single = S3Source("s3://models/file.onnx")
        path = single.local_path(1, single.versions()[1])
        self.assertEqual(os.listdir(path), ["file.onnx"])
        self.assertEqual(S3Source("s3://models/nothing/").versions(), {})

    def test_a_models_dir_lists_its_subdirectories(self):
        self.put("all/a/model.txt", "A")
        self.put("all/b/3/model.txt", "B3")
        children = S3Source("s3://models/all/").children()
        self.assertEqual(sorted(children), ["a", "b"])
        self.assertEqual(list(children["b"].versions()), [3])

    def test_without_credentials_a_public_bucket_is_read_anonymously(self):
        self.put("public/model.txt", "anyone")
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            del os.environ[k]
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.path.join(self.venvs, "none")
        os.environ["AWS_CONFIG_FILE"] = os.path.join(self.venvs, "none")
        source = S3Source("s3://models/public/")
        self.assertEqual(list(source.versions()), [1])

    def test_a_missing_bucket_is_said_plainly(self):
        from cortex_runtime.models import ModelError

        with self.assertRaises(ModelError) as e:
            S3Source("s3://no-such-bucket/x/").versions()
        self.assertIn("cannot list s3://no-such-bucket/x/: NoSuchBucket", str(e.exception))

    def test_the_disk_cache_keeps_at_most_its_size(self):
        for name in "abc":
            self.put("m/%s/model.txt" % name, name.upper())
        spec = {"dir": "s3://models/m/", "cache_size": 1, "disk_cache_size": 2}
        store = ModelStore(spec, self.venvs, "api")

        def load(path, location):
            with open(os.path.join(path, "model.txt")) as f:
                return f.read()

        store.start(load)
        self.assertEqual([store.get(n) for n in "abc"], ["A", "B", "C"])
        kept = [d for d in os.listdir(os.path.join(self.venvs, "models")) if not d.endswith(".lock")]
        self.assertEqual(len(kept), 2, kept)
        self.assertEqual(store.get("a"), "A", "an evicted model is downloaded again")
