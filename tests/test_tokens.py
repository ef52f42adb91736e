"""Minting and verifying the core's JWTs, and key rotation."""

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from extframework.db import database
from extframework.errors import Unauthorized
from extframework.models import SigningKeyRow
from extframework.services import signing_keys, tokens
from tests.support.keys import key_store

ISSUER = "http://core.test"
CLAIMS = {
    "issuer": ISSUER,
    "plugin_id": "acme-billing",
    "user_id": "7",
    "name": "Ada",
    "email": "ada@example.com",
    "tenant": "default",
    "role": "member",
    "scopes": ["views:read", "actions:write"],
}


@pytest.fixture(params=["ES256", "RS256"])  # the default, and the one still selectable
def store(app, request):
    return key_store(request.param, 60)


def stranger_key(algorithm: str):
    """A private key of the same kind that is not the core's."""
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_request_jwt_carries_exactly_the_spec_claims(store):
    token = tokens.mint_request_jwt(store, ttl_s=60, **CLAIMS)
    claims = tokens.verify(store, token, issuer=ISSUER, audience="acme-billing")
    assert set(claims) == {
        "iss",
        "aud",
        "sub",
        "name",
        "email",
        "tenant",
        "role",
        "scopes",
        "iat",
        "exp",
        "jti",
    }
    assert claims["exp"] - claims["iat"] == 60
    header = jwt.get_unverified_header(token)
    assert header["alg"] == store.algorithm and header["kid"] == store.signing_key().kid


def test_each_request_jwt_has_a_fresh_jti(store):
    first = jwt.decode(
        tokens.mint_request_jwt(store, ttl_s=60, **CLAIMS), options={"verify_signature": False}
    )
    second = jwt.decode(
        tokens.mint_request_jwt(store, ttl_s=60, **CLAIMS), options={"verify_signature": False}
    )
    assert first["jti"] != second["jti"]


def test_token_for_one_plugin_fails_at_another(store):
    token = tokens.mint_request_jwt(store, ttl_s=60, **CLAIMS)
    with pytest.raises(Unauthorized, match="(?i)audience"):
        tokens.verify(store, token, issuer=ISSUER, audience="other-plugin")


def test_token_signed_by_another_key_is_rejected(store):
    good = tokens.mint_request_jwt(store, ttl_s=60, **CLAIMS)
    stranger = stranger_key(store.algorithm)
    claims = jwt.decode(good, options={"verify_signature": False})
    forged = jwt.encode(
        claims, stranger, algorithm=store.algorithm, headers={"kid": store.signing_key().kid}
    )
    with pytest.raises(Unauthorized, match="Signature verification failed"):
        tokens.verify(store, forged, issuer=ISSUER, audience="acme-billing")


def test_token_with_unknown_kid_is_rejected(store):
    stranger = stranger_key(store.algorithm)
    forged = jwt.encode({"sub": "1"}, stranger, algorithm=store.algorithm, headers={"kid": "nope"})
    with pytest.raises(Unauthorized, match="not signed by a key of this core"):
        tokens.verify(store, forged, issuer=ISSUER, audience="acme-billing")


def test_expired_token_is_rejected(store):
    token = tokens.mint_request_jwt(store, ttl_s=-1, **CLAIMS)
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify(store, token, issuer=ISSUER, audience="acme-billing")


def test_alg_none_is_rejected(store):
    good = tokens.mint_request_jwt(store, ttl_s=60, **CLAIMS)
    claims = jwt.decode(good, options={"verify_signature": False})
    unsigned = (
        f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': store.signing_key().kid})}.{b64(claims)}."
    )
    with pytest.raises(Unauthorized, match="not allowed"):
        tokens.verify(store, unsigned, issuer=ISSUER, audience="acme-billing")


def test_hs256_signed_with_the_public_key_is_rejected(store):
    """The classic key-confusion attack: HMAC keyed with the public PEM."""
    good = tokens.mint_request_jwt(store, ttl_s=60, **CLAIMS)
    claims = jwt.decode(good, options={"verify_signature": False})
    public_pem = (
        store.signing_key()
        .private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = b64({"alg": "HS256", "typ": "JWT", "kid": store.signing_key().kid})
    signing_input = f"{header}.{b64(claims)}".encode()
    signature = (
        base64.urlsafe_b64encode(hmac.new(public_pem, signing_input, hashlib.sha256).digest())
        .rstrip(b"=")
        .decode()
    )
    forged = f"{signing_input.decode()}.{signature}"
    with pytest.raises(Unauthorized, match="not allowed"):
        tokens.verify(store, forged, issuer=ISSUER, audience="acme-billing")


def test_wrong_issuer_is_rejected(store):
    token = tokens.mint_request_jwt(store, ttl_s=60, **{**CLAIMS, "issuer": "http://elsewhere"})
    with pytest.raises(Unauthorized, match="issuer"):
        tokens.verify(store, token, issuer=ISSUER, audience="acme-billing")


def test_user_jwt_is_not_a_request_jwt_and_vice_versa(store):
    user_token = tokens.mint_user_jwt(
        store,
        issuer=ISSUER,
        user_id="7",
        email="a@b.c",
        tenant="default",
        role="member",
        ttl_s=60,
        generation=0,
    )
    assert tokens.verify_user_jwt(store, user_token, issuer=ISSUER)["sub"] == "7"
    with pytest.raises(Unauthorized):
        tokens.verify(store, user_token, issuer=ISSUER, audience="acme-billing")
    request_token = tokens.mint_request_jwt(store, ttl_s=60, **CLAIMS)
    with pytest.raises(Unauthorized):
        tokens.verify_user_jwt(store, request_token, issuer=ISSUER)


def test_rotation_keeps_the_old_public_key_until_its_tokens_expire(app):
    now = [1_900_000_000.0]
    store = key_store("RS256", 2, clock=lambda: now[0])
    old_token = tokens.mint_request_jwt(store, ttl_s=60, **CLAIMS)
    old_kid = store.signing_key().kid
    new_kid = store.rotate().kid  # no publish delay: signs at once
    assert new_kid != old_kid
    assert {k["kid"] for k in store.jwks()["keys"]} == {old_kid, new_kid}
    assert tokens.verify(store, old_token, issuer=ISSUER, audience="acme-billing")
    assert (
        jwt.get_unverified_header(tokens.mint_request_jwt(store, ttl_s=2, **CLAIMS))["kid"]
        == new_kid
    )
    now[0] += 2.5
    assert [k["kid"] for k in store.jwks()["keys"]] == [new_kid]
    store.rotate()
    with database.connection_context():  # withdrawn: its private key is gone from the row
        assert SigningKeyRow.get(SigningKeyRow.kid == old_kid).private_key is None


def test_another_process_rotation_is_seen_without_restart(app):
    store = key_store("RS256")
    other_process_view = key_store("RS256")
    first = other_process_view.signing_key().kid
    new_kid = store.rotate().kid
    assert other_process_view.signing_key().kid == new_kid != first


def test_another_host_verifies_a_token_of_a_key_it_has_not_read_yet(app):
    """A copy re-reads every second; a token with an unknown kid makes it re-read at once."""
    host_a = key_store("ES256")
    host_b = key_store("ES256", reload_s=3600)
    assert host_b.signing_key().kid == host_a.signing_key().kid  # B has read the keys once
    host_a.rotate(now=True)  # an emergency rotation: A signs with the new key at once
    token = tokens.mint_request_jwt(host_a, ttl_s=60, **CLAIMS)
    assert tokens.verify(host_b, token, issuer=ISSUER, audience="acme-billing")["sub"] == "7"


def test_private_keys_are_sealed_under_the_secret_key(app):
    store = key_store("ES256")
    kid = store.signing_key().kid
    with database.connection_context():
        sealed = SigningKeyRow.get(SigningKeyRow.kid == kid).private_key
    assert sealed.startswith(signing_keys.SEAL_PREFIX) and "PRIVATE KEY" not in sealed
    with pytest.raises(signing_keys.KeysUnreadable, match="SECRET_KEY_FALLBACKS"):
        key_store("ES256", secret="another installation's secret").signing_key()


def test_a_secret_rotation_keeps_the_keys_and_seals_them_again(app):
    old = key_store("ES256", secret="the old secret")
    kid = old.signing_key().kid
    token = tokens.mint_request_jwt(old, ttl_s=60, **CLAIMS)
    rotated = key_store("ES256", secret="the new secret", previous=("the old secret",))
    assert tokens.verify(rotated, token, issuer=ISSUER, audience="acme-billing")["sub"] == "7"
    # ensure_key (every start) sealed it again: the new secret alone now opens it.
    assert key_store("ES256", secret="the new secret").signing_key().kid == kid


def test_es256_is_supported(app):
    store = key_store("ES256")
    token = tokens.mint_request_jwt(store, ttl_s=60, **CLAIMS)
    assert tokens.verify(store, token, issuer=ISSUER, audience="acme-billing")["sub"] == "7"
    assert store.jwks()["keys"][0]["kty"] == "EC"
