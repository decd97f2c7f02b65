"""Serving a predictor end to end: routes, what predict() may return, the arguments its
methods may declare."""

import http.client
import json

from .support import DEADLINE, ECHO, Shim, ShimTestCase, wait_until


RETURNS = """
class PythonPredictor:
    def __init__(self, config):
        pass

    def predict(self, query_params):
        kind = query_params.get("kind")
        if kind == "str":
            return "héllo"
        if kind == "bytes":
            return b"\\x00\\x01\\xff"
        if kind == "dict":
            return {"a": [1, 2.5, None, True]}
        if kind == "none":
            return None
        if kind == "unserialisable":
            return {"x": object()}
        if kind == "nan":
            return {"v": float("nan"), "w": float("inf")}
        return 42
"""


class TestBasics(ShimTestCase):
    @classmethod
    def setUpClass(cls):
        cls.shim = Shim(ECHO, config={"model_path": "model.json", "k": [1, 2]}, api_name="echo-api")
        cls.shim.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.shim.close()

    def test_healthz(self):
        status, ctype, body = self.shim.request("GET", "/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(ctype, "application/json")
        self.assertEqual(json.loads(body), {"status": "ok"})

    def test_health_as_model_bazaar_deployments_answer_it(self):
        for path in ("/health", "/health?probe=1"):
            status, ctype, body = self.shim.request("GET", path)
            self.assertEqual(status, 200)
            self.assertEqual(ctype, "application/json")
            self.assertEqual(json.loads(body), {"status": "success"})

    def test_get_other_path(self):
        for path in ("/", "/echo-api", "/anything?x=1"):
            status, ctype, body = self.shim.request("GET", path)
            self.assertEqual(status, 200)
            self.assertEqual(ctype, "application/json")
            self.assertEqual(
                json.loads(body),
                {"message": "make a prediction by sending a post request to this endpoint with a json payload"},
            )

    def test_json_round_trip(self):
        payload = {"text": "héllo", "n": [1, 2.5, None, True], "nested": {"a": {}}}
        status, ctype, body = self.shim.post_json("/", payload)
        self.assertEqual(status, 200)
        self.assertEqual(ctype, "application/json")
        self.assertEqual(json.loads(body)["payload"], payload)

    def test_json_suffix_content_type(self):
        status, _, body = self.shim.request(
            "POST", "/", b"[1, 2]", {"Content-Type": "application/vnd.api+json; charset=utf-8"}
        )
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["payload"], [1, 2])

    def test_config_passed_to_init(self):
        _, _, body = self.shim.post_json("/", {})
        self.assertEqual(json.loads(body)["config"], {"model_path": "model.json", "k": [1, 2]})

    def test_bytes_payload(self):
        data = bytes([0, 1, 2, 255])
        status, _, body = self.shim.request("POST", "/", data, {"Content-Type": "application/octet-stream"})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["payload"], {"bytes": [0, 1, 2, 255]})
        # no Content-Type at all: bytes too
        conn = http.client.HTTPConnection("127.0.0.1", self.shim.port, timeout=DEADLINE)
        try:
            conn.putrequest("POST", "/", skip_accept_encoding=True)
            conn.putheader("Content-Length", "3")
            conn.endheaders(b"abc")
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            self.assertEqual(json.loads(resp.read())["payload"], {"bytes": list(b"abc")})
        finally:
            conn.close()

    def test_chunked_body(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.shim.port, timeout=DEADLINE)
        try:
            conn.request(
                "POST", "/", body=iter([b'{"a":', b" 1}"]), headers={"Content-Type": "application/json"},
                encode_chunked=True,
            )
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            self.assertEqual(json.loads(resp.read())["payload"], {"a": 1})
        finally:
            conn.close()

    def test_invalid_json_is_400(self):
        status, ctype, body = self.shim.request("POST", "/", b"{not json", {"Content-Type": "application/json"})
        self.assertEqual(status, 400)
        self.assertEqual(ctype, "application/json")
        err = json.loads(body)["message"]
        self.assertTrue(err.startswith("the request body is not valid JSON: "), err)
        # an empty JSON body is invalid too (cortex e2e readiness probe)
        status, _, _ = self.shim.request("POST", "/", b"", {"Content-Type": "application/json"})
        self.assertEqual(status, 400)

    def test_query_params_and_headers(self):
        status, _, body = self.shim.post_json("/p?a=1&b=x&a=2&empty=", {}, )
        self.assertEqual(status, 200)
        out = json.loads(body)
        self.assertEqual(out["query_params"], {"a": "2", "b": "x", "empty": ""})
        status, _, body = self.shim.request(
            "POST", "/", b"{}", {"Content-Type": "application/json", "X-Custom-Header": "Value"}
        )
        headers = json.loads(body)["headers"]
        self.assertEqual(headers["x-custom-header"], "Value")
        self.assertEqual(headers["content-type"], "application/json")
        self.assertTrue(all(k == k.lower() for k in headers))

    def test_keep_alive(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.shim.port, timeout=DEADLINE)
        try:
            conn.connect()
            sock = conn.sock
            for i in range(5):
                conn.request("POST", "/", body=json.dumps({"i": i}), headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                self.assertIsNotNone(resp.getheader("Content-Length"))
                self.assertEqual(json.loads(resp.read())["payload"], {"i": i})
                conn.request("GET", "/healthz")
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                resp.read()
            self.assertIs(conn.sock, sock, "the connection was not kept alive")
        finally:
            conn.close()

    def test_ready_line_on_stdout(self):
        out = wait_until(lambda: "is ready on port" in self.shim.stdout() and self.shim.stdout(), what="ready line")
        line = [l for l in out.splitlines() if "is ready on port" in l][0]
        self.assertRegex(
            line, r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+:cortex:pid-\d+:INFO:echo-api is ready on port %d$" % self.shim.port
        )

    def test_quiet_per_request(self):
        for _ in range(3):
            self.shim.post_json("/", {})
        self.assertEqual(self.shim.stderr(), "")
        self.assertNotIn("POST", self.shim.stdout())


class TestReturnTypes(ShimTestCase):
    @classmethod
    def setUpClass(cls):
        cls.shim = Shim(RETURNS)
        cls.shim.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.shim.close()

    def test_str(self):
        status, ctype, body = self.shim.request("POST", "/?kind=str")
        self.assertEqual((status, ctype, body.decode("utf-8")), (200, "text/plain; charset=utf-8", "héllo"))

    def test_bytes(self):
        status, ctype, body = self.shim.request("POST", "/?kind=bytes")
        self.assertEqual((status, ctype, body), (200, "application/octet-stream", b"\x00\x01\xff"))

    def test_dict(self):
        status, ctype, body = self.shim.request("POST", "/?kind=dict")
        self.assertEqual((status, ctype), (200, "application/json"))
        self.assertEqual(json.loads(body), {"a": [1, 2.5, None, True]})

    def test_other_json(self):
        self.assertEqual(self.shim.request("POST", "/?kind=none")[1:], ("application/json", b"null"))
        self.assertEqual(self.shim.request("POST", "/")[1:], ("application/json", b"42"))

    def test_unserialisable_is_500(self):
        status, ctype, body = self.shim.request("POST", "/?kind=unserialisable")
        self.assertEqual((status, ctype), (500, "application/json"))
        self.assertEqual(json.loads(body), {"kind": "internal", "message": "internal server error"})
        err = wait_until(lambda: "not JSON serialisable" in self.shim.stderr() and self.shim.stderr(), what="stderr")
        self.assertIn("TypeError", err)

    def test_nan_is_500_not_invalid_json(self):
        # NaN and Infinity are not JSON: a strict client could not read a 200 carrying them.
        status, ctype, body = self.shim.request("POST", "/?kind=nan")
        self.assertEqual((status, ctype), (500, "application/json"))
        self.assertEqual(json.loads(body), {"kind": "internal", "message": "internal server error"})
        err = wait_until(lambda: "NaN" in self.shim.stderr() and self.shim.stderr(), what="stderr")
        self.assertIn("not JSON serialisable: it holds NaN or Infinity", err)


class TestDeclaredArguments(ShimTestCase):
    def test_payload_only(self):
        shim = self.start(
            """
            class PythonPredictor:
                def __init__(self, config):
                    pass
                def predict(self, payload):
                    return {"got": payload}
            """
        )
        status, _, body = shim.post_json("/?x=1", {"a": 1})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {"got": {"a": 1}})

    def test_query_params_and_headers_only(self):
        shim = self.start(
            """
            class PythonPredictor:
                def __init__(self, config):
                    pass
                def predict(self, query_params, headers):
                    return {"q": query_params, "h": headers.get("x-key")}
            """
        )
        status, _, body = shim.request("POST", "/?x=1", b"ignored", {"X-Key": "k"})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {"q": {"x": "1"}, "h": "k"})

    def test_no_args_and_no_init(self):
        shim = self.start(
            """
            class PythonPredictor:
                def predict(self):
                    return "ok"
            """
        )
        self.assertEqual(shim.request("POST", "/")[2], b"ok")

    def test_init_optional_args(self):
        shim = self.start(
            """
            class PythonPredictor:
                def __init__(self, config, job_spec=None, python_client=None):
                    self.seen = [config, job_spec, python_client]
                def predict(self, payload):
                    return self.seen
            """,
            config={"a": 1},
        )
        self.assertEqual(json.loads(shim.request("POST", "/")[2]), [{"a": 1}, None, None])
