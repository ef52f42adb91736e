"""A tiny real plugin for tests: answers GET /health according to its mode; stdlib only.

    python health_server.py --port 9001 --mode healthy|hang|error|flap|rendezvous
        [--record FILE] [--flap ok,fail,...] [--rendezvous DIR --peers N]

Modes: ``healthy`` answers 200; ``hang`` never answers within any sane timeout; ``error``
answers 500; ``flap`` walks the --flap pattern (default ok,fail) one probe at a time;
``rendezvous`` answers 200 only once N servers sharing DIR have all been probed at the same
time (so it proves probes run concurrently without measuring time). ``POST /_mode`` with a
mode name as the body switches the mode at runtime. With --record every /health request
appends a line "<unix time>" to FILE. Any other GET answers a small HTML fragment.
"""

import argparse
import itertools
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MODES = ("healthy", "hang", "error", "flap", "rendezvous")


class State:
    def __init__(self, args: argparse.Namespace) -> None:
        self.mode = args.mode
        self.pattern = itertools.cycle(args.flap.split(","))
        self.record = Path(args.record) if args.record else None
        self.rendezvous = Path(args.rendezvous) if args.rendezvous else None
        self.peers = args.peers
        self.port = args.port
        self.lock = threading.Lock()
        self.stopping = threading.Event()


def make_handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def send(self, status: int, body: str, content_type: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", f"{content_type}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.split("?")[0].rstrip("/").endswith("/health"):
                self.health()
            else:
                self.send(200, f"<p>Hello from {self.path}</p>", "text/html")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            if self.path == "/_mode":
                if body.strip() not in MODES:
                    self.send(400, f"mode must be one of {MODES}")
                    return
                with state.lock:
                    state.mode = body.strip()
                self.send(200, state.mode)
            else:
                self.send(200, f"<p>{self.command} {self.path}</p>", "text/html")

        do_PUT = do_PATCH = do_DELETE = do_POST

        def health(self) -> None:
            if state.record:
                with state.lock, state.record.open("a") as fh:
                    fh.write(f"{time.time():.6f}\n")
            with state.lock:
                mode = state.mode
                step = next(state.pattern) if mode == "flap" else None
            if mode == "healthy" or step == "ok":
                self.send(200, "ok")
            elif mode == "error" or step == "fail":
                self.send(500, "simulated failure")
            elif mode == "hang":
                state.stopping.wait(120)
                self.send(200, "too late")
            elif mode == "rendezvous":
                self.meet()

        def meet(self) -> None:
            state.rendezvous.mkdir(parents=True, exist_ok=True)
            (state.rendezvous / str(state.port)).touch()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if len(list(state.rendezvous.iterdir())) >= state.peers:
                    self.send(200, "met")
                    return
                time.sleep(0.02)
            self.send(504, "peers never arrived")

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=MODES, default="healthy")
    parser.add_argument("--flap", default="ok,fail")
    parser.add_argument("--record")
    parser.add_argument("--rendezvous")
    parser.add_argument("--peers", type=int, default=2)
    args = parser.parse_args()
    state = State(args)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(state))
    server.daemon_threads = True
    try:
        server.serve_forever()
    finally:
        state.stopping.set()


if __name__ == "__main__":
    main()
