"""@extframework/sdk (sdk-node/) against the real core, driven by tests/support/sdk_node_driver.mjs:
verification defaults and the JWKS refetch policy, storage pages, If-Match and batches, the
409s registerOrUpdate tells apart, and token rotation (issue 16)."""

import json
import subprocess
import time
import uuid

import jwt
import pytest

from extframework.services import tokens
from tests.support.processes import ROOT
from tests.support.registry_fixtures import ITEMS_SCHEMA, sample_manifest

DRIVER = ROOT / "tests" / "support" / "sdk_node_driver.mjs"


def run(scenario: str, **args) -> dict:
    result = subprocess.run(
        ["node", str(DRIVER)],
        input=json.dumps({"scenario": scenario, **args}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def keys(app):
    return app.extensions["extframework.keys"]


def mint(keys, issuer, **overrides) -> str:
    claims = {
        "issuer": issuer, "plugin_id": "notes", "user_id": "3", "name": "Ada",
        "email": "ada@example.com", "tenant": "default", "role": "member",
        "scopes": tokens.SCOPES_BY_ROLE["member"], "ttl_s": 60,
    }  # fmt: skip
    claims.update(overrides)
    return "Bearer " + tokens.mint_request_jwt(keys, **claims)


def signed(keys, claims: dict, **header) -> str:
    key = keys.signing_key()
    headers = {"kid": key.kid, **header}
    return "Bearer " + jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers=headers)


def bare_claims(issuer: str, **changes) -> dict:
    now = int(time.time())
    claims = {
        "iss": issuer, "aud": "notes", "sub": "3", "tenant": "default", "role": "viewer",
        "scopes": ["views:read"], "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex,
    }  # fmt: skip
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def test_the_verifier_accepts_the_core_s_token_and_refuses_every_forgery(keys, live_server):
    key = keys.signing_key()
    headers = {
        "valid": mint(keys, live_server),
        "skew": mint(keys, live_server, ttl_s=-2),
        "expired": mint(keys, live_server, ttl_s=-30),
        "audience": mint(keys, live_server, plugin_id="other"),
        "issuer": mint(keys, "http://evil.test"),
        "no-exp": signed(keys, bare_claims(live_server, exp=None)),
        "no-iss": signed(keys, bare_claims(live_server, iss=None)),
        "no-aud": signed(keys, bare_claims(live_server, aud=None)),
        "alg-none": "Bearer " + jwt.encode(bare_claims(live_server), None, algorithm="none"),
        "hs256": "Bearer "
        + jwt.encode(
            bare_claims(live_server), "s" * 32, algorithm="HS256", headers={"kid": key.kid}
        ),
        "missing": "",
        "basic": "Basic abc",
    }
    out = run("verify", core=live_server, plugin_id="notes", headers=list(headers.values()))
    assert out["leeway"] == 5
    results = dict(zip(headers, out["results"], strict=True))
    assert results.pop("valid")["ok"] == {"userId": "3", "tenant": "default", "canWrite": True}
    assert "ok" in results.pop("skew")
    for name, result in results.items():
        assert result.get("error", {}).get("name") == "RequestTokenError", (name, result)


@pytest.fixture
def jwks_server(stub_plugin, keys):
    stub_plugin.reply(
        "GET",
        "/.well-known/jwks.json",
        body=json.dumps(keys.jwks()),
        content_type="application/json",
    )
    return stub_plugin


@pytest.mark.parametrize("jwks_status", [200, 503])
def test_a_flood_of_unknown_kids_fetches_the_jwks_at_most_once(keys, jwks_server, jwks_status):
    issuer = "http://core.test"
    if jwks_status != 200:
        jwks_server.reply("GET", "/.well-known/jwks.json", status=jwks_status, body="down")
    flood = [signed(keys, bare_claims(issuer), kid=uuid.uuid4().hex) for _ in range(30)]
    out = run(
        "verify",
        core=issuer,
        plugin_id="notes",
        jwks_url=jwks_server.url + "/.well-known/jwks.json",
        cooldown_ms=60000,
        headers=flood,
    )
    assert all(r["error"]["name"] == "RequestTokenError" for r in out["results"])
    assert len(jwks_server.calls_to("GET", "/.well-known/jwks.json")) == 1


@pytest.fixture
def failing_jwks(jwks_server, keys):
    """A JWKS that answers once, then fails: the core is unreachable from then on."""
    from tests.support.shell_fixtures import Reply

    class OnceThenDown(dict):
        def get(self, key, default=None):
            served = len(jwks_server.calls_to("GET", "/.well-known/jwks.json"))
            if key == ("GET", "/.well-known/jwks.json") and served > 1:
                return Reply(503, "down")
            return super().get(key, default)

    jwks_server.replies = OnceThenDown(jwks_server.replies)
    return jwks_server


def test_a_cached_key_keeps_verifying_while_the_jwks_fails(keys, failing_jwks):
    issuer = "http://core.test"
    genuine = signed(keys, bare_claims(issuer))
    forged = signed(keys, bare_claims(issuer), kid=uuid.uuid4().hex)
    out = run(
        "verify",
        core=issuer,
        plugin_id="notes",
        jwks_url=failing_jwks.url + "/.well-known/jwks.json",
        cooldown_ms=60000,
        cache_max_age_ms=0,  # every call refetches: the second one fails
        headers=[genuine, forged, genuine, forged, genuine],
    )
    assert ["ok" in r for r in out["results"]] == [True, False, True, False, True]
    assert len(failing_jwks.calls_to("GET", "/.well-known/jwks.json")) == 2


def test_storage_pages_if_match_and_batch(live_server, make_storage_plugin):
    _, token = make_storage_plugin()
    out = run("storage", core=live_server, token=token, collection="notes", tenant="default")
    assert out["pages"] == [[0, 1], [2, 3], [4]]
    assert out["iterated"] == [4, 3, 2, 1, 0]
    stale = out["stale"]["error"]
    assert (stale["name"], stale["status"], stale["kind"]) == (
        "StorageError",
        412,
        "stale-if-match",
    )
    assert (out["batch"]["error"]["status"], out["batch"]["error"]["index"]) == (404, 1)
    assert len(out["good"]) == 2 and "deleted" in out["good"][1]
    invalid = out["invalid"]["error"]
    assert invalid["kind"] == "validation-failed"
    assert {e["pointer"] for e in invalid["errors"]} == {"/title", "/count"}


def test_register_or_update_tells_the_409s_apart(
    tmp_path, live_server, enrolment_key, healthy_plugin_server
):
    base = healthy_plugin_server.url
    manifest = sample_manifest(base_url=base)
    narrowed = {**ITEMS_SCHEMA, "required": ["title", "count"]}
    manifests = [
        manifest,  # registers
        manifest,  # a restart: nothing to do
        sample_manifest(base_url=base, version="2.0.0", data_schemas=[
            {"collection": "items", "schema": narrowed}
        ]),
        sample_manifest(base_url=base, name="Renamed without a new version"),
        sample_manifest(base_url=base, version="0.9.0"),
    ]  # fmt: skip
    token_file = str(tmp_path / "token")
    out = run(
        "enrol",
        core=live_server,
        manifests=manifests,
        token_file=token_file,
        enrolment_key=enrolment_key,
    )
    token = out[0]["ok"]
    assert out[1] == {"ok": token}
    assert [r["error"]["kind"] for r in out[2:]] == [
        "breaking-change",
        "version-manifest-changed",
        "version-not-higher",
    ]
    assert {r["error"]["status"] for r in out[2:]} == {409}
    taken = run(
        "enrol",
        core=live_server,
        manifests=[manifest],
        token_file=str(tmp_path / "other"),
        enrolment_key=enrolment_key,
    )
    assert (taken[0]["error"]["status"], taken[0]["error"]["kind"]) == (409, "plugin-id-taken")


def test_rotate_token_replaces_the_file_and_storage_picks_it_up(
    tmp_path, live_server, make_storage_plugin
):
    plugin_id, token = make_storage_plugin()
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    out = run(
        "rotate",
        core=live_server,
        plugin_id=plugin_id,
        token_file=str(token_file),
        tenant="default",
        collection="notes",
    )
    assert out["fresh"] != token and token_file.read_text().strip() == out["fresh"]
    assert out["created"] == "after rotation"
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
