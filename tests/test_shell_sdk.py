"""extframework_sdk: request-JWT verification against a JWKS served on loopback."""

import json
import time

import jwt
import pytest

from extframework.services import tokens
from extframework_sdk import JWKSCache, RequestTokenError, RequestVerifier
from tests.support.keys import StrangerKeys

ISSUER = "http://core.test"


@pytest.fixture
def keys(app):
    return app.extensions["extframework.keys"]


@pytest.fixture
def jwks_server(stub_plugin, keys):
    def publish():
        stub_plugin.reply(
            "GET",
            "/.well-known/jwks.json",
            body=json.dumps(keys.jwks()),
            content_type="application/json",
        )

    publish()
    stub_plugin.publish = publish
    return stub_plugin


def mint(keys, **overrides):
    claims = {
        "issuer": ISSUER, "plugin_id": "notes", "user_id": "3", "name": "Ada",
        "email": "ada@example.com", "tenant": "default", "role": "viewer",
        "scopes": tokens.SCOPES_BY_ROLE["viewer"], "ttl_s": 60,
    }  # fmt: skip
    claims.update(overrides)
    return tokens.mint_request_jwt(keys, **claims)


def verifier(server, plugin_id="notes"):
    jwks = JWKSCache(server.url + "/.well-known/jwks.json", min_refresh_s=0)
    return RequestVerifier(ISSUER, plugin_id, jwks=jwks)


def test_a_valid_request_jwt_gives_the_caller(keys, jwks_server):
    caller = verifier(jwks_server).verify("Bearer " + mint(keys))
    assert (caller.user_id, caller.tenant, caller.role) == ("3", "default", "viewer")
    assert caller.can("views:read") and not caller.can("actions:write")


def test_the_jwks_is_cached(keys, jwks_server):
    check = verifier(jwks_server)
    for _ in range(3):
        check.verify("Bearer " + mint(keys))
    assert len(jwks_server.calls) == 1


def test_a_rotated_key_is_fetched_when_its_kid_appears(keys, jwks_server):
    check = verifier(jwks_server)
    check.verify("Bearer " + mint(keys))
    keys.rotate()
    jwks_server.publish()
    check.verify("Bearer " + mint(keys))
    assert len(jwks_server.calls) == 2


@pytest.mark.parametrize(
    "make",
    [
        lambda keys: None,
        lambda keys: "Basic abc",
        lambda keys: "Bearer not-a-jwt",
        lambda keys: "Bearer " + mint(keys, plugin_id="other-plugin"),
        lambda keys: "Bearer " + mint(keys, issuer="http://evil.test"),
        lambda keys: "Bearer " + mint(keys, ttl_s=-60),
        lambda keys: (
            "Bearer "
            + jwt.encode({"sub": "1", "aud": "notes", "iss": ISSUER}, None, algorithm="none")
        ),
        lambda keys: (
            "Bearer "
            + jwt.encode(
                {"sub": "1", "aud": "notes", "iss": ISSUER, "exp": int(time.time()) + 60},
                "s" * 32,
                algorithm="HS256",
                headers={"kid": keys.signing_key().kid},
            )
        ),
    ],
    ids=["missing", "basic", "garbage", "audience", "issuer", "expired", "alg-none", "hs256"],
)
def test_bad_tokens_are_refused(keys, jwks_server, make):
    with pytest.raises(RequestTokenError):
        verifier(jwks_server).verify(make(keys))


def test_a_token_signed_by_another_key_is_refused(tmp_path, keys, jwks_server):
    stranger = StrangerKeys("RS256")
    with pytest.raises(RequestTokenError):
        verifier(jwks_server).verify("Bearer " + mint(stranger))
