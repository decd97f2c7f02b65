"""What predict() returns: rendering values and Response objects."""

import http.client
import json
import unittest

from cortex_runtime.responses import drained, render

from .support import DEADLINE, Shim, ShimTestCase, wait_until


class TestRender(unittest.TestCase):
    class Response:
        def __init__(self, body=b"", status_code=200, media_type=None, headers=None):
            self.body, self.status_code, self.media_type = body, status_code, media_type
            if headers is not None:
                self.headers = headers

    def test_plain_values(self):
        self.assertEqual(render(b"x"), (200, b"x", [("Content-Type", "application/octet-stream")]))
        self.assertEqual(render("é"), (200, "é".encode(), [("Content-Type", "text/plain; charset=utf-8")]))
        self.assertEqual(render({"a": 1}), (200, b'{"a": 1}', [("Content-Type", "application/json")]))
        with self.assertRaises(TypeError):
            render({"a": object()})

    def test_response_like(self):
        R = self.Response
        self.assertEqual(render(R(b"x", 201)), (201, b"x", []))
        self.assertEqual(
            render(R(b"x", 202, "text/csv")), (202, b"x", [("Content-Type", "text/csv; charset=utf-8")])
        )
        self.assertEqual(render(R(b"x", 200, "image/png")), (200, b"x", [("Content-Type", "image/png")]))
        status, body, headers = render(
            R(
                b"{}",
                200,
                "text/plain",
                {
                    "content-type": "application/json",
                    "Content-Length": "999",
                    "Connection": "close",
                    "Transfer-Encoding": "chunked",
                    "Set-Cookie": ["a=1", "b=2"],
                    "X-Num": 5,
                },
            )
        )
        self.assertEqual(
            headers,
            [("content-type", "application/json"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("X-Num", "5")],
        )
        for bad in (R(b"", 99), R(b"", 600), R(b"", 200, None, {"X-A": "1\r\nX-B: 2"}), R(b"", 200, None, {"Bad Name": "1"})):
            with self.assertRaises(ValueError):
                render(bad)

    def test_not_response_like(self):
        class HalfResponse:
            body = "a str body"
            status_code = 200

        with self.assertRaises(TypeError):  # JSON then, which fails
            render(HalfResponse())


RESPONSES = """
class Response:  # shaped like starlette.responses.Response
    def __init__(self, content=b"", status_code=200, headers=None, media_type=None):
        self.body = content if isinstance(content, bytes) else content.encode("utf-8")
        self.status_code = status_code
        self.media_type = media_type
        if headers is not None:
            self.headers = headers

class RawHeaders:  # like Starlette's Headers: items() gives every pair
    def __init__(self, pairs):
        self.pairs = pairs
    def items(self):
        return list(self.pairs)

class PythonPredictor:
    def predict(self, query_params):
        kind = query_params.get("kind")
        if kind == "created":
            return Response(b'{"id": 7}', 201, {"X-Request-Id": "abc", "Set-Cookie": ["a=1", "b=2"],
                            "Content-Length": "999", "Connection": "close", "Server": "custom"}, "application/json")
        if kind == "text":
            return Response("h\u00e9llo", 202, media_type="text/csv")
        if kind == "starlette":
            return Response(b"<p>hi</p>", 200, RawHeaders([("content-length", "9"),
                            ("content-type", "text/html; charset=utf-8"), ("x-a", "1"), ("x-a", "2")]), "text/html")
        if kind == "untyped":
            return Response(b"raw", 418)
        if kind == "no_content":
            return Response(b"dropped", 204, {"X-A": "1"})
        if kind == "bad_status":
            return Response(b"", 99)
        if kind == "bad_header":
            return Response(b"", 200, {"X-Evil": "a\\r\\nInjected: 1"})
        return "plain"
"""


class TestResponses(ShimTestCase):
    @classmethod
    def setUpClass(cls):
        cls.shim = Shim(RESPONSES)
        cls.shim.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.shim.close()

    def test_passed_through_on_a_kept_alive_connection(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.shim.port, timeout=DEADLINE)
        self.addCleanup(conn.close)
        conn.connect()
        sock = conn.sock

        conn.request("POST", "/?kind=created")
        resp = conn.getresponse()
        self.assertEqual((resp.status, resp.read()), (201, b'{"id": 7}'))
        self.assertEqual(resp.getheader("Content-Type"), "application/json")
        self.assertEqual(resp.getheader("X-Request-Id"), "abc")
        self.assertEqual(resp.msg.get_all("Set-Cookie"), ["a=1", "b=2"])
        self.assertEqual(resp.getheader("Content-Length"), "9")  # the shim frames the body itself
        self.assertIsNone(resp.getheader("Connection"))
        self.assertEqual(resp.msg.get_all("Server"), ["custom"])
        self.assertEqual(len(resp.msg.get_all("Date")), 1)

        conn.request("POST", "/?kind=text")
        resp = conn.getresponse()
        self.assertEqual((resp.status, resp.read().decode("utf-8")), (202, "héllo"))
        self.assertEqual(resp.getheader("Content-Type"), "text/csv; charset=utf-8")

        conn.request("POST", "/?kind=starlette")
        resp = conn.getresponse()
        self.assertEqual((resp.status, resp.read()), (200, b"<p>hi</p>"))
        self.assertEqual(resp.msg.get_all("Content-Type"), ["text/html; charset=utf-8"])
        self.assertEqual(resp.msg.get_all("Content-Length"), ["9"])
        self.assertEqual(resp.msg.get_all("x-a"), ["1", "2"])

        conn.request("POST", "/?kind=untyped")
        resp = conn.getresponse()
        self.assertEqual((resp.status, resp.read(), resp.getheader("Content-Type")), (418, b"raw", None))

        conn.request("POST", "/?kind=no_content")
        resp = conn.getresponse()
        self.assertEqual((resp.status, resp.read(), resp.getheader("X-A")), (204, b"", "1"))

        conn.request("POST", "/")
        resp = conn.getresponse()
        self.assertEqual((resp.status, resp.read()), (200, b"plain"))
        self.assertEqual(resp.msg.get_all("Server"), ["cortex"])
        self.assertIs(conn.sock, sock, "the connection was not kept alive")

    def test_invalid_response_is_500(self):
        for kind, message in (("bad_status", "invalid status_code 99"), ("bad_header", "contains a line break")):
            with self.subTest(kind=kind):
                status, ctype, body = self.shim.request("POST", "/?kind=" + kind)
                self.assertEqual((status, ctype), (500, "application/json"))
                self.assertEqual(json.loads(body), {"kind": "internal", "message": "internal server error"})
                wait_until(lambda: message in self.shim.stderr(), what="the error on stderr")


class Streaming:  # shaped like starlette.responses.StreamingResponse
    def __init__(self, iterator, media_type="text/csv"):
        self.body_iterator = iterator
        self.status_code = 200
        self.media_type = media_type
        self.charset = "utf-8"
        self.headers = {"content-type": media_type, "x-rows": "2"}


class TestDrained(unittest.TestCase):
    def test_sync_and_async_iterators_are_read_whole(self):
        def rows():
            yield "a,b\n"
            yield b"1,2\n"

        async def async_rows():
            yield b"a,b\n"
            yield "1,2\n"

        for iterator in (rows(), async_rows()):
            status, body, headers = render(drained(Streaming(iterator)))
            self.assertEqual((status, body), (200, b"a,b\n1,2\n"))
            self.assertIn(("x-rows", "2"), headers)
            self.assertIn(("content-type", "text/csv"), headers)

    def test_everything_else_is_left_as_it_is(self):
        for value in (b"x", "x", {"a": 1}, None, 3, object()):
            self.assertIs(drained(value), value)
