"""A Connection on a fake transport: back-pressure and when things run."""

import unittest
from unittest import mock

from cortex_runtime.connection import Connection
from cortex_runtime.predictor import Predictor
from cortex_runtime.server import Server


class FakeTransport:
    """What a Connection writes to, without a socket."""

    def __init__(self):
        self.written = bytearray()
        self.unsent = 0  # bytes "still in the buffer"
        self.reading = True
        self.closed = False

    def get_extra_info(self, name):
        return None

    def write(self, data):
        self.written += data

    def get_write_buffer_size(self):
        return self.unsent

    def pause_reading(self):
        self.reading = False

    def resume_reading(self):
        self.reading = True

    def close(self):
        self.closed = True


class FakeLoop:
    def __init__(self):
        self.later = []

    def call_later(self, delay, fn, *args):
        self.later.append((fn, args))


def fake_connection(predict, post_predict=None):
    """A Connection of a one-thread server (predict runs inline) on a FakeTransport."""
    settings = {"threads": 1, "max_body_bytes": 1 << 20, "api_name": "t"}
    instance = mock.Mock(predict=predict)
    predictor = Predictor(instance, ("payload",), post_predict, ("response",) if post_predict else ())
    server = Server.__new__(Server)
    server.__init__(settings, predictor, None, mock.Mock(getsockname=lambda: ("127.0.0.1", 1), fileno=lambda: -1))
    server.loop = FakeLoop()
    conn = Connection(server)
    conn.connection_made(FakeTransport())
    return server, conn


POST = b"POST / HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class TestBackpressure(unittest.TestCase):
    def test_no_request_is_answered_while_answers_wait_to_go_out(self):
        calls = []
        server, conn = fake_connection(lambda payload: calls.append(payload) or "ok")
        conn.data_received(POST)
        self.assertEqual(len(calls), 1)
        conn.pause_writing()  # the client reads slower than answers are written
        self.assertFalse(conn.transport.reading)
        conn.data_received(POST + POST)
        self.assertEqual(len(calls), 1, "a request was answered while writing was paused")
        conn.resume_writing()
        self.assertTrue(conn.transport.reading)
        self.assertEqual(len(calls), 3)
        self.assertEqual(conn.transport.written.count(b"HTTP/1.1 200 OK"), 3)
        self.assertEqual(server.in_flight, 0)

    def test_post_predict_runs_once_the_answer_has_gone_out(self):
        order = []
        server, conn = fake_connection(lambda payload: "ok", post_predict=lambda response: order.append("post"))
        conn.transport.unsent = 10 << 20  # a large answer, still being sent
        conn.data_received(POST)
        self.assertEqual(conn.transport.written.count(b"200 OK"), 1)
        self.assertEqual(order, [], "post_predict ran before the answer went out")
        conn.transport.unsent = 0
        for fn, args in server.loop.later:
            fn(*args)
        self.assertEqual(order, ["post"])

    def test_a_post_counts_as_in_flight_from_its_head_until_its_answer(self):
        server, conn = fake_connection(lambda payload: "ok")
        conn.data_received(POST[:-2])  # the head, not the body yet
        self.assertEqual(server.in_flight, 1)
        conn.data_received(POST[-2:])
        self.assertEqual(server.in_flight, 0)
        conn.data_received(POST[:-1])
        self.assertEqual(server.in_flight, 1)
        conn.connection_lost(None)  # the client went away mid-body
        self.assertEqual(server.in_flight, 0)
