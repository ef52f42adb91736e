"""A plugin whose only view is an XSS payload; run as ``python hostile_plugin.py PORT``.

Each payload would set ``window.__pwned`` if it ran. Served directly, they do run (the
browser test checks that too, so the check can fail); through the shell none may.
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAYLOAD = """<h1>Hostile view</h1>
<script>window.__pwned = "script";</script>
<img id="bad-img" src="/missing.png" onerror="window.__pwned = 'onerror'">
<svg><image href="/missing.png" onerror="window.__pwned = 'svg'"></image></svg>
<a id="js-link" href="javascript:window.__pwned = 'javascript'">click me</a>
<form action="javascript:window.__pwned = 'form'"><button id="js-submit">submit me</button></form>
<div onmouseover="window.__pwned = 'onmouseover'">hover me</div>
<iframe src="javascript:parent.__pwned = 'iframe'"></iframe>
<p>end of payload</p>
"""


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/health":
            body, ctype = b'{"status": "ok"}', "application/json"
        else:
            body, ctype = PAYLOAD.encode(), "text/html; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
