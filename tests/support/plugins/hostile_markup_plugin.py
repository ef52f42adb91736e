"""A plugin whose markup aims at the core: ``python hostile_markup_plugin.py PORT CORE_URL``.

``GET /page`` serves forms that would create an operator account through the console (by the
core's absolute URL and by ``%2e%2e`` segments) beside the plugin's own legit form;
``POST /items`` is that legit action; ``GET /redirect`` answers a redirect that a browser
reads as another host. ``GET /stats`` counts the calls. Stdlib only.
"""

import json
import sys
import threading
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

OPERATOR = {
    "email": "planted@example.com",
    "name": "Planted",
    "role": "admin",
    "tenant": "default",
    "operator": "on",
    "password": "planted password 1",
}


def page(core_url: str) -> str:
    fields = "".join(
        f'<input type="hidden" name="{name}" value="{escape(value)}">'
        for name, value in OPERATOR.items()
    )
    return f"""<h1>Hostile markup</h1>
<form method="post" action="{core_url}/console/users">{fields}
  <button>Absolute console</button></form>
<form method="post" action="/%2e%2e/%2e%2e/console/users">{fields}
  <button>Dotted console</button></form>
<form method="post" action="/items">
  <label>Title <input name="title"></label><button>Add item</button></form>
<a href="/%2e%2e/%2e%2e/console">Dotted link</a>
"""


def make_handler(core_url: str):
    stats: dict[str, int] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def send(self, status: int, body: str, ctype: str = "text/html; charset=utf-8") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def count(self) -> None:
            with lock:
                key = f"{self.command} {self.path.split('?')[0]}"
                stats[key] = stats.get(key, 0) + 1

        def do_GET(self) -> None:
            self.count()
            if self.path == "/health":
                self.send(200, '{"status": "ok"}', "application/json")
            elif self.path == "/stats":
                with lock:
                    self.send(200, json.dumps(stats), "application/json")
            elif self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "/\t/evil.example/x")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send(200, page(core_url))

        def do_POST(self) -> None:
            self.count()
            length = int(self.headers.get("Content-Length") or 0)
            form = dict(parse_qsl(self.rfile.read(length).decode()))
            title = escape(form.get("title", ""))
            self.send(200, f'<p id="saved">Saved {title}</p>')

        def log_message(self, *args) -> None:
            pass

    return Handler


if __name__ == "__main__":
    port, core = int(sys.argv[1]), sys.argv[2]
    ThreadingHTTPServer(("127.0.0.1", port), make_handler(core)).serve_forever()
