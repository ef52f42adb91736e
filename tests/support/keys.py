"""Key stores over a test app's database, as other processes of the same core would hold them."""

import sqlite3
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from extframework.services import signing_keys

TEST_SECRET = "a secret shared by every host of this test core"


def key_store(
    algorithm: str = "ES256",
    max_token_ttl_s: int = 60,
    *,
    clock=time.time,
    secret: str = TEST_SECRET,
    previous: tuple[str, ...] = (),
    reload_s: float = 0.0,
    **kwargs,
) -> signing_keys.KeyStore:
    """A KeyStore on the database the test's app bound; ``reload_s=0``: re-read on every use."""
    store = signing_keys.KeyStore(
        signing_keys.Sealer(secret, previous),
        algorithm,
        max_token_ttl_s,
        clock=clock,
        reload_s=reload_s,
        **kwargs,
    )
    store.ensure_key()
    return store


def key_rows(database_path) -> list[dict]:
    """The ``signing_key`` rows of a core's SQLite file, oldest first (for tests of live cores)."""
    with sqlite3.connect(database_path) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM signing_key ORDER BY generation").fetchall()
    return [dict(row) for row in rows]


class CoreKeys:
    """A running core's signing key, read from its instance folder, to mint tokens as it would.

    Reads the ``signing_key`` rows of the core's SQLite file and opens the signing one with the
    instance's ``secret_key``; only ``signing_key()`` (all that minting uses) is offered.
    """

    def __init__(self, instance) -> None:
        self.instance = Path(instance)

    def signing_key(self) -> signing_keys.SigningKey:
        rows = key_rows(self.instance / "extframework.sqlite3")
        live = [row for row in rows if row["withdrawn_at"] is None]
        row = signing_keys.signing_entry(live, time.time())
        sealer = signing_keys.Sealer((self.instance / "secret_key").read_text().strip())
        pem, _ = sealer.open(row["kid"], row["private_key"])
        return signing_keys.SigningKey(
            row["kid"],
            row["alg"],
            row["created_at"],
            row["sign_from"],
            serialization.load_pem_private_key(pem, password=None),
        )


class StrangerKeys:
    """A signing key that is no core's: a token it signs must be refused everywhere."""

    def __init__(self, algorithm: str = "RS256") -> None:
        if algorithm == "RS256":
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            private = ec.generate_private_key(ec.SECP256R1())
        self.key = signing_keys.SigningKey("stranger", algorithm, 0.0, 0.0, private)

    def signing_key(self) -> signing_keys.SigningKey:
        return self.key
