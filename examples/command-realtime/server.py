"""A command predictor: any program that serves HTTP on $CORTEX_PORT (127.0.0.1).

GET  /healthz  200 once ready
POST /         the prediction: {"echo": <request JSON>, "reversed": <reversed "text" field or null>}

Python standard library only.
"""

import http.server
import json
import os
import signal
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every response has a Content-Length
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid a 40 ms Nagle delay

    def log_message(self, format, *args):  # no access log
        pass

    def send_json(self, status, obj):
        body = json.dumps(obj).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.split("?", 1)[0] == "/healthz":
            self.send_json(200, {"status": "ok"})
        else:
            self.send_json(200, {"message": "send a POST request with a JSON body"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        try:
            payload = json.loads(body)
        except ValueError as e:
            self.send_json(400, {"error": "the request body is not valid JSON: %s" % e})
            return
        text = payload.get("text") if isinstance(payload, dict) else None
        self.send_json(200, {"echo": payload, "reversed": text[::-1] if isinstance(text, str) else None})


def main():
    port = int(os.environ["CORTEX_PORT"])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("reverser is listening on 127.0.0.1:%d" % port, flush=True)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
