"""extframework_sdk against the real core: verification defaults, the JWKS refetch policy,
cursor iteration, and the 409s register_or_update tells apart (issue 16)."""

import json
import time
import uuid

import jwt
import pytest
import requests

from extframework.services import tokens
from extframework_sdk import (
    DEFAULT_LEEWAY_S,
    EnrolmentError,
    JWKSCache,
    RequestTokenError,
    RequestVerifier,
    StorageClient,
    StorageError,
    register_or_update,
)
from tests.support.registry_fixtures import sample_manifest


@pytest.fixture
def keys(app):
    return app.extensions["extframework.keys"]


def mint(keys, issuer, **overrides):
    claims = {
        "issuer": issuer, "plugin_id": "notes", "user_id": "3", "name": "Ada",
        "email": "ada@example.com", "tenant": "default", "role": "viewer",
        "scopes": tokens.SCOPES_BY_ROLE["viewer"], "ttl_s": 60,
    }  # fmt: skip
    claims.update(overrides)
    return tokens.mint_request_jwt(keys, **claims)


def signed(keys, claims: dict, **header) -> str:
    """A token signed with the core's own key, with exactly these claims."""
    key = keys.signing_key()
    return jwt.encode(
        claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid, **header}
    )


# --- verification: defaults against the core's real JWKS -----------------------------------


def test_the_real_core_s_request_jwt_verifies_with_the_defaults(keys, live_server):
    caller = RequestVerifier(live_server, "notes").verify("Bearer " + mint(keys, live_server))
    assert (caller.user_id, caller.tenant) == ("3", "default")


def test_the_default_leeway_forgives_a_few_seconds_of_clock_skew_and_no_more(keys, live_server):
    check = RequestVerifier(live_server, "notes")
    assert check.leeway_s == DEFAULT_LEEWAY_S == 5
    check.verify("Bearer " + mint(keys, live_server, ttl_s=-2))  # expired 2 s ago: skew
    with pytest.raises(RequestTokenError, match="expired"):
        check.verify("Bearer " + mint(keys, live_server, ttl_s=-30))


@pytest.mark.parametrize("missing", ["iss", "aud", "exp"])
def test_a_token_without_iss_aud_or_exp_is_refused_even_when_signed_by_the_core(
    keys, live_server, missing
):
    now = int(time.time())
    claims = {
        "iss": live_server, "aud": "notes", "sub": "3", "tenant": "default", "role": "viewer",
        "scopes": ["views:read"], "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex,
    }  # fmt: skip
    del claims[missing]
    with pytest.raises(RequestTokenError):
        RequestVerifier(live_server, "notes").verify("Bearer " + signed(keys, claims))


def test_a_token_whose_header_names_another_algorithm_than_its_key_is_refused(keys, live_server):
    token = mint(keys, live_server)
    key = keys.signing_key()
    other = "RS256" if key.algorithm == "ES256" else "ES256"
    header, payload, signature = token.split(".")
    forged_header = jwt.utils.base64url_encode(
        json.dumps({"alg": other, "kid": key.kid, "typ": "JWT"}).encode()
    ).decode()
    with pytest.raises(RequestTokenError, match="algorithm"):
        RequestVerifier(live_server, "notes").verify(
            f"Bearer {forged_header}.{payload}.{signature}"
        )


# --- the JWKS refetch policy: an unknown kid refetches, a flood of them does not -------------


@pytest.fixture
def jwks_server(stub_plugin, keys):
    stub_plugin.reply(
        "GET",
        "/.well-known/jwks.json",
        body=json.dumps(keys.jwks()),
        content_type="application/json",
    )
    return stub_plugin


def unknown_kid_token(keys, issuer) -> str:
    now = int(time.time())
    claims = {"iss": issuer, "aud": "notes", "sub": "1", "iat": now, "exp": now + 60}
    return signed(keys, claims, kid=uuid.uuid4().hex)


def test_a_flood_of_unknown_kids_fetches_the_jwks_once_per_refresh_interval(keys, jwks_server):
    jwks = JWKSCache(jwks_server.url + "/.well-known/jwks.json", min_refresh_s=60)
    check = RequestVerifier("http://core.test", "notes", jwks=jwks)
    check.verify("Bearer " + mint(keys, "http://core.test"))
    for _ in range(50):
        with pytest.raises(RequestTokenError, match="not in the core's JWKS"):
            check.verify("Bearer " + unknown_kid_token(keys, "http://core.test"))
    assert len(jwks_server.calls) == 1


def test_a_flood_of_unknown_kids_while_the_jwks_fails_is_rate_limited_too(keys, jwks_server):
    jwks_server.reply("GET", "/.well-known/jwks.json", status=503, body="down")
    jwks = JWKSCache(jwks_server.url + "/.well-known/jwks.json", min_refresh_s=60)
    check = RequestVerifier("http://core.test", "notes", jwks=jwks)
    for _ in range(50):
        with pytest.raises(RequestTokenError):
            check.verify("Bearer " + unknown_kid_token(keys, "http://core.test"))
    assert len(jwks_server.calls) == 1


def test_a_cached_key_keeps_verifying_while_the_jwks_fails(keys, jwks_server):
    jwks = JWKSCache(jwks_server.url + "/.well-known/jwks.json", min_refresh_s=0)
    check = RequestVerifier("http://core.test", "notes", jwks=jwks)
    check.verify("Bearer " + mint(keys, "http://core.test"))
    jwks_server.reply("GET", "/.well-known/jwks.json", status=503, body="down")
    with pytest.raises(RequestTokenError):
        check.verify("Bearer " + unknown_kid_token(keys, "http://core.test"))
    check.verify("Bearer " + mint(keys, "http://core.test"))
    assert len(jwks_server.calls) == 2


# --- storage: a generator over the cursor's pages -------------------------------------------


class CountingSession(requests.Session):
    def __init__(self):
        super().__init__()
        self.queries = 0

    def request(self, method, url, *args, **kwargs):
        self.queries += method == "GET"
        return super().request(method, url, *args, **kwargs)


def test_pages_follow_the_cursor_lazily_and_iterate_yields_every_document(
    live_server, make_storage_plugin
):
    _, token = make_storage_plugin()
    session = CountingSession()
    storage = StorageClient(live_server, token, session=session)
    for n in range(5):
        storage.create("notes", {"title": f"n{n}", "count": n}, tenant="default")
    pages = storage.pages("notes", tenant="default", sort="count", limit=2)
    assert session.queries == 0  # a generator: nothing asked yet
    first = next(pages)
    assert [d["data"]["count"] for d in first] == [0, 1] and session.queries == 1
    assert [len(page) for page in pages] == [2, 1] and session.queries == 3
    every = storage.iterate("notes", tenant="default", sort="-count", limit=2)
    assert [d["data"]["count"] for d in every] == [4, 3, 2, 1, 0]


def test_if_match_on_patch_refuses_a_stale_version(live_server, make_storage_plugin):
    _, token = make_storage_plugin()
    storage = StorageClient(live_server, token)
    doc = storage.create("notes", {"title": "a"}, tenant="default")
    storage.patch("notes", doc["id"], {"count": 1}, tenant="default", if_match=str(doc["version"]))
    with pytest.raises(StorageError) as stale:
        storage.patch(
            "notes", doc["id"], {"count": 2}, tenant="default", if_match=str(doc["version"])
        )
    assert (stale.value.status, stale.value.kind) == (412, "stale-if-match")


# --- register_or_update: a taken plugin_id is its own 409 ------------------------------------


def test_registering_a_taken_plugin_id_raises_plugin_id_taken(
    tmp_path, live_server, enrolment_key, healthy_plugin_server
):
    manifest = sample_manifest(base_url=healthy_plugin_server.url)
    register_or_update(
        live_server, manifest, token_file=tmp_path / "a", enrolment_key=enrolment_key, attempts=1
    )
    with pytest.raises(EnrolmentError) as taken:
        register_or_update(
            live_server,
            manifest,
            token_file=tmp_path / "b",
            enrolment_key=enrolment_key,
            attempts=1,
        )
    assert (taken.value.status, taken.value.kind) == (409, "plugin-id-taken")
