"""Configuration: defaults in code, then ``instance/config.py``, then ``EXTFW_*``."""

import os
import secrets
from pathlib import Path

from flask import Flask

# The Cache-Control max-age of GET /.well-known/jwks.json: how long a verifier may keep a copy.
JWKS_MAX_AGE_S = 60

DEFAULTS: dict[str, object] = {
    # Where the core is reachable; the `iss` of every JWT it mints.
    "BASE_URL": "http://127.0.0.1:5000",
    "DATABASE": None,  # default: <instance>/extframework.sqlite3
    "SQLITE_BUSY_TIMEOUT_MS": 5000,
    "MAX_BODY_BYTES": 1024 * 1024,
    "SESSION_COOKIE_SECURE": False,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "REMEMBER_COOKIE_HTTPONLY": True,
    "JWT_ALGORITHM": "ES256",
    # A rotated-in key signs only once every cached JWKS copy has expired (docs/identity.md):
    # the JWKS max-age plus a 30 s margin (a copy handed on late by another cache).
    "KEY_PUBLISH_DELAY_S": JWKS_MAX_AGE_S + 30,
    "REQUEST_JWT_TTL_S": 60,
    "USER_JWT_TTL_S": 3600,
    # How long a plugin token replaced by a rotation keeps working (SPEC §4's overlap).
    "TOKEN_GRACE_S": 3600,
    # Login throttling (docs/identity.md): failures per (account, address), per account, and
    # per address inside one window; see accounts.LoginLimits.
    "LOGIN_MAX_FAILURES": 10,
    "LOGIN_ACCOUNT_MAX_FAILURES": 30,
    "LOGIN_WINDOW_S": 300,
    "LOGIN_KNOWN_ADDRESS_DAYS": 30,
    "LOGIN_ADDRESS_SLOW_AFTER": 30,
    "LOGIN_ADDRESS_DELAY_S": 1.0,
    "HEALTH_MONITOR": True,
    "HEALTH_INTERVAL_S": 10.0,
    "HEALTH_TIMEOUT_S": 2.0,
    "HEALTH_FAILURES": 3,
    "HEALTH_HISTORY": 100,
    "PROXY_TIMEOUT_S": 5.0,
    "PROXY_MAX_CONCURRENT_PER_PLUGIN": 2,
    "MIGRATION_TIMEOUT_S": 300,
    # What one plugin may declare, and what one schema validation may cost (schema_limits).
    "PLUGIN_MAX_INDEXES": 64,
    "MANIFEST_MAX_BYTES": 256 * 1024,
    "SCHEMA_MAX_BYTES": 64 * 1024,
    "SCHEMA_MAX_NODES": 10_000,
    "SCHEMA_MAX_REFS": 256,
    "SCHEMA_MAX_DEPTH": 64,
    "VALIDATION_MAX_STEPS": 100_000,
    "VALIDATION_MAX_MS": 500,
}


def load_config(app: Flask, test_config: dict | None) -> None:
    """Layer the configuration sources; tests pass their own dict and skip the others."""
    app.config.from_mapping(DEFAULTS)
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
        app.config.from_prefixed_env("EXTFW")
    else:
        app.config.from_mapping(test_config)
    if app.config["DATABASE"] is None:
        # Made here, owner-only, so the database file can be created 0600 in it (db.init_app).
        ensure_private_dir(app.instance_path)
        app.config["DATABASE"] = os.path.join(app.instance_path, "extframework.sqlite3")
    app.config["MAX_CONTENT_LENGTH"] = int(app.config["MAX_BODY_BYTES"])
    app.config["BASE_URL"] = str(app.config["BASE_URL"]).rstrip("/")
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = instance_secret(app.instance_path, "secret_key")


def ensure_private_dir(path: str | Path) -> Path:
    """Create a directory, and any missing parent, readable by its owner only.

    ``mkdir(parents=True)`` would give the parents the umask's mode (often 0755); an existing
    folder keeps the mode its owner chose.
    """
    path = Path(path)
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    return path


def write_private_file(path: str | Path, data: bytes) -> None:
    """Write a file that only its owner can read, without a window where it is wider."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def instance_secret(instance_path: str, name: str) -> str:
    """Read a random secret from the instance folder, generating it on first use."""
    path = ensure_private_dir(instance_path) / name
    if not path.exists():
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        write_private_file(tmp, secrets.token_hex(32).encode())
        try:
            os.link(tmp, path)  # first writer wins when several workers start at once
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()
