"""The request JWTs the contract checker sends (issue 16): one valid, as the proxy mints it,
and six that a plugin must refuse with 401. Minted in the caller's thread: the key store
reads the database."""

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Mapping

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from extframework.services import tokens
from extframework.services.accounts import DEFAULT_TENANT

# Not a valid plugin_id (a colon): no registered plugin can ever accept this token.
OTHER_AUDIENCE = "contract-check:another-plugin"
EXPIRED_FOR_S = 600  # past any sane clock leeway (the SDK's default is far below it)
CHECKER = {"user_id": "contract-check", "name": "Contract checker"}
CHECKER_EMAIL = "contract-check@example.invalid"
BAD_TOKENS = {
    "auth-no-token": "no Authorization header",
    "auth-forged-key": "a token signed by another key (with the core's kid)",
    "auth-alg-none": "an unsigned token (alg: none)",
    "auth-hs256-public-key": "an HS256 token keyed with the core's public key (PEM)",
    "auth-expired": f"a core-signed token that expired {EXPIRED_FOR_S} s ago",
    "auth-audience": f"a core-signed token for another audience ({OTHER_AUDIENCE!r})",
}


def for_view(store: tokens.KeyStore, plugin_id: str, role: str, config: Mapping) -> dict:
    """Return {"valid": token, "bad": {check name: token or None}} for a view of ``role``."""
    key = store.signing_key()
    claims = tokens.request_claims(
        issuer=config["BASE_URL"],
        plugin_id=plugin_id,
        email=CHECKER_EMAIL,
        tenant=DEFAULT_TENANT,
        role=role,
        scopes=list(tokens.SCOPES_BY_ROLE[role]),
        ttl_s=int(config["REQUEST_JWT_TTL_S"]),
        **CHECKER,
    )
    header = {"kid": key.kid}

    def signed(changes: dict) -> str:
        return jwt.encode(
            {**claims, **changes}, key.private_key, algorithm=key.algorithm, headers=header
        )

    now = int(time.time())
    public_pem = key.private_key.public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    bad = {
        "auth-no-token": None,
        "auth-forged-key": jwt.encode(
            claims, _other_key(key.private_key), algorithm=key.algorithm, headers=header
        ),
        "auth-alg-none": _compact({"alg": "none", "typ": "JWT", **header}, claims, None),
        "auth-hs256-public-key": _compact(
            {"alg": "HS256", "typ": "JWT", **header}, claims, public_pem
        ),
        "auth-expired": signed({"iat": now - EXPIRED_FOR_S - 60, "exp": now - EXPIRED_FOR_S}),
        "auth-audience": signed({"aud": OTHER_AUDIENCE}),
    }
    return {"valid": signed({}), "bad": bad}


# One forged key per key type and size in this process: generating an RSA key takes ~0.2 s,
# and one per view made a manifest of 100 views cost 20 s of the request thread's CPU.
_other_keys: dict[tuple, object] = {}
_other_keys_lock = threading.Lock()


def _other_key(private_key: object) -> object:
    """A key of the same type and size as ``private_key``, never published by the core."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        shape = ("ec", private_key.curve.name)
    elif isinstance(private_key, rsa.RSAPrivateKey):
        shape = ("rsa", private_key.key_size)
    else:
        raise TypeError(f"no forged key for {type(private_key).__name__}")
    with _other_keys_lock:
        if shape not in _other_keys:
            if shape[0] == "ec":
                _other_keys[shape] = ec.generate_private_key(private_key.curve)
            else:
                _other_keys[shape] = rsa.generate_private_key(65537, key_size=shape[1])
        return _other_keys[shape]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _compact(header: dict, claims: dict, hmac_key: bytes | None) -> str:
    """A compact JWS by hand: PyJWT rightly refuses to key HMAC with a PEM or to sign 'none'."""

    def part(value: dict) -> str:
        return _b64(json.dumps(value, separators=(",", ":")).encode())

    signing_input = f"{part(header)}.{part(claims)}"
    if hmac_key is None:
        return signing_input + "."
    mac = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"
