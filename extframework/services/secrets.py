"""Opaque bearer secrets (enrolment keys, plugin tokens): generated here, stored only as hashes."""

import hashlib
import hmac
import secrets

ENROLMENT_KEY_PREFIX = "efek_"
PLUGIN_TOKEN_PREFIX = "efpt_"
MIGRATION_TOKEN_PREFIX = "efmc_"


def new_secret(prefix: str) -> str:
    """Return a fresh random secret; the prefix tells a reader (and a leak scanner) what it is."""
    return prefix + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """Hash a high-entropy secret for storage; a fast hash is enough at 256 bits of entropy."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
