"""A plugin with one planted contract defect per mode, for the contract checker's tests.

    python broken_plugin.py --port P --mode MODE --jwks FILE --issuer URL --plugin-id ID

It serves under ``/plugin``: ``GET /plugin/health`` and two views, ``/plugin/items`` and
``/plugin/items/:id`` (which redirects to ``/plugin/items``, a redirect that stays under
``base_url``). ``good`` verifies the request JWT as the contract says (the key of its ``kid``
from the JWKS file, only that key's algorithm, ``iss``, ``aud``, ``exp``) and answers 401
otherwise. Each other mode plants one defect:

no-token (no Authorization accepted), forged-key (signature not checked), alg-none (unsigned
tokens accepted), hs256 (HS256 keyed with the public key's PEM accepted), expired (``exp`` not
checked), audience (``aud`` not checked), text-plain (views answer text/plain), slow (views
answer after 60 s), redirect-off (``/items`` redirects outside ``base_url``),
redirect-undeclared (to a path no view declares), redirect-loop (``/items`` to itself), no-health
(``/health`` is 404), script (the fragment carries ``<script>`` and ``onclick``).
"""

import argparse
import base64
import hashlib
import hmac
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PREFIX = "/plugin"
PAGE = (
    '<h2>Items</h2><ul><li><a href="items/1">One</a></li></ul>'
    '<form method="post" action="/items"><button type="submit">Add</button></form>'
)
SCRIPTED = PAGE + '<script>alert(1)</script><button onclick="steal()">Go</button>'


def load_keys(path: str) -> dict[str, tuple[str, object]]:
    keys = {}
    with open(path) as fh:
        jwks = json.load(fh)
    for jwk in jwks["keys"]:
        algorithm = jwt.get_algorithm_by_name(jwk["alg"])
        keys[jwk["kid"]] = (jwk["alg"], algorithm.from_jwk(json.dumps(jwk)))
    return keys


def _unpad(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verify(authorization: str, mode: str, keys: dict, issuer: str, plugin_id: str) -> bool:
    """Verify as the contract says, except for the one check ``mode`` leaves out."""
    if not authorization.startswith("Bearer "):
        return mode == "no-token"
    token = authorization.removeprefix("Bearer ").strip()
    try:
        header = jwt.get_unverified_header(token)
        algorithm, key = keys[header.get("kid")]
        options = {"verify_exp": mode != "expired", "verify_aud": mode != "audience"}
        claims_only = {**options, "verify_signature": False}
        alg = header.get("alg")
        if alg == "none" and mode == "alg-none":
            signed = True
        elif alg == "HS256" and mode == "hs256":
            pem = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
            signing_input, _, signature = token.rpartition(".")
            mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
            signed = hmac.compare_digest(mac, _unpad(signature))
        elif alg == algorithm and mode == "forged-key":
            signed = True
        else:
            jwt.decode(
                token, key, algorithms=[algorithm], audience=plugin_id, issuer=issuer,
                options=options,
            )  # fmt: skip
            return True
        jwt.decode(
            token, algorithms=[algorithm, "none", "HS256"], audience=plugin_id, issuer=issuer,
            options=claims_only,
        )  # fmt: skip
        return signed
    except (jwt.InvalidTokenError, KeyError, ValueError):
        return False


def make_handler(mode: str, keys: dict, issuer: str, plugin_id: str, port: int):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def send(self, status: int, body: str, content_type: str = "text/html", **headers):
            data = body.encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", f"{content_type}; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the checker gave up waiting, as it should

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == PREFIX + "/health":
                if mode == "no-health":
                    return self.send(404, "no health here", "text/plain")
                return self.send(200, '{"status": "ok"}', "application/json")
            if not path.startswith(PREFIX + "/items"):
                return self.send(404, "<p>Not found</p>")
            authorization = self.headers.get("Authorization", "")
            if not verify(authorization, mode, keys, issuer, plugin_id):
                return self.send(401, "<p>Not from the core</p>", WWW_Authenticate="Bearer")
            if path != PREFIX + "/items":
                return self.send(302, "", Location=PREFIX + "/items")
            if mode == "text-plain":
                return self.send(200, "Items: one", "text/plain")
            if mode == "slow":
                time.sleep(60)
            if mode == "redirect-off":
                return self.send(302, "", Location=f"http://127.0.0.1:{port}/elsewhere")
            if mode == "redirect-undeclared":
                return self.send(302, "", Location=PREFIX + "/nowhere")
            if mode == "redirect-loop":
                return self.send(302, "", Location=PREFIX + "/items")
            return self.send(200, SCRIPTED if mode == "script" else PAGE)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", default="good")
    parser.add_argument("--jwks", required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--plugin-id", required=True)
    args = parser.parse_args()
    keys = load_keys(args.jwks)
    handler = make_handler(args.mode, keys, args.issuer, args.plugin_id, args.port)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
