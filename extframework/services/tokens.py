"""Signing keys, the JWKS, and minting and verifying the core's JWTs (SPEC §4).

Keys live in ``<instance>/keys``: one PEM per key (owner-only) and ``keyset.json`` listing
them, each with the time it was published (``created_at``) and the time it signs from
(``sign_from``). A rotation publishes the new key at once and lets it sign only from
``sign_from`` on, when every cached copy of the old JWKS has expired; the key it replaces
stays in the JWKS until every token it can have signed has expired. An emergency rotation
signs at once and withdraws every other key (``withdrawn_at``). Every process decides which
key signs from these timestamps alone, so all gunicorn workers switch at the same moment.
"""

import fcntl
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from extframework.config import ensure_private_dir, write_private_file
from extframework.db import write_transaction
from extframework.errors import Invalid, Unauthorized
from extframework.models import AuditEvent

log = logging.getLogger(__name__)

SUPPORTED_ALGORITHMS = ("RS256", "ES256")
SCOPES_BY_ROLE = {
    "viewer": ["views:read"],
    "member": ["views:read", "actions:write"],
    "admin": ["views:read", "actions:write", "admin"],
}
USER_TOKEN_USE = "user"
WITHDRAWN_KEPT = 10  # withdrawn keys listed in keyset.json (no private key) for `keys list`
# The user JWT's session generation; a token without it (minted before generations) counts as 0.
GENERATION_CLAIM = "gen"


@dataclass
class SigningKey:
    kid: str
    algorithm: str
    created_at: float
    sign_from: float
    private_key: object

    def public_jwk(self) -> dict:
        algo = jwt.get_algorithm_by_name(self.algorithm)
        jwk = algo.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "alg": self.algorithm, "use": "sig"})
        return jwk


@dataclass
class Rotation:
    kid: str
    algorithm: str
    sign_from: float
    withdrawn: list[str] = field(default_factory=list)


def _normalized(entry: dict) -> dict:
    """Read an entry, including one written before keys had ``sign_from`` (it signed at once)."""
    return {
        "kid": entry["kid"],
        "alg": entry["alg"],
        "created_at": entry["created_at"],
        "sign_from": entry.get("sign_from", entry["created_at"]),
        "withdrawn_at": entry.get("withdrawn_at"),
        "withdrawn_why": entry.get("withdrawn_why"),
    }


class KeyStore:
    """The core's signing keys on disk, re-read when another process rotates them."""

    def __init__(
        self,
        directory: str | Path,
        algorithm: str,
        max_token_ttl_s: int,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise ValueError(f"JWT_ALGORITHM must be one of {SUPPORTED_ALGORITHMS}")
        self.directory = Path(directory)
        self.algorithm = algorithm
        self.max_token_ttl_s = max_token_ttl_s
        self.clock = clock
        self._entries: list[dict] = []
        self._private: dict[str, object] = {}
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
                self._write_index([self._generate(self.clock())])

    def rotate(self, *, delay_s: float = 0.0, now: bool = False) -> Rotation:
        """Publish a new key that signs after ``delay_s``; ``now``: sign at once, withdraw the rest.

        Keys whose tokens have all expired lose their private key and are listed as withdrawn.
        """
        if delay_s < 0 and not now:
            raise Invalid(f"The publish delay must be 0 s or more, not {delay_s} s.")
        with self._locked():
            t = self.clock()
            entries = self._read_index()
            live = [e for e in entries if e["withdrawn_at"] is None]
            last_sign_from = max((e["sign_from"] for e in live), default=t)
            # Never before a key already waiting to sign: sign_from keeps the keys' order.
            sign_from = t if now else max(t + delay_s, last_sign_from)
            withdrawn = []
            for entry, until in zip(live, self._signing_until(live), strict=True):
                if until is not None and t > until + self.max_token_ttl_s:
                    entry.update(
                        withdrawn_at=until + self.max_token_ttl_s,
                        withdrawn_why="its tokens have expired",
                    )
                elif now:
                    entry.update(withdrawn_at=t, withdrawn_why="emergency rotation")
                else:
                    continue
                withdrawn.append(entry["kid"])
            new = self._generate(t, sign_from=sign_from)
            gone = [e for e in entries if e["withdrawn_at"] is not None][-WITHDRAWN_KEPT:]
            self._write_index([*gone, *[e for e in entries if e["withdrawn_at"] is None], new])
            # Only once no index lists them: a process reading the index finds every PEM.
            for kid in withdrawn:
                (self.directory / f"{kid}.pem").unlink(missing_ok=True)
        log.info(
            "signing key rotated: new kid %s signs from %s%s",
            new["kid"],
            iso_utc(sign_from),
            f"; withdrawn {', '.join(withdrawn)}" if withdrawn else "",
        )
        return Rotation(new["kid"], new["alg"], sign_from, withdrawn)

    @staticmethod
    def _signing_until(live: list[dict]) -> list[float | None]:
        """Each live key signs until the next one starts; the newest has no end yet."""
        return [nxt["sign_from"] for nxt in live[1:]] + [None] if live else []

    def _generate(self, t: float, *, sign_from: float | None = None) -> dict:
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
        return _normalized(
            {
                "kid": kid,
                "alg": self.algorithm,
                "created_at": t,
                "sign_from": t if sign_from is None else sign_from,
            }
        )

    def _read_index(self) -> list[dict]:
        try:
            return [_normalized(e) for e in json.loads(self._index.read_text())]
        except FileNotFoundError:
            return []

    def _write_index(self, entries: list[dict]) -> None:
        tmp = self._index.with_suffix(f".tmp{os.getpid()}")
        write_private_file(tmp, json.dumps(entries, indent=2).encode())
        os.replace(tmp, self._index)

    def _load(self) -> list[dict]:
        """Return the live entries, re-reading the folder if another process changed it."""
        for attempt in range(3):
            mtime = self._index.stat().st_mtime_ns
            if mtime == self._loaded_mtime:
                break
            entries = self._read_index()
            try:
                private = {
                    entry["kid"]: serialization.load_pem_private_key(
                        (self.directory / f"{entry['kid']}.pem").read_bytes(), password=None
                    )
                    for entry in entries
                    if entry["withdrawn_at"] is None
                }
            except FileNotFoundError:  # a rotation replaced the index after we read it
                if attempt == 2:
                    raise
                continue
            self._entries, self._private, self._loaded_mtime = entries, private, mtime
            break
        return [e for e in self._entries if e["withdrawn_at"] is None]

    def _key(self, entry: dict) -> SigningKey:
        return SigningKey(
            kid=entry["kid"],
            algorithm=entry["alg"],
            created_at=entry["created_at"],
            sign_from=entry["sign_from"],
            private_key=self._private[entry["kid"]],
        )

    def keys(self) -> list[SigningKey]:
        """Return the published keys (waiting, signing, retired with live tokens), oldest first."""
        live = self._load()
        t = self.clock()
        return [
            self._key(entry)
            for entry, until in zip(live, self._signing_until(live), strict=True)
            if until is None or t <= until + self.max_token_ttl_s
        ]

    def signing_key(self) -> SigningKey:
        """Return the newest key whose ``sign_from`` has come."""
        live = self._load()
        t = self.clock()
        started = [e for e in live if e["sign_from"] <= t]
        return self._key(started[-1] if started else live[0])

    def jwks(self) -> dict:
        return {"keys": [key.public_jwk() for key in self.keys()]}

    def verification_key(self, kid: str) -> SigningKey | None:
        return next((k for k in self.keys() if k.kid == kid), None)

    def status(self) -> list[dict]:
        """Describe every key for an operator: when published, signing, unpublished, and why."""
        self._load()
        t = self.clock()
        live = [e for e in self._entries if e["withdrawn_at"] is None]
        until_by_kid = dict(zip([e["kid"] for e in live], self._signing_until(live), strict=True))
        signing = self.signing_key().kid
        rows = []
        for entry in self._entries:
            until = until_by_kid.get(entry["kid"])
            expires = until + self.max_token_ttl_s if until is not None else None
            if entry["withdrawn_at"] is not None:
                state, unpublished = "withdrawn", entry["withdrawn_at"]
            elif entry["kid"] == signing:
                state, unpublished = "signing", expires
            elif entry["sign_from"] > t:
                state, unpublished = "waiting", expires
            elif expires is not None and t > expires:
                state, unpublished = "expired", expires
            else:
                state, unpublished = "retired", expires
            rows.append(
                {
                    "kid": entry["kid"],
                    "alg": entry["alg"],
                    "state": state,
                    "published_at": entry["created_at"],
                    "signs_from": entry["sign_from"],
                    "signs_until": until,
                    "unpublished_at": unpublished,
                    "withdrawn_why": entry["withdrawn_why"],
                }
            )
        return rows


def iso_utc(t: float | None) -> str:
    """Format a Unix time as ISO 8601 UTC to the second; None as '-'."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t is not None else "-"


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
