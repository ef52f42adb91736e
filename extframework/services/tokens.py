"""Signing keys, the JWKS, and minting and verifying the core's JWTs (SPEC §4).

Keys live in ``<instance>/keys``: one PEM per key (owner-only) and ``keyset.json`` listing
them. The newest key signs; a rotated-out key stays in the JWKS until every token it can
have signed has expired, then it is pruned.
"""

import fcntl
import json
import logging
import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from extframework.config import ensure_private_dir, write_private_file
from extframework.errors import Unauthorized

log = logging.getLogger(__name__)

SUPPORTED_ALGORITHMS = ("RS256", "ES256")
SCOPES_BY_ROLE = {
    "viewer": ["views:read"],
    "member": ["views:read", "actions:write"],
    "admin": ["views:read", "actions:write", "admin"],
}
USER_TOKEN_USE = "user"
# The user JWT's session generation; a token without it (minted before generations) counts as 0.
GENERATION_CLAIM = "gen"


@dataclass
class SigningKey:
    kid: str
    algorithm: str
    created_at: float
    retired_at: float | None
    private_key: object

    def public_jwk(self) -> dict:
        algo = jwt.get_algorithm_by_name(self.algorithm)
        jwk = algo.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "alg": self.algorithm, "use": "sig"})
        return jwk


class KeyStore:
    """The core's signing keys on disk, re-read when another process rotates them."""

    def __init__(self, directory: str | Path, algorithm: str, max_token_ttl_s: int) -> None:
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise ValueError(f"JWT_ALGORITHM must be one of {SUPPORTED_ALGORITHMS}")
        self.directory = Path(directory)
        self.algorithm = algorithm
        self.max_token_ttl_s = max_token_ttl_s
        self._keys: list[SigningKey] = []
        self._loaded_mtime: int | None = None

    @property
    def _index(self) -> Path:
        return self.directory / "keyset.json"

    @contextmanager
    def _locked(self):
        ensure_private_dir(self.directory)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def ensure_key(self) -> None:
        """Generate the first signing key if there is none."""
        with self._locked():
            if not self._read_index():
                self._write_index([self._generate()])

    def rotate(self) -> str:
        """Add a new signing key, retire the current one, prune expired ones; return the new kid."""
        with self._locked():
            now = time.time()
            entries = self._read_index()
            for entry in entries:
                entry["retired_at"] = entry["retired_at"] or now
            kept = [e for e in entries if not self._expired(e["retired_at"], now)]
            for entry in entries:
                if entry not in kept:
                    (self.directory / f"{entry['kid']}.pem").unlink(missing_ok=True)
            new = self._generate()
            self._write_index([*kept, new])
        log.info("signing key rotated: new kid %s", new["kid"])
        return new["kid"]

    def _expired(self, retired_at: float | None, now: float) -> bool:
        return retired_at is not None and now > retired_at + self.max_token_ttl_s

    def _generate(self) -> dict:
        if self.algorithm == "RS256":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        kid = uuid.uuid4().hex[:16]
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private_file(self.directory / f"{kid}.pem", pem)
        return {"kid": kid, "alg": self.algorithm, "created_at": time.time(), "retired_at": None}

    def _read_index(self) -> list[dict]:
        try:
            return json.loads(self._index.read_text())
        except FileNotFoundError:
            return []

    def _write_index(self, entries: list[dict]) -> None:
        tmp = self._index.with_suffix(f".tmp{os.getpid()}")
        write_private_file(tmp, json.dumps(entries, indent=2).encode())
        os.replace(tmp, self._index)

    def keys(self) -> list[SigningKey]:
        """Return the live keys, newest last, re-reading the folder if it changed."""
        mtime = self._index.stat().st_mtime_ns
        if mtime != self._loaded_mtime:
            loaded = []
            for entry in self._read_index():
                pem = (self.directory / f"{entry['kid']}.pem").read_bytes()
                loaded.append(
                    SigningKey(
                        kid=entry["kid"],
                        algorithm=entry["alg"],
                        created_at=entry["created_at"],
                        retired_at=entry["retired_at"],
                        private_key=serialization.load_pem_private_key(pem, password=None),
                    )
                )
            self._keys, self._loaded_mtime = loaded, mtime
        now = time.time()
        return [k for k in self._keys if not self._expired(k.retired_at, now)]

    def signing_key(self) -> SigningKey:
        return self.keys()[-1]

    def jwks(self) -> dict:
        return {"keys": [key.public_jwk() for key in self.keys()]}

    def verification_key(self, kid: str) -> SigningKey | None:
        return next((k for k in self.keys() if k.kid == kid), None)


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
