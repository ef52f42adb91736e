"""Secrets a console POST creates, carried to the page its redirect lands on and shown there once.

Console forms are post/redirect/get: the POST does the work and answers 303, so a reload or the
back button repeats a GET, never the action. A new plugin token or enrolment key rides along in
the session, encrypted (Flask's session cookie is only signed), and is removed the first time the
page shows it. Only an operator's page takes it out, so it is shown to the session that made it.
"""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app, session

_SESSION_KEY = "_shown_once"


def _fernet() -> Fernet:
    digest = hashlib.sha256(b"extframework shown-once\0" + _secret_key()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _secret_key() -> bytes:
    key = current_app.secret_key
    return key.encode() if isinstance(key, str) else bytes(key)


def keep(kind: str, target: str, secret: str) -> None:
    """Hold ``secret`` for the next page that shows ``kind`` for ``target``."""
    token = _fernet().encrypt(secret.encode()).decode()
    session[_SESSION_KEY] = {"kind": kind, "target": target, "secret": token}


def take(kind: str, target: str) -> str | None:
    """Return the held secret of ``kind`` for ``target`` and forget it; None when there is none."""
    held = session.get(_SESSION_KEY)
    if not isinstance(held, dict) or (held.get("kind"), held.get("target")) != (kind, target):
        return None
    session.pop(_SESSION_KEY, None)
    try:
        return _fernet().decrypt(str(held.get("secret", "")).encode()).decode()
    except InvalidToken:
        return None
