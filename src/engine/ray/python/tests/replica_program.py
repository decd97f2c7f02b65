"""A stand-in for a replica program: serves GET /healthz (200), GET /pid and GET /print?TEXT (prints `printed TEXT`) on $CORTEX_PORT
(on the socket of fd 3 when CORTEX_LISTEN_FD is set), after printing a line to stdout and one
to stderr. With TEST_EXIT_CODE set it prints and exits with that status instead. With
TEST_LINGER set it takes that many seconds to exit after SIGTERM, its port still open (as a
server draining its requests does)."""

import http.server
import os
import signal
import socket
import sys
import time

rid = os.environ.get("TEST_REPLICA", "?")
print("hello stdout from %s pid %d" % (rid, os.getpid()), flush=True)
print("hello stderr from %s pid %d" % (rid, os.getpid()), file=sys.stderr, flush=True)
if os.environ.get("TEST_EXIT_CODE"):
    sys.exit(int(os.environ["TEST_EXIT_CODE"]))
if os.environ.get("TEST_LINGER"):

    def linger(*_):
        time.sleep(float(os.environ["TEST_LINGER"]))
        os._exit(0)

    signal.signal(signal.SIGTERM, linger)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/print?"):
            print("printed %s" % self.path.split("?", 1)[1], flush=True)
        body = {"/healthz": b"ok", "/pid": str(os.getpid()).encode()}.get(self.path)
        if self.path.startswith("/print?"):
            body = b"printed"
        self.send_response(200 if body is not None else 404)
        body = body or b"not found"
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


port = int(os.environ["CORTEX_PORT"])
if os.environ.get("CORTEX_LISTEN_FD"):
    server = http.server.HTTPServer(("127.0.0.1", port), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = socket.socket(fileno=int(os.environ["CORTEX_LISTEN_FD"]))
    server.server_activate()
else:
    server = http.server.HTTPServer(("127.0.0.1", port), Handler)
server.serve_forever()
