"""A real plugin for the takeover tests that says who it is and logs who called it; stdlib only.

    python named_server.py --port 9001 --name first --log FILE

``GET …/health`` answers 200. Any other request answers ``<p>served by NAME: METHOD PATH</p>``
and appends ``METHOD PATH BEARER`` to FILE, where BEARER is ``jwt`` when the request carried an
``Authorization: Bearer`` header and ``-`` otherwise: a test can tell where views and request
JWTs went.
"""

import argparse
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def make_handler(name: str, log: Path):
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def send(self, status: int, body: str, content_type: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", f"{content_type}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            path = self.path.split("?")[0]
            if self.command == "GET" and path.rstrip("/").endswith("/health"):
                self.send(200, "ok", "text/plain")
                return
            bearer = "jwt" if self.headers.get("Authorization", "").startswith("Bearer ") else "-"
            with lock, log.open("a") as fh:
                fh.write(f"{self.command} {path} {bearer}\n")
            self.send(200, f"<p>served by {name}: {self.command} {path}</p>", "text/html")

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.name, Path(args.log)))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
