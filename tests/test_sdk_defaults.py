"""The SDKs keep the core's JWKS no longer than its max-age, as the guide tells every verifier
(issue 16 review): a key withdrawn in an emergency rotation (a leaked key) stops verifying
within a minute, not five."""

import importlib.util
import json
import shutil
import subprocess
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from threading import Thread

import pytest

from extframework.config import JWKS_MAX_AGE_S

ROOT = Path(__file__).resolve().parent.parent


def sdk_auth():
    """The worktree's SDK module, whatever copy the environment installed."""
    spec = importlib.util.spec_from_file_location(
        "sdk_auth", ROOT / "sdk" / "extframework_sdk" / "auth.py"
    )
    auth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(auth)
    return auth


def test_the_python_sdk_caches_the_jwks_for_its_max_age():
    auth = sdk_auth()
    assert auth.JWKSCache("http://127.0.0.1:9/jwks.json").ttl_s == JWKS_MAX_AGE_S


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_the_node_sdk_caches_the_jwks_for_its_max_age():
    script = (
        "import('./verify.mjs').then(m => console.log(JSON.stringify("
        "{maxAgeMs: m.DEFAULT_CACHE_MAX_AGE_MS ?? null})))"
    )
    out = subprocess.run(
        ["node", "-e", script], cwd=ROOT / "sdk-node", capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["maxAgeMs"] == JWKS_MAX_AGE_S * 1000


@pytest.mark.parametrize(
    "jwks",
    [b"[]", b'{"keys": {"kid": "k"}}', b'{"keys": [{"kid": "k", "alg": "ES256", "kty": "EC"}]}'],
    ids=["a list", "keys not a list", "a broken key"],
)
def test_a_malformed_jwks_is_a_refusal_not_a_crash(jwks):
    """The plugin answers 401 (RequestTokenError), not 500, whatever the JWKS URL serves."""
    auth = sdk_auth()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(jwks)))
            self.end_headers()
            self.wfile.write(jwks)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        cache = auth.JWKSCache(f"http://127.0.0.1:{server.server_port}/jwks.json")
        with pytest.raises(auth.RequestTokenError):
            cache.key("k")
    finally:
        server.shutdown()
        server.server_close()
