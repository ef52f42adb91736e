"""Rotate the plugin token (SPEC §4): ask the core for a new one and keep it in the token file."""

import hashlib
import os

import requests

from extframework_sdk.enrol import EnrolmentError, read_token, refused, write_token


def token_fingerprint(token: str) -> str:
    """The short name the core's console and registry API show for a token."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def rotate_token(
    core_url: str,
    plugin_id: str,
    *,
    token_file: str | os.PathLike,
    revoke_now: bool = False,
    timeout_s: float = 10.0,
    session: requests.Session | None = None,
) -> str:
    """Rotate this plugin's token with the one in ``token_file``; store and return the new one.

    The old token keeps working for the core's grace period (``EXTFW_TOKEN_GRACE_S``, an hour
    by default) unless ``revoke_now``: if the plugin dies before the new token is written, the
    old one still works, and a later call rotates again. The file is replaced atomically.
    """
    token = read_token(token_file)
    if not token:
        raise EnrolmentError(f"no plugin token in {os.fspath(token_file)}: register first")
    response = (session or requests.Session()).post(
        f"{core_url.rstrip('/')}/api/registry/plugins/{plugin_id}/rotate-token",
        json={"revoke_now": revoke_now},
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout_s,
    )
    if response.status_code != 200:
        raise refused("token rotation", response)
    new_token = response.json()["plugin_token"]
    write_token(token_file, new_token)
    return new_token
