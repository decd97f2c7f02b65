"""Request heads and bodies: parsing, framing, limits."""

import json
import os
import time
import unittest

from cortex_runtime.http_wire import BadRequest, HEAD_LIMIT, HeadTooLarge, PayloadTooLarge, parse_head, request_body

from .support import ECHO, RawConn, Shim, ShimTestCase


def read_request(head, body, limit=10 * 1024 * 1024, piece=None):
    """Parses a POST with the header lines `head` and then `body`, as a connection does,
    the bytes arriving `piece` at a time (all at once by default), then the end of the
    stream: (the head, its reader, the body, the bytes left after it). Raises BadRequest
    (also for a body cut short) or PayloadTooLarge."""
    data = b"POST / HTTP/1.1\r\n" + head.encode("latin-1") + b"\r\n" + body
    piece = piece or len(data) or 1
    buf = bytearray()
    parsed = reader = None
    for i in range(0, len(data), piece):
        buf += data[i : i + piece]
        if parsed is None:
            found = parse_head(buf)
            if found is None:
                continue
            parsed, taken = found
            del buf[:taken]
            reader = request_body(parsed, limit)
        out = reader.take(buf)
        if out is not None:
            return parsed, reader, out, bytes(buf)
    if reader is None:
        raise AssertionError("the head never completed")
    raise BadRequest(reader.incomplete)


class TestHeads(unittest.TestCase):
    def test_request_line_and_headers(self):
        buf = bytearray(b"\r\nGET /p/a?x=1&y=2 HTTP/1.1\r\nHost: h\r\nX-Two:  a b \r\nx-two: c\r\n\r\nrest")
        head, taken = parse_head(buf)
        self.assertEqual((head.method, head.path, head.query, head.version), ("GET", "/p/a", "x=1&y=2", "HTTP/1.1"))
        self.assertEqual(head.get("x-TWO"), "a b")
        self.assertEqual(head.get_all("X-Two"), ["a b", "c"])
        self.assertTrue(head.keep_alive)
        self.assertEqual(bytes(buf[taken:]), b"rest")

    def test_incomplete_and_bare_lf(self):
        self.assertIsNone(parse_head(bytearray(b"GET / HTTP/1.1\r\nHost: h\r\n")))
        head, _ = parse_head(bytearray(b"GET / HTTP/1.0\nConnection: keep-alive\n\n"))
        self.assertTrue(head.keep_alive)
        head, _ = parse_head(bytearray(b"GET / HTTP/1.0\r\n\r\n"))
        self.assertFalse(head.keep_alive)
        head, _ = parse_head(bytearray(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"))
        self.assertFalse(head.keep_alive)

    def test_malformed(self):
        for raw, message in (
            (b"GET /\r\n\r\n", "malformed request line"),
            (b"GET / HTTP/2.0\r\n\r\n", "unsupported HTTP version"),
            (b"G(T / HTTP/1.1\r\n\r\n", "malformed method"),
            (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", "malformed header line"),
            (b"GET / HTTP/1.1\r\n folded: x\r\n\r\n", "malformed header line"),
        ):
            with self.subTest(raw=raw):
                with self.assertRaises(BadRequest) as cm:
                    parse_head(bytearray(raw))
                self.assertIn(message, str(cm.exception))
        with self.assertRaises(HeadTooLarge):
            parse_head(bytearray(b"GET / HTTP/1.1\r\nX: " + b"a" * HEAD_LIMIT))


class TestBodyReading(unittest.TestCase):
    def test_content_length_in_pieces(self):
        data = os.urandom(300 * 1024 + 7)
        for piece in (None, 1000, 65536):
            with self.subTest(piece=piece):
                _, _, body, rest = read_request("Content-Length: %d\r\n" % len(data), data + b"next request", piece=piece)
                self.assertEqual(body, data)
                self.assertTrue(b"next request".startswith(rest))  # nothing after the body was taken

    def test_no_body(self):
        _, _, body, rest = read_request("", b"GET")
        self.assertEqual((body, rest), (b"", b"GET"))

    def test_chunked(self):
        big = os.urandom(200 * 1024)
        body = b"5;ext=1\r\nhello\r\n" + (b"%x\r\n" % len(big)) + big + b"\r\n" + b"000\r\nX-Trailer: 1\r\n\r\nnext"
        for piece in (None, 1, 7, 4096):
            if piece == 1:
                body_small = b"5;ext=1\r\nhello\r\n3\r\nabc\n0\r\nX-Trailer: 1\r\n\r\nnext"
                _, reader, out, rest = read_request("Transfer-Encoding: chunked\r\n", body_small, piece=1)
                self.assertEqual((out, rest), (b"helloabc", b""))
                continue
            with self.subTest(piece=piece):
                _, reader, out, rest = read_request("Transfer-Encoding: chunked\r\n", body, piece=piece)
                self.assertEqual(out, b"hello" + big)
                self.assertTrue(b"next".startswith(rest))
                self.assertFalse(reader.both_framings)
        _, reader, out, _ = read_request("Transfer-Encoding: Chunked\r\nContent-Length: 3\r\n", b"1\r\na\r\n0\r\n\r\n")
        self.assertEqual(out, b"a")
        self.assertTrue(reader.both_framings)  # both framings: never reuse the connection

    def test_bad_framing(self):
        for head, body, message in (
            ("Content-Length: abc\r\n", b"", "invalid Content-Length"),
            ("Content-Length: -1\r\n", b"", "invalid Content-Length"),
            ("Content-Length: +5\r\n", b"abcde", "invalid Content-Length"),
            ("Content-Length: 3\r\nContent-Length: 4\r\n", b"abcd", "invalid Content-Length"),
            ("Content-Length: 10\r\n", b"short", "incomplete request body"),
            ("Transfer-Encoding: gzip, chunked\r\n", b"", "unsupported Transfer-Encoding"),
            ("Transfer-Encoding: chunked\r\n", b"zz\r\n", "invalid chunk size 'zz'"),
            ("Transfer-Encoding: chunked\r\n", b"0x5\r\nhello\r\n0\r\n\r\n", "invalid chunk size '0x5'"),
            ("Transfer-Encoding: chunked\r\n", b"-5\r\n", "invalid chunk size"),
            ("Transfer-Encoding: chunked\r\n", b"\r\n", "invalid chunk size"),
            ("Transfer-Encoding: chunked\r\n", b"1" * 17 + b"\r\n", "absurd chunk size"),
            ("Transfer-Encoding: chunked\r\n", b"1" * 20000, "line is too long"),
            ("Transfer-Encoding: chunked\r\n", b"5\r\nhel", "incomplete chunked request body"),
            ("Transfer-Encoding: chunked\r\n", b"5\r\nhelloXX0\r\n\r\n", "does not end with CRLF"),
            ("Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n", "incomplete chunked request body"),
            ("Transfer-Encoding: chunked\r\n", b"0\r\nX-T: 1\r\n", "incomplete chunked request body"),
        ):
            with self.subTest(head=head, body=body[:30]):
                with self.assertRaises(BadRequest) as cm:
                    read_request(head, body)
                self.assertIn(message, str(cm.exception))

    def test_too_large(self):
        self.assertEqual(read_request("Content-Length: 100\r\n", b"x" * 100, limit=100)[2], b"x" * 100)
        for head, body in (
            ("Content-Length: 101\r\n", b"x" * 101),
            ("Content-Length: %d\r\n" % (10 ** 30), b""),
            ("Content-Length: 0000000000000000000000000000000101\r\n", b"x" * 101),
            ("Transfer-Encoding: chunked\r\n", b"65\r\n" + b"x" * 101 + b"\r\n0\r\n\r\n"),
            ("Transfer-Encoding: chunked\r\n", b"32\r\n" + b"x" * 50 + b"\r\n33\r\n"),
            ("Transfer-Encoding: chunked\r\n", b"ffffffffffffffff\r\n"),
        ):
            with self.subTest(head=head, body=body[:30]):
                with self.assertRaises(PayloadTooLarge):
                    read_request(head, body, limit=100)
        self.assertEqual(
            read_request("Content-Length: 00000000000000000000000000000000000005\r\n", b"hello", limit=100)[2],
            b"hello",
        )


class TestBodiesOverHTTP(ShimTestCase):
    LIMIT = 1000

    @classmethod
    def setUpClass(cls):
        cls.shim = Shim(ECHO, env={"CORTEX_MAX_BODY_BYTES": str(cls.LIMIT)})
        cls.shim.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.shim.close()

    def conn(self):
        c = RawConn(self.shim.port)
        self.addCleanup(c.close)
        return c

    def assert_error(self, response, status, kind):
        self.assertIsNotNone(response, "the connection was closed without a response")
        self.assertEqual(response[0], status, response)
        self.assertEqual(response[1]["content-type"], "application/json")
        err = json.loads(response[2])
        self.assertEqual(set(err), {"kind", "message"})
        self.assertEqual(err["kind"], kind)
        return err

    def test_limit_exactly(self):
        body = json.dumps({"s": "x" * (self.LIMIT - len('{"s": ""}'))}).encode()
        self.assertEqual(len(body), self.LIMIT)
        status, _, out = self.shim.request("POST", "/", body, {"Content-Type": "application/json"})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(out)["payload"], json.loads(body))

    def test_413_without_reading_the_body(self):
        c = self.conn()
        started = time.monotonic()
        # declares a body it never sends: the answer cannot wait for it
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n")
        response = c.response()
        err = self.assert_error(response, 413, "payload_too_large")
        self.assertIn("1000 bytes", err["message"])
        self.assertEqual(response[1]["connection"], "close")
        self.assertTrue(c.at_eof())
        self.assertLess(time.monotonic() - started, 5)

    def test_413_readable_after_sending_the_body(self):
        c = self.conn()
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000)
        response = c.response()
        self.assert_error(response, 413, "payload_too_large")
        self.assertEqual(response[1]["connection"], "close")
        self.assertTrue(c.at_eof())

    def test_413_before_100_continue(self):
        c = self.conn()
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
        response = c.response()
        self.assert_error(response, 413, "payload_too_large")  # not 100 Continue
        self.assertTrue(c.at_eof())
        # a body within the limit gets its 100 Continue
        c = self.conn()
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        self.assertEqual(c.file.readline(), b"HTTP/1.1 100 Continue\r\n")
        self.assertEqual(c.file.readline(), b"\r\n")
        c.send(b"ab")
        status, _, out = c.response()
        self.assertEqual((status, json.loads(out)["payload"]), (200, {"bytes": list(b"ab")}))

    def test_413_chunked(self):
        c = self.conn()
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):
            c.send(b"190\r\n" + b"x" * 400 + b"\r\n")  # 1200 bytes in all
        response = c.response()
        self.assert_error(response, 413, "payload_too_large")
        self.assertEqual(response[1]["connection"], "close")
        self.assertTrue(c.at_eof())

    def test_bad_chunk_sizes_are_400(self):
        for size_line in (b"zz", b"0x10", b"1" * 17):
            with self.subTest(size_line=size_line):
                c = self.conn()
                c.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + size_line + b"\r\n")
                response = c.response()
                self.assert_error(response, 400, "bad_request")
                self.assertEqual(response[1]["connection"], "close")
                self.assertTrue(c.at_eof())

    def test_chunked_with_extensions_and_trailers(self):
        c = self.conn()
        c.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;name=value\r\n[1,\r\n2\r\n 2\r\n1\r\n]\r\n0\r\nX-Checksum: 1\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        status, headers, out = c.response()
        self.assertEqual((status, json.loads(out)["payload"]), (200, [1, 2]))
        self.assertNotIn("connection", headers)
        self.assertEqual(c.response()[0], 200)

    def test_get_head_and_405_bodies_are_discarded(self):
        fake = b"POST /smuggled HTTP/1.1\r\nContent-Length: 0\r\n\r\n"  # a body that looks like a request
        c = self.conn()
        c.send(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(fake), fake)
            + b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(fake), fake)
            + b"HEAD / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(fake), fake)
            + b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(fake), fake)
            + b"DELETE / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(fake), fake)
            + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        self.assertEqual(c.response()[:1], (200,))
        status, _, body = c.response()
        self.assertEqual((status, json.loads(body)["message"][:22]), (200, "make a prediction by s"))
        status, headers, body = c.response(head=True)
        self.assertEqual((status, body), (200, b""))
        status, headers, body = c.response()
        self.assertEqual((status, headers["allow"], json.loads(body)["kind"]), (405, "GET, HEAD, POST", "method_not_allowed"))
        self.assertEqual(c.response()[0], 405)
        status, headers, body = c.response()
        self.assertEqual((status, json.loads(body)), (200, {"status": "ok"}))
        self.assertNotIn("connection", headers)  # still keep-alive

    def test_get_bodies_are_limited_too(self):
        for method in (b"GET", b"PUT"):
            with self.subTest(method=method):
                c = self.conn()
                c.send(method + b" / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
                self.assert_error(c.response(), 413, "payload_too_large")
                self.assertTrue(c.at_eof())
        c = self.conn()
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        response = c.response()
        self.assert_error(response, 400, "bad_request")
        self.assertEqual(response[1]["connection"], "close")

    def test_invalid_content_length_is_400(self):
        for value in (b"abc", b"-1", b"+5", b"1_0"):
            with self.subTest(value=value):
                c = self.conn()
                c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + value + b"\r\n\r\n")
                response = c.response()
                err = self.assert_error(response, 400, "bad_request")
                self.assertEqual(err["message"], "invalid Content-Length")
                self.assertEqual(response[1]["connection"], "close")

    def test_unsupported_transfer_encoding_is_400(self):
        c = self.conn()
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n")
        self.assert_error(c.response(), 400, "bad_request")
        self.assertTrue(c.at_eof())
