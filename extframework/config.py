"""Configuration: defaults in code, then ``instance/config.py``, then ``EXTFW_*``."""

import logging
import os
import secrets
from pathlib import Path

from flask import Config, Flask

from extframework.settings import (  # noqa: F401  (JWKS_MAX_AGE_S: re-exported)
    DEFAULTS,
    ENV_PREFIX,
    JWKS_MAX_AGE_S,
    SettingsError,
    check,
    parse_environment,
)

log = logging.getLogger(__name__)


def load_config(app: Flask, test_config: dict | None) -> None:
    """Layer the configuration sources, then check every setting against ``settings.SETTINGS``.

    Tests pass their own dict and skip the instance file and the environment. A wrong value
    stops the start (``SettingsError`` names each); an unknown ``EXTFW_*`` name is a warning.
    """
    values: dict[str, object] = dict(DEFAULTS)
    sources: dict[str, str] = {}
    unknown: list[str] = []
    if test_config is None:
        from_file = Config(app.instance_path)
        from_file.from_pyfile("config.py", silent=True)
        values.update(from_file)
        sources.update(dict.fromkeys(from_file, "instance/config.py"))
        from_env, unknown = parse_environment(os.environ)
        values.update(from_env)
        sources.update({name: ENV_PREFIX + name for name in from_env})
    else:
        values.update(test_config)
        sources.update(dict.fromkeys(test_config, "the test configuration"))
    for warning in unknown:
        log.warning("%s", warning)
    app.extensions["extframework.unknown_settings"] = unknown
    app.extensions["extframework.setting_sources"] = sources
    app.config.update(check(values, sources))
    if app.config["DATABASE"] is None:
        # Made here, owner-only, so the database file can be created 0600 in it (db.init_app).
        ensure_private_dir(app.instance_path)
        app.config["DATABASE"] = os.path.join(app.instance_path, "extframework.sqlite3")
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_BODY_BYTES"]
    app.config["BASE_URL"] = app.config["BASE_URL"].rstrip("/")
    if app.config["SESSION_COOKIE_SECURE"] is None:
        app.config["SESSION_COOKIE_SECURE"] = app.config["BASE_URL"].startswith("https://")
    app.config["REMEMBER_COOKIE_SECURE"] = app.config["SESSION_COOKIE_SECURE"]
    app.config["SESSION_COOKIE_HTTPONLY"] = app.config["REMEMBER_COOKIE_HTTPONLY"] = True
    if not app.config.get("SECRET_KEY"):
        if app.config.get("DATABASE_URL"):
            # A secret generated into one host's instance folder would differ on every host:
            # each would refuse the others' sessions and cursors and their signing keys.
            raise SettingsError(
                "Settings are wrong:\n  SECRET_KEY is required with DATABASE_URL: every app "
                "host must sign sessions and cursors and seal the signing keys with the same "
                "secret. Set EXTFW_SECRET_KEY (e.g. `python3 -c 'import secrets; "
                "print(secrets.token_hex(32))'`) on every host (docs/scaling.md)."
            )
        app.config["SECRET_KEY"] = instance_secret(app.instance_path, "secret_key")
    # Flask reads a list (sessions); the setting is text, one secret per word.
    app.config["SECRET_KEY_FALLBACKS"] = (app.config["SECRET_KEY_FALLBACKS"] or "").split()


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
