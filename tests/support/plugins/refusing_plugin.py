"""A plugin with the JWKS bug the fault panel's hint is about: ``refusing_plugin.py PORT CORE_URL``.

It fetches the core's JWKS once and never again, so after a signing-key rotation it refuses
every request JWT: ``401`` as ``text/plain`` with ``WWW-Authenticate: Bearer
error="invalid_token"`` naming the unknown ``kid``. It also refuses viewers (``403``,
``text/plain``) although its manifest lets them in. ``GET /notes`` is its view, ``GET /health``
answers 200, ``GET /_calls`` lists each call's path, ``X-Request-ID`` and answer. Plugin id
``refusing``. PyJWT and the standard library only.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.request import urlopen

import jwt

PLUGIN_ID = "refusing"


def main(port: int, core_url: str) -> None:
    keys: dict[str, jwt.PyJWK] = {}
    calls: list[dict] = []
    lock = threading.Lock()

    def verify(authorization: str) -> dict:
        token = authorization.removeprefix("Bearer ")
        with lock:
            if not keys:  # once, and never again: the bug
                with urlopen(core_url + "/.well-known/jwks.json", timeout=5) as answer:
                    for data in json.load(answer)["keys"]:
                        keys[data["kid"]] = jwt.PyJWK(data)
        kid = jwt.get_unverified_header(token).get("kid", "")
        if kid not in keys:
            raise jwt.InvalidTokenError(f"unknown kid {kid}")
        key = keys[kid]
        return jwt.decode(
            token, key.key, algorithms=[key.algorithm_name], audience=PLUGIN_ID, issuer=core_url
        )

    class Handler(BaseHTTPRequestHandler):
        def answer(self, status: int, body: str, ctype: str, headers: dict | None = None) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            if self.path == "/notes":
                with lock:
                    request_id = self.headers.get("X-Request-ID", "")
                    calls.append({"path": self.path, "request_id": request_id, "status": status})

        def do_GET(self) -> None:
            if self.path == "/health":
                return self.answer(200, '{"status": "ok"}', "application/json")
            if self.path == "/_calls":
                with lock:
                    return self.answer(200, json.dumps(calls), "application/json")
            try:
                claims = verify(self.headers.get("Authorization", ""))
            except jwt.InvalidTokenError as exc:
                challenge = f'Bearer error="invalid_token", error_description="{exc}"'
                return self.answer(
                    401, f"invalid token: {exc}", "text/plain", {"WWW-Authenticate": challenge}
                )
            if claims["role"] == "viewer":
                return self.answer(403, "members only", "text/plain")
            self.answer(200, f"<p>Notes for {claims['name']}</p>", "text/html; charset=utf-8")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2].rstrip("/"))
