"""Minting and verifying the core's JWTs (SPEC §4); the keys are ``services/signing_keys``."""

import logging
import time
import uuid

import jwt

from extframework.db import write_transaction
from extframework.errors import Unauthorized
from extframework.models import AuditEvent
from extframework.services.signing_keys import (  # noqa: F401  (re-exported for callers)
    SUPPORTED_ALGORITHMS,
    KeyStore,
    Rotation,
    Sealer,
    SigningKey,
    iso_utc,
)

log = logging.getLogger(__name__)

SCOPES_BY_ROLE = {
    "viewer": ["views:read"],
    "member": ["views:read", "actions:write"],
    "admin": ["views:read", "actions:write", "admin"],
}
USER_TOKEN_USE = "user"
# The user JWT's session generation; a token without it (minted before generations) counts as 0.
GENERATION_CLAIM = "gen"


def rotate_signing_key(store: KeyStore, *, delay_s: float, now: bool, actor: str) -> Rotation:
    """Rotate the signing key and audit it (SPEC §4: publish first, sign after ``delay_s``)."""
    rotation = store.rotate(delay_s=delay_s, now=now)
    with write_transaction():
        AuditEvent.create(
            actor=actor,
            action="keys.rotate_now" if now else "keys.rotate",
            target=f"key:{rotation.kid}",
            detail={
                "alg": rotation.algorithm,
                "signs_from": iso_utc(rotation.sign_from),
                "withdrawn": rotation.withdrawn,
            },
        )
    return rotation


def _sign(store: KeyStore, claims: dict) -> str:
    key = store.signing_key()
    return jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid})


def _base_claims(issuer: str, audience: str, ttl_s: int) -> dict:
    now = int(time.time())
    return {"iss": issuer, "aud": audience, "iat": now, "exp": now + ttl_s, "jti": uuid.uuid4().hex}


def request_claims(
    *,
    issuer: str,
    plugin_id: str,
    user_id: str,
    name: str,
    email: str,
    tenant: str,
    role: str,
    scopes: list[str],
    ttl_s: int,
) -> dict:
    """Return exactly the claims SPEC §4 names for a request JWT."""
    claims = _base_claims(issuer, plugin_id, ttl_s)
    claims.update(
        {
            "sub": user_id,
            "name": name,
            "email": email,
            "tenant": tenant,
            "role": role,
            "scopes": scopes,
        }
    )
    return claims


def mint_request_jwt(store: KeyStore, **claim_args) -> str:
    """Mint the short-lived JWT the core sends with every proxied request to a plugin."""
    return _sign(store, request_claims(**claim_args))


def mint_user_jwt(
    store: KeyStore,
    *,
    issuer: str,
    user_id: str,
    email: str,
    tenant: str,
    role: str,
    ttl_s: int,
    generation: int | None,
) -> str:
    """Mint a user JWT for API use; its audience is the core itself, never a plugin.

    ``gen`` is the user's session generation: the token ends with the sessions of that
    generation (``None`` only mints a token as the core did before generations existed).
    """
    claims = _base_claims(issuer, issuer, ttl_s)
    claims.update(
        {
            "sub": user_id,
            "email": email,
            "tenant": tenant,
            "role": role,
            "token_use": USER_TOKEN_USE,
        }
    )
    if generation is not None:
        claims[GENERATION_CLAIM] = generation
    return _sign(store, claims)


def verify(store: KeyStore, token: str, *, issuer: str, audience: str) -> dict:
    """Verify a JWT the core minted: known kid, its own algorithm only, issuer, audience, expiry."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"The bearer token is not a JWT: {exc}.") from None
    key = store.verification_key(str(header.get("kid", "")))
    if key is None:
        raise Unauthorized("The token was not signed by a key of this core.")
    try:
        return jwt.decode(
            token,
            key.private_key.public_key(),
            algorithms=[key.algorithm],
            audience=audience,
            issuer=issuer,
            options={"require": ["iss", "aud", "exp", "iat", "sub", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The token has expired.") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"The token is not valid here: {exc}.") from None


def verify_user_jwt(store: KeyStore, token: str, *, issuer: str) -> dict:
    claims = verify(store, token, issuer=issuer, audience=issuer)
    if claims.get("token_use") != USER_TOKEN_USE:
        raise Unauthorized("This is not a user token.")
    generation = claims.setdefault(GENERATION_CLAIM, 0)
    if not isinstance(generation, int) or isinstance(generation, bool):
        raise Unauthorized(f"The token's {GENERATION_CLAIM!r} claim is not an integer.")
    return claims
