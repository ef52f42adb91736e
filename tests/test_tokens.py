"""Minting and verifying the core's JWTs, and key rotation."""

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from extframework.errors import Unauthorized
from extframework.services import tokens

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
def store(tmp_path, request):
    store = tokens.KeyStore(tmp_path / "keys", request.param, max_token_ttl_s=60)
    store.ensure_key()
    return store


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


def test_rotation_keeps_the_old_public_key_until_its_tokens_expire(tmp_path):
    now = [1_900_000_000.0]
    store = tokens.KeyStore(tmp_path / "keys", "RS256", max_token_ttl_s=2, clock=lambda: now[0])
    store.ensure_key()
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
    assert not (tmp_path / "keys" / f"{old_kid}.pem").exists()


def test_another_process_rotation_is_seen_without_restart(tmp_path):
    store = tokens.KeyStore(tmp_path / "keys", "RS256", max_token_ttl_s=60)
    store.ensure_key()
    other_process_view = tokens.KeyStore(tmp_path / "keys", "RS256", max_token_ttl_s=60)
    first = other_process_view.signing_key().kid
    new_kid = store.rotate().kid
    assert other_process_view.signing_key().kid == new_kid != first


def test_private_keys_are_owner_only(store):
    for path in store.directory.glob("*.pem"):
        assert path.stat().st_mode & 0o077 == 0


def test_es256_is_supported(tmp_path):
    store = tokens.KeyStore(tmp_path / "keys", "ES256", max_token_ttl_s=60)
    store.ensure_key()
    token = tokens.mint_request_jwt(store, ttl_s=60, **CLAIMS)
    assert tokens.verify(store, token, issuer=ISSUER, audience="acme-billing")["sub"] == "7"
    assert store.jwks()["keys"][0]["kty"] == "EC"
