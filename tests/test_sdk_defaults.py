"""The SDKs keep the core's JWKS no longer than its max-age, as the guide tells every verifier
(issue 16 review): a key withdrawn in an emergency rotation (a leaked key) stops verifying
within a minute, not five."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from extframework.config import JWKS_MAX_AGE_S

ROOT = Path(__file__).resolve().parent.parent


def test_the_python_sdk_caches_the_jwks_for_its_max_age():
    # the worktree's SDK, whatever copy the environment installed
    spec = __import__("importlib.util").util.spec_from_file_location(
        "sdk_auth", ROOT / "sdk" / "extframework_sdk" / "auth.py"
    )
    auth = __import__("importlib.util").util.module_from_spec(spec)
    spec.loader.exec_module(auth)
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
