"""A plugin that is slow on purpose, for the deadline tests; stdlib only.

    python slow_plugin.py --port 9001 [--health ok|trickle|hang] [--step 0.3]

Routes (GET, or POST as a migration handler would call them):
  /health           per --health (``POST /_health`` with a mode as the body switches it)
  /fast             a small fragment, at once
  /trickle-status   the status line, one byte per --step seconds
  /trickle-headers  the status line at once, then the headers a byte per step
  /trickle-body     status and headers at once (Content-Length 400), the body a byte per step
  /hang, /img/<n>   read the request and never answer (a slow page, a slow image)
  /stats            JSON: ``open`` slow answers in progress now, ``max_open``, ``calls`` per
                    path, and ``ports``: [path, client port] per call (a reused connection
                    shows the same port again)

A slow answer ends as soon as the client closes its connection, so ``open`` returning to
0 shows that the caller gave up and closed the socket.
"""

import argparse
import json
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HEALTH_MODES = ("ok", "trickle", "hang")
BODY_BYTES = 400
HANG_S = 120


class State:
    def __init__(self, health: str, step: float) -> None:
        self.health = health
        self.step = step
        self.lock = threading.Lock()
        self.slow: set[socket.socket] = set()  # connections with a slow answer in progress
        self.max_open = 0
        self.calls: dict[str, int] = {}
        self.ports: list[tuple[str, int]] = []

    def live(self) -> int:
        """Count the slow answers whose client is still connected.

        Checked now rather than when each handler notices: a client that closed its socket
        before opening the next connection is never counted twice, however late this
        server's threads run.
        """
        return sum(not closed(conn) for conn in self.slow)


def closed(conn: socket.socket, wait_s: float = 0.0) -> bool:
    """Wait up to ``wait_s``; True as soon as the client has closed its end."""
    try:
        readable, _, _ = select.select([conn], [], [], wait_s)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def make_handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            self.route(self.path.split("?")[0])

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode(errors="replace").strip()
            if self.path != "/_health":
                return self.route(self.path.split("?")[0])
            if body not in HEALTH_MODES:
                return self.answer(400, f"POST /_health with one of {HEALTH_MODES}")
            state.health = body
            self.answer(200, body)

        def route(self, path: str) -> None:
            with state.lock:
                state.calls[path] = state.calls.get(path, 0) + 1
                state.ports.append((path, self.client_address[1]))
            if path == "/stats":
                return self.answer(200, json.dumps(self.stats()), "application/json")
            if path == "/fast":
                return self.answer(200, "<p>fast</p>", "text/html; charset=utf-8")
            if path == "/health" and state.health == "ok":
                return self.answer(200, "ok")  # the monitor's probes are no slow answers
            slow = {
                "/health": self.health,
                "/trickle-status": lambda: self.trickle(self.head(), 0),
                "/trickle-headers": lambda: self.trickle(self.head(), len("HTTP/1.1 200 OK\r\n")),
                "/trickle-body": lambda: self.trickle(self.head() + b"x" * BODY_BYTES, -1),
                "/hang": self.hang,
            }.get(path, self.hang if path.startswith("/img/") else None)
            if slow is None:
                return self.answer(404, "<p>no such page</p>", "text/html")
            with state.lock:
                state.slow.add(self.connection)
                state.max_open = max(state.max_open, state.live())
            try:
                slow()
            finally:
                with state.lock:
                    state.slow.discard(self.connection)

        def stats(self) -> dict:
            with state.lock:
                return {
                    "open": state.live(),
                    "max_open": state.max_open,
                    "calls": dict(state.calls),
                    "ports": list(state.ports),
                }

        def answer(self, status: int, body: str, content_type: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def health(self) -> None:
            if state.health == "trickle":
                self.trickle(self.head(), 0)
            else:
                self.hang()

        def head(self) -> bytes:
            return (
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                f"Content-Length: {BODY_BYTES}\r\nX-Padding: {'p' * 100}\r\n\r\n"
            ).encode()

        def trickle(self, data: bytes, at_once: int) -> None:
            """Send ``data``: its first ``at_once`` bytes (-1: up to the body) now, the rest a
            byte per step, until done or the client has gone."""
            if at_once < 0:
                at_once = data.index(b"\r\n\r\n") + 4
            self.close_connection = True
            try:
                self.wfile.write(data[:at_once])
                for i in range(at_once, len(data)):
                    if self.client_gone(state.step):
                        return
                    self.wfile.write(data[i : i + 1])
            except OSError:  # the client closed the connection: it gave up, as it should
                return

        def hang(self) -> None:
            self.close_connection = True
            self.client_gone(HANG_S)

        def client_gone(self, wait_s: float) -> bool:
            return closed(self.connection, wait_s)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--health", choices=HEALTH_MODES, default="ok")
    parser.add_argument("--step", type=float, default=0.3)
    args = parser.parse_args()
    server = ThreadingHTTPServer(
        ("127.0.0.1", args.port), make_handler(State(args.health, args.step))
    )
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
