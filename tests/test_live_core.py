"""The real core under gunicorn on a loopback port, and a JWT verified outside Python."""

import json
import re
import shutil
import subprocess

import pytest
import requests

from extframework.services import tokens
from tests.support.keys import CoreKeys
from tests.support.processes import ROOT, flask_cli, start_core

NODE_DIR = ROOT / "tests" / "node"
PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("live")
    server = start_core(tmp_path)
    instance = tmp_path / "instance"
    result = flask_cli(
        instance,
        "users",
        "create",
        "ops@example.com",
        "--role",
        "admin",
        "--operator",
        env={"EXTFW_PASSWORD": PASSWORD},
    )
    assert result.returncode == 0, result.stderr
    server.instance = instance
    yield server
    server.stop()


def csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_browser_style_login_over_http(core):
    session = requests.Session()
    login_page = session.get(f"{core.url}/login")
    assert login_page.status_code == 200
    response = session.post(
        f"{core.url}/login",
        data={
            "email": "ops@example.com",
            "password": PASSWORD,
            "csrf_token": csrf_token(login_page.text),
        },
        allow_redirects=False,
    )
    assert response.status_code == 302
    home = session.get(f"{core.url}/")
    assert home.status_code == 200 and "Welcome" in home.text
    assert session.get(f"{core.url}/api/auth/me").json()["email"] == "ops@example.com"


def test_login_without_csrf_token_is_refused(core):
    response = requests.post(
        f"{core.url}/login",
        data={"email": "ops@example.com", "password": PASSWORD},
        allow_redirects=False,
    )
    assert response.status_code == 400
    assert "CSRF" in response.text


def test_user_jwt_over_http(core):
    token = requests.post(
        f"{core.url}/api/auth/token", json={"email": "ops@example.com", "password": PASSWORD}
    ).json()["access_token"]
    me = requests.get(f"{core.url}/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["operator"] is True


def node_verify(core, token: str, audience: str) -> dict:
    result = subprocess.run(
        ["node", "verify_jwt.mjs", f"{core.url}/.well-known/jwks.json", core.url, audience, token],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def node_ready():
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "jose").exists():
        pytest.fail("node and tests/node/node_modules/jose are needed: run `make test`")


def mint(core, **overrides) -> str:
    store = CoreKeys(core.instance)
    claims = {
        "issuer": core.url,
        "plugin_id": "acme-billing",
        "user_id": "1",
        "name": "Ops",
        "email": "ops@example.com",
        "tenant": "default",
        "role": "admin",
        "scopes": tokens.SCOPES_BY_ROLE["admin"],
        "ttl_s": 60,
    }
    return tokens.mint_request_jwt(store, **{**claims, **overrides})


def test_node_jose_verifies_a_request_jwt_against_the_jwks(core, node_ready):
    result = node_verify(core, mint(core), "acme-billing")
    assert result["ok"], result
    assert result["payload"]["aud"] == "acme-billing"
    assert result["payload"]["iss"] == core.url
    assert result["payload"]["role"] == "admin"
    assert result["header"]["alg"] == "ES256" and result["header"]["kid"]


@pytest.mark.parametrize(
    ("overrides", "audience", "code"),
    [
        ({}, "other-plugin", "ERR_JWT_CLAIM_VALIDATION_FAILED"),
        ({"issuer": "http://evil.test"}, "acme-billing", "ERR_JWT_CLAIM_VALIDATION_FAILED"),
        ({"ttl_s": -5}, "acme-billing", "ERR_JWT_EXPIRED"),
    ],
)
def test_node_jose_rejects_wrong_audience_issuer_and_expired(
    core, node_ready, overrides, audience, code
):
    result = node_verify(core, mint(core, **overrides), audience)
    assert result["ok"] is False
    assert result["code"] == code


def test_node_jose_rejects_a_tampered_token(core, node_ready):
    header, payload, signature = mint(core).split(".")
    tampered = f"{header}.{payload[:-4]}AAAA.{signature}"
    result = node_verify(core, tampered, "acme-billing")
    assert result["ok"] is False
