"""A hostile plugin for issue 11's combined check: every slow or heavy thing at once.

GET /health answers 200. GET /trickle sends its headers and then one byte of body every
0.3 s for a minute. GET /deep sends 100,000 nested ``<div>``s. Run as
``python attacker_plugin.py`` with PORT set; it never calls the core itself.
"""

import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRICKLE_S = 0.3
TRICKLE_FOR_S = 60.0
DEEP = "<div>" * 100_000 + "deep" + "</div>" * 100_000


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/health":
            self._send(b"ok", "text/plain")
        elif self.path == "/deep":
            self._send(DEEP.encode(), "text/html; charset=utf-8")
        elif self.path == "/trickle":
            self._trickle()
        else:
            self._send(b"<p>no such page</p>", "text/html", status=404)

    def _send(self, body: bytes, content_type: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _trickle(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Connection", "close")
        self.end_headers()
        deadline = time.monotonic() + TRICKLE_FOR_S
        try:
            while time.monotonic() < deadline:
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(TRICKLE_S)
        except OSError:
            pass  # the core hung up, as it should
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    server.serve_forever()
