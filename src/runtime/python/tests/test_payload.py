"""What predict() receives: headers, query_params and form bodies, as types and over HTTP."""

import copy
import http.client
import io
import json
import pickle
import unittest
from collections.abc import Mapping

from cortex_runtime.http_wire import BadRequest
from cortex_runtime.payload import FormData, Headers, QueryParams, UploadFile, parse_payload

from .support import DEADLINE, Shim, ShimTestCase


class TestRequestTypes(unittest.TestCase):
    def test_headers(self):
        h = Headers(
            [("Content-Type", "application/json"), ("X-Rep", "one"), ("x-rep", "two"), ("X-Empty", "")]
        )
        self.assertEqual(h["Content-Type"], "application/json")
        self.assertEqual(h["content-type"], "application/json")
        self.assertEqual(h["CONTENT-TYPE"], "application/json")
        self.assertEqual(h.get("Content-type"), "application/json")
        self.assertIsNone(h.get("missing"))
        self.assertEqual(h.get("missing", "d"), "d")
        self.assertIn("X-REP", h)
        self.assertIn("x-empty", h)
        self.assertNotIn("missing", h)
        self.assertNotIn(["unhashable"], h)
        self.assertEqual(list(h), ["content-type", "x-rep", "x-empty"])
        self.assertEqual(h["X-Rep"], "one")  # the first value, as Starlette's Headers
        self.assertEqual(h.getlist("X-REP"), ["one", "two"])
        self.assertEqual(h.getlist("missing"), [])
        self.assertEqual(dict(h), {"content-type": "application/json", "x-rep": "one", "x-empty": ""})
        self.assertIsInstance(h, Mapping)
        self.assertEqual(len(h), 3)
        with self.assertRaises(KeyError):
            h["missing"]
        self.assertEqual(json.loads(json.dumps(h)), dict(h))
        self.assertIn("Headers(", repr(h))

    def test_read_only(self):
        for obj in (
            Headers([("A", "1")]),
            QueryParams([("a", "1")]),
            FormData([("a", "1")]),
        ):
            with self.subTest(type(obj).__name__):
                for mutate in (
                    lambda: obj.__setitem__("a", "2"),
                    lambda: obj.__delitem__("a"),
                    lambda: obj.update({"b": "2"}),
                    lambda: obj.pop("a"),
                    lambda: obj.popitem(),
                    lambda: obj.setdefault("c", "3"),
                    lambda: obj.clear(),
                ):
                    with self.assertRaises(TypeError):
                        mutate()
                with self.assertRaises(TypeError):
                    obj |= {"b": "2"}
                self.assertEqual(obj["a"], "1")
                # copies keep the type and every value
                for other in (obj.copy(), copy.copy(obj), copy.deepcopy(obj), pickle.loads(pickle.dumps(obj))):
                    self.assertIs(type(other), type(obj))
                    self.assertEqual(other, obj)
                    self.assertEqual(other.getlist("a"), ["1"])

    def test_query_params(self):
        q = QueryParams([("a", "1"), ("b", "x"), ("a", "2"), ("empty", "")])
        self.assertEqual(q["a"], "2")  # the last value wins
        self.assertEqual(q.getlist("a"), ["1", "2"])
        self.assertEqual(dict(q), {"a": "2", "b": "x", "empty": ""})
        self.assertNotIn("A", q)  # case matters here
        self.assertEqual(q.multi_items(), [("a", "1"), ("b", "x"), ("a", "2"), ("empty", "")])

    def test_urlencoded(self):
        form = parse_payload(
            "application/x-www-form-urlencoded; charset=utf-8", b"a=1&b=h%C3%A9llo+w&a=2&empty=&flag"
        )
        self.assertIsInstance(form, FormData)
        self.assertEqual(dict(form), {"a": "2", "b": "héllo w", "empty": "", "flag": ""})
        self.assertEqual(form.getlist("a"), ["1", "2"])
        self.assertEqual(dict(parse_payload("application/x-www-form-urlencoded", b"")), {})
        for bad in (b"a=%FF", b"a=\xff"):
            with self.subTest(bad=bad), self.assertRaises(BadRequest) as cm:
                parse_payload("application/x-www-form-urlencoded", bad)
            self.assertIn("not valid UTF-8", str(cm.exception))

    def test_multipart(self):
        data = bytes(range(256)) + b"\r\n--XyZ-not-a-boundary\r\n\r\n\n\rend\r"
        body = (
            b"preamble\r\n"
            b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'
            b'--XyZ\r\nContent-Disposition: form-data; name="text"\r\n\r\nh\xc3\xa9llo\r\nline 2\r\n'
            b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="x.bin"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
            b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\n2\r\n'
            b'--XyZ\r\nContent-Disposition: form-data; name="doc"; filename="na\xc3\xafve.txt"\r\n\r\nx\r\n'
            b'--XyZ\r\nContent-Disposition: form-data; name="none"; filename=""\r\n\r\n\r\n'
            b"--XyZ--\r\nepilogue"
        )
        form = parse_payload("multipart/form-data; boundary=XyZ", body)
        self.assertIsInstance(form, FormData)
        self.assertEqual(list(form), ["a", "text", "file", "doc", "none"])
        self.assertEqual(form["a"], "2")
        self.assertEqual(form.getlist("a"), ["1", "2"])
        self.assertEqual(form["text"], "héllo\r\nline 2")
        f = form["file"]
        self.assertIsInstance(f, UploadFile)
        self.assertEqual((f.filename, f.content_type, f.size), ("x.bin", "application/octet-stream", len(data)))
        self.assertIsInstance(f.file, io.BytesIO)
        self.assertEqual(f.read(), data)
        f.seek(0)
        self.assertEqual(f.file.read(), data)
        self.assertEqual(f.headers["content-disposition"], 'form-data; name="file"; filename="x.bin"')
        self.assertEqual((form["doc"].filename, form["doc"].content_type, form["doc"].read()), ("naïve.txt", "", b"x"))
        self.assertEqual((form["none"].filename, form["none"].read()), ("", b""))
        self.assertIn("none", form)
        self.assertIsNone(form.get("missing"))

    def test_multipart_empty(self):
        for body in (b"", b"--XyZ--\r\n", b"--XyZ--"):
            with self.subTest(body=body):
                form = parse_payload("multipart/form-data; boundary=XyZ", body)
                self.assertEqual((type(form), dict(form)), (FormData, {}))

    def test_multipart_malformed(self):
        part = b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'
        for content_type, body, message in (
            ("multipart/form-data", part + b"--XyZ--\r\n", "no boundary"),
            ("multipart/form-data; boundary=XyZ", part, "closing boundary is missing"),
            ("multipart/form-data; boundary=XyZ", b"garbage", "boundary was not found"),
            ("multipart/form-data; boundary=other", part + b"--XyZ--\r\n", "boundary was not found"),
            ("multipart/form-data; boundary=XyZ", b"--XyZ\r\n\r\n1\r\n--XyZ--\r\n", "Content-Disposition"),
            ("multipart/form-data; boundary=XyZ", b"--XyZ\r\nContent-Disposition: form-data\r\n\r\n1\r\n--XyZ--\r\n", "no name"),
            (
                "multipart/form-data; boundary=XyZ",
                b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\n\xff\r\n--XyZ--\r\n',
                "not valid utf-8",
            ),
        ):
            with self.subTest(body=body, content_type=content_type):
                with self.assertRaises(BadRequest) as cm:
                    parse_payload(content_type, body)
                self.assertTrue(str(cm.exception).startswith("the multipart/form-data body is malformed: "))
                self.assertIn(message, str(cm.exception))

    def test_other_payloads(self):
        self.assertEqual(parse_payload("", b"\x00raw"), b"\x00raw")
        self.assertEqual(parse_payload("text/plain", b"a=1"), b"a=1")
        self.assertEqual(parse_payload("Application/JSON; charset=utf-8", b'{"a": 1}'), {"a": 1})


REQUEST_VIEW = """
import json
from collections.abc import Mapping

class PythonPredictor:
    def predict(self, payload, query_params, headers):
        try:
            headers["x-new"] = "1"
            writable = True
        except TypeError:
            writable = False
        out = {
            "writable": writable,
            "is_mapping": isinstance(headers, Mapping) and isinstance(query_params, Mapping),
            "ct": [headers["Content-Type"], headers["content-type"], headers.get("CONTENT-TYPE")],
            "missing": headers.get("X-Missing", "default"),
            "in": ["X-Custom" in headers, "x-custom" in headers, "X-Missing" in headers],
            "keys_lower": all(k == k.lower() for k in headers),
            "rep": [headers.get("X-Rep"), headers.getlist("x-rep")],
            "dict": dict(headers),
            "q": [dict(query_params), query_params.get("a"), query_params.getlist("a"), query_params.getlist("zzz")],
            "payload_type": type(payload).__name__,
        }
        if not isinstance(payload, (bytes, list, dict)) or type(payload).__name__ == "FormData":
            fields = {}
            for key in payload:
                values = []
                for v in payload.getlist(key):
                    if isinstance(v, str):
                        values.append(v)
                    else:
                        data = v.read()
                        v.seek(0)
                        values.append({
                            "filename": v.filename,
                            "content_type": v.content_type,
                            "hex": data.hex(),
                            "again": v.file.read() == data,
                        })
                fields[key] = values
            out["fields"] = fields
            out["form_get"] = [payload.get("a"), payload.get("missing", "dflt"), "a" in payload]
        return out
"""


class TestRequestView(ShimTestCase):
    @classmethod
    def setUpClass(cls):
        cls.shim = Shim(REQUEST_VIEW)
        cls.shim.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.shim.close()

    def post(self, path, body, content_type, extra=()):
        conn = http.client.HTTPConnection("127.0.0.1", self.shim.port, timeout=DEADLINE)
        try:
            conn.putrequest("POST", path, skip_accept_encoding=True)
            conn.putheader("Content-Type", content_type)
            conn.putheader("Content-Length", str(len(body)))
            for name, value in extra:
                conn.putheader(name, value)
            conn.endheaders(body)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type"), resp.read()
        finally:
            conn.close()

    def test_headers_and_query_params(self):
        status, _, body = self.post(
            "/p?a=1&b=x&a=2&empty=",
            b"{}",
            "application/json",
            [("X-Custom", "v"), ("X-Rep", "one"), ("X-Rep", "two")],
        )
        self.assertEqual(status, 200, body)
        out = json.loads(body)
        self.assertFalse(out["writable"])
        self.assertTrue(out["is_mapping"])
        self.assertEqual(out["ct"], ["application/json"] * 3)
        self.assertEqual(out["missing"], "default")
        self.assertEqual(out["in"], [True, True, False])
        self.assertTrue(out["keys_lower"])
        self.assertEqual(out["rep"], ["one", ["one", "two"]])
        self.assertEqual(out["dict"]["x-custom"], "v")
        self.assertEqual(out["q"], [{"a": "2", "b": "x", "empty": ""}, "2", ["1", "2"], []])
        self.assertEqual(out["payload_type"], "dict")

    def test_urlencoded_form(self):
        status, _, body = self.post("/", b"a=1&b=h%C3%A9llo+w&a=2&empty=", "application/x-www-form-urlencoded")
        self.assertEqual(status, 200, body)
        out = json.loads(body)
        self.assertEqual(out["payload_type"], "FormData")
        self.assertEqual(out["fields"], {"a": ["1", "2"], "b": ["héllo w"], "empty": [""]})
        self.assertEqual(out["form_get"], ["2", "dflt", True])

    def test_multipart_form(self):
        data = bytes(range(256))
        body = (
            b'--b0undary\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'
            b'--b0undary\r\nContent-Disposition: form-data; name="img"; filename="pic.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + data + b"\r\n"
            b'--b0undary\r\nContent-Disposition: form-data; name="a"\r\n\r\nzw\xc3\xa9i\r\n'
            b"--b0undary--\r\n"
        )
        status, _, out = self.post("/", body, 'multipart/form-data; boundary="b0undary"')
        self.assertEqual(status, 200, out)
        out = json.loads(out)
        self.assertEqual(out["payload_type"], "FormData")
        self.assertEqual(out["fields"]["a"], ["1", "zwéi"])
        self.assertEqual(
            out["fields"]["img"],
            [{"filename": "pic.png", "content_type": "image/png", "hex": data.hex(), "again": True}],
        )
        self.assertEqual(out["form_get"], ["zwéi", "dflt", True])

    def test_malformed_forms_are_400(self):
        for content_type, body in (
            ("multipart/form-data", b"--x\r\n"),
            ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'),
            ("multipart/form-data; boundary=x", b"nothing like a multipart body"),
            ("application/x-www-form-urlencoded", b"a=%ff"),
        ):
            with self.subTest(content_type=content_type, body=body):
                status, ctype, out = self.post("/", body, content_type)
                self.assertEqual((status, ctype), (400, "application/json"), out)
                err = json.loads(out)
                self.assertEqual(set(err), {"kind", "message"})
                self.assertEqual(err["kind"], "bad_request")
        # the server keeps serving on the same terms
        self.assertEqual(self.post("/", b"a=1", "application/x-www-form-urlencoded")[0], 200)
