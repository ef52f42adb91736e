"""The core's signing keys, kept in the database so that every app host signs and verifies alike.

Each key is a row of ``signing_key``: its kid, algorithm, when it was published (``created_at``)
and when it signs from (``sign_from``), and its private key sealed with AES-GCM under a key
derived from ``SECRET_KEY`` (HKDF-SHA256; the kid is the associated data). A rotation publishes
the new key at once and lets it sign only from ``sign_from`` on, when every cached copy of the
old JWKS has expired; the key it replaces stays published until every token it can have signed
has expired. An emergency rotation signs at once and withdraws every other key. Every process
decides which key signs from these timestamps alone, so all workers and hosts switch at the
same moment.

In a request, a process re-reads the rows when the registry version (``registry_cache``, read
once per request anyway, and bumped by a trigger on ``signing_key``) has moved, so a rotation on
one host is used by every host's next request; elsewhere (the CLI, the health thread) at most
every ``RELOAD_S``, and at once when it meets a token with a kid it does not know. Keys are
numbered (``generation``, unique): two hosts generating the first key, or rotating at once,
cannot both succeed; the loser re-reads and retries.

``SECRET_KEY_FALLBACKS`` lists earlier secrets: a key sealed under one of them still opens and
is sealed again under the current secret at the next start (``ensure_key``). An installation
whose keys were files in ``<instance>/keys`` imports them on its first start with this code,
keeping their kids, so tokens already issued stay valid.
"""

import base64
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import has_request_context
from peewee import IntegrityError

from extframework.db import database, write_transaction
from extframework.errors import Invalid
from extframework.models import SigningKeyRow
from extframework.services import registry_cache

log = logging.getLogger(__name__)

SUPPORTED_ALGORITHMS = ("RS256", "ES256")
WITHDRAWN_KEPT = 10  # withdrawn keys kept (without their private key) for `keys list`
RELOAD_S = 1.0  # how stale a process's copy of the keys may get
UNKNOWN_KID_RELOAD_S = 0.05  # at most this often, a token with an unknown kid forces a re-read
SEAL_PREFIX = "aesgcm1:"
_HKDF_INFO = b"extframework signing keys v1"


class KeysUnreadable(RuntimeError):
    """No configured secret opens a signing key: the core must not start signing with others."""


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


class Sealer:
    """Seal and open private keys with keys derived from the current and earlier secrets."""

    def __init__(self, secret: str, previous: tuple[str, ...] = ()) -> None:
        self._ciphers = [AESGCM(_derive(s)) for s in (secret, *previous)]

    def seal(self, kid: str, pem: bytes) -> str:
        nonce = os.urandom(12)
        sealed = self._ciphers[0].encrypt(nonce, pem, kid.encode())
        return SEAL_PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, kid: str, sealed: str) -> tuple[bytes, bool]:
        """Return the PEM and whether it was sealed under the current secret."""
        if not sealed.startswith(SEAL_PREFIX):
            raise KeysUnreadable(f"signing key {kid} is not sealed in a form this core reads")
        raw = base64.b64decode(sealed[len(SEAL_PREFIX) :])
        for index, cipher in enumerate(self._ciphers):
            try:
                return cipher.decrypt(raw[:12], raw[12:], kid.encode()), index == 0
            except InvalidTag:
                continue
        raise KeysUnreadable(
            f"signing key {kid} cannot be opened with SECRET_KEY or any of "
            "SECRET_KEY_FALLBACKS: the secret was changed without listing the old one in "
            "SECRET_KEY_FALLBACKS (docs/identity.md)"
        )


def _derive(secret: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret.encode()
    )


@contextmanager
def _connected() -> Iterator[None]:
    """Use this thread's open connection, or open one for the block (a CLI, a start-up)."""
    opened = database.is_closed()
    if opened:
        database.connect()
    try:
        yield
    finally:
        if opened:
            database.close()


def _rows():
    return SigningKeyRow.select().order_by(SigningKeyRow.generation)


def _entry(row: SigningKeyRow) -> dict:
    return {
        "generation": row.generation,
        "kid": row.kid,
        "alg": row.alg,
        "created_at": row.created_at,
        "sign_from": row.sign_from,
        "withdrawn_at": row.withdrawn_at,
        "withdrawn_why": row.withdrawn_why,
        "sealed": row.private_key,
    }


class KeyStore:
    """The signing keys as this process last read them from the database."""

    def __init__(
        self,
        sealer: Sealer,
        algorithm: str,
        max_token_ttl_s: int,
        *,
        clock: Callable[[], float] = time.time,
        legacy_folder: str | Path | None = None,
        reload_s: float = RELOAD_S,
    ) -> None:
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise ValueError(f"JWT_ALGORITHM must be one of {SUPPORTED_ALGORITHMS}")
        self.sealer = sealer
        self.algorithm = algorithm
        self.max_token_ttl_s = max_token_ttl_s
        self.clock = clock
        self.legacy_folder = Path(legacy_folder) if legacy_folder else None
        self.reload_s = reload_s
        # (every entry, live private keys by kid): replaced whole, so a reader never sees one
        # without the other.
        self._snapshot: tuple[list[dict], dict[str, object]] = ([], {})
        self._loaded_at: float | None = None  # time.monotonic() of the last read
        self._forced_at = float("-inf")  # of the last read an unknown kid asked for
        self._loaded_version: tuple | None = None  # the registry version the rows were read at
        self._lock = threading.Lock()

    # --- writing --------------------------------------------------------------------------

    def ensure_key(self) -> None:
        """Make the first key (importing ``<instance>/keys`` if it holds one); re-seal old ones.

        Needs the core's tables (``init-db``): before them, it does nothing.
        """
        with _connected():
            if "signing_key" not in database.get_tables():
                return
            for _ in range(3):
                try:
                    with write_transaction():
                        rows = list(_rows())
                        if not rows:
                            imported = self._import_folder()
                            if not imported:
                                self._insert(1, self._generate(self.clock()))
                        else:
                            self._reseal(rows)
                    break
                except IntegrityError:  # another process made the first key meanwhile
                    continue
        self._loaded_at = None

    def rotate(self, *, delay_s: float = 0.0, now: bool = False) -> Rotation:
        """Publish a new key that signs after ``delay_s``; ``now``: sign at once, withdraw the rest.

        Keys whose tokens have all expired lose their private key and are listed as withdrawn.
        """
        if delay_s < 0 and not now:
            raise Invalid(f"The publish delay must be 0 s or more, not {delay_s} s.")
        self._load()  # a rotation replaces a key: the first one is made if there is none yet
        with _connected():
            for attempt in range(3):
                try:
                    rotation = self._rotate_once(delay_s, now)
                    break
                except IntegrityError:  # another host rotated at the same moment: re-read
                    if attempt == 2:
                        raise
        self._loaded_at = None
        log.info(
            "signing key rotated: new kid %s signs from %s%s",
            rotation.kid,
            iso_utc(rotation.sign_from),
            f"; withdrawn {', '.join(rotation.withdrawn)}" if rotation.withdrawn else "",
        )
        return rotation

    def _rotate_once(self, delay_s: float, now: bool) -> Rotation:
        with write_transaction():
            t = self.clock()
            entries = [_entry(r) for r in _rows()]
            live = [e for e in entries if e["withdrawn_at"] is None]
            last_sign_from = max((e["sign_from"] for e in live), default=t)
            # Never before a key already waiting to sign: sign_from keeps the keys' order.
            sign_from = t if now else max(t + delay_s, last_sign_from)
            withdrawn = []
            for entry, until in zip(live, _signing_until(live), strict=True):
                if until is not None and t > until + self.max_token_ttl_s:
                    at, why = until + self.max_token_ttl_s, "its tokens have expired"
                elif now:
                    at, why = t, "emergency rotation"
                else:
                    continue
                SigningKeyRow.update(withdrawn_at=at, withdrawn_why=why, private_key=None).where(
                    SigningKeyRow.kid == entry["kid"]
                ).execute()
                withdrawn.append(entry["kid"])
            generation = max((e["generation"] for e in entries), default=0) + 1
            new = self._generate(t, sign_from=sign_from)
            self._insert(generation, new)
            gone = [e for e in entries if e["withdrawn_at"] is not None or e["kid"] in withdrawn]
            for entry in gone[:-WITHDRAWN_KEPT]:
                SigningKeyRow.delete().where(SigningKeyRow.kid == entry["kid"]).execute()
        return Rotation(new["kid"], new["alg"], sign_from, withdrawn)

    def _generate(self, t: float, *, sign_from: float | None = None) -> dict:
        if self.algorithm == "RS256":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return {
            "kid": uuid.uuid4().hex[:16],
            "alg": self.algorithm,
            "created_at": t,
            "sign_from": t if sign_from is None else sign_from,
            "pem": pem,
        }

    def _insert(self, generation: int, key: dict) -> None:
        SigningKeyRow.create(
            generation=generation,
            kid=key["kid"],
            alg=key["alg"],
            created_at=key["created_at"],
            sign_from=key["sign_from"],
            withdrawn_at=key.get("withdrawn_at"),
            withdrawn_why=key.get("withdrawn_why"),
            private_key=self.sealer.seal(key["kid"], key["pem"]) if key.get("pem") else None,
        )

    def _reseal(self, rows: list[SigningKeyRow]) -> None:
        """Seal again under the current secret what an earlier one (a fallback) sealed."""
        for row in rows:
            if row.private_key is None:
                continue
            pem, current = self.sealer.open(row.kid, row.private_key)
            if not current:
                sealed = self.sealer.seal(row.kid, pem)
                query = SigningKeyRow.update(private_key=sealed)
                query.where(SigningKeyRow.kid == row.kid).execute()
                log.info("signing key %s sealed again under the current SECRET_KEY", row.kid)

    def _import_folder(self) -> bool:
        """Import ``<instance>/keys`` (keyset.json and a PEM per live key) as the first rows."""
        index = self.legacy_folder / "keyset.json" if self.legacy_folder else None
        if index is None or not index.is_file():
            return False
        for generation, entry in enumerate(json.loads(index.read_text()), start=1):
            entry = {"sign_from": entry["created_at"], **entry}
            pem_path = self.legacy_folder / f"{entry['kid']}.pem"
            if entry.get("withdrawn_at") is None:
                entry["pem"] = pem_path.read_bytes()
            self._insert(generation, entry)
        log.info(
            "signing keys imported from %s into the database; the folder is no longer read",
            self.legacy_folder,
        )
        return True

    # --- reading --------------------------------------------------------------------------

    def _load(self, *, force: bool = False) -> list[dict]:
        """Return the live entries, re-reading the rows when this copy is ``RELOAD_S`` old."""
        now = time.monotonic()
        version = registry_cache.current() if has_request_context() else None
        if self._loaded_at is None:
            stale = True
        elif version is not None:  # a rotation bumps the registry version (every host sees it)
            stale = version != self._loaded_version
        else:  # no version to compare (outside a request): the copy's age decides
            stale = now - self._loaded_at >= self.reload_s
        if force and now - self._forced_at >= UNKNOWN_KID_RELOAD_S:
            self._forced_at, stale = now, True
        if stale:
            with self._lock:
                self._read()
                self._loaded_version = version
        return [e for e in self._snapshot[0] if e["withdrawn_at"] is None]

    def _read(self) -> None:
        with _connected():
            entries = [_entry(r) for r in _rows()]
        if not entries:  # a database made before ensure_key ran (init-db after start)
            self.ensure_key()
            with _connected():
                entries = [_entry(r) for r in _rows()]
        private = {}
        for entry in entries:
            if entry["withdrawn_at"] is not None:
                continue
            known = self._snapshot[1].get(entry["kid"])
            if known is None:
                pem, _ = self.sealer.open(entry["kid"], entry["sealed"])
                known = serialization.load_pem_private_key(pem, password=None)
            private[entry["kid"]] = known
        self._snapshot = (entries, private)
        self._loaded_at = time.monotonic()

    def _key(self, entry: dict, private: dict[str, object]) -> SigningKey:
        return SigningKey(
            kid=entry["kid"],
            algorithm=entry["alg"],
            created_at=entry["created_at"],
            sign_from=entry["sign_from"],
            private_key=private[entry["kid"]],
        )

    def keys(self, *, force: bool = False) -> list[SigningKey]:
        """Return the published keys (waiting, signing, retired with live tokens), oldest first."""
        live = self._load(force=force)
        private = self._snapshot[1]
        t = self.clock()
        return [
            self._key(entry, private)
            for entry, until in zip(live, _signing_until(live), strict=True)
            if until is None or t <= until + self.max_token_ttl_s
        ]

    def signing_key(self) -> SigningKey:
        """Return the newest key whose ``sign_from`` has come."""
        live = self._load()
        return self._key(signing_entry(live, self.clock()), self._snapshot[1])

    def jwks(self) -> dict:
        return {"keys": [key.public_jwk() for key in self.keys()]}

    def verification_key(self, kid: str) -> SigningKey | None:
        """The published key ``kid``; an unknown kid re-reads the rows first (a new key)."""
        found = next((k for k in self.keys() if k.kid == kid), None)
        if found is None and kid and not any(e["kid"] == kid for e in self._snapshot[0]):
            found = next((k for k in self.keys(force=True) if k.kid == kid), None)
        return found

    def status(self) -> list[dict]:
        """Describe every key for an operator: when published, signing, unpublished, and why."""
        live = self._load(force=True)
        entries = self._snapshot[0]
        t = self.clock()
        until_by_kid = dict(zip([e["kid"] for e in live], _signing_until(live), strict=True))
        signing = self.signing_key().kid
        rows = []
        for entry in entries:
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


def signing_entry(live: list[dict], t: float) -> dict:
    """Of the live keys, oldest first, the one that signs at ``t``: the newest started."""
    started = [entry for entry in live if entry["sign_from"] <= t]
    return started[-1] if started else live[0]


def _signing_until(live: list[dict]) -> list[float | None]:
    """Each live key signs until the next one starts; the newest has no end yet."""
    return [nxt["sign_from"] for nxt in live[1:]] + [None] if live else []


def iso_utc(t: float | None) -> str:
    """Format a Unix time as ISO 8601 UTC to the second; None as '-'."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t is not None else "-"
