"""Enrol a plugin with the core on start: register once, then send manifest updates (SPEC §3)."""

import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path

import requests

log = logging.getLogger(__name__)


class EnrolmentError(Exception):
    """The core refused the plugin for good (bad key, taken id, invalid manifest)."""


def read_token(token_file: str | os.PathLike) -> str | None:
    try:
        return Path(token_file).read_text().strip() or None
    except FileNotFoundError:
        return None


def write_token(token_file: str | os.PathLike, token: str) -> None:
    """Keep the plugin token in a file only its owner can read, replaced atomically.

    The token is written to a new 0600 file beside it, synced, then renamed over the old one:
    a reader (or a crash) sees the old token or the new one, never a part of either.
    """
    path = Path(token_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _problem(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    detail = body.get("detail", "")
    errors = "; ".join(
        f"{e.get('path', '')} {e.get('message', '')}" for e in body.get("errors", [])
    )
    return f"{detail} {errors}".strip()


def register_or_update(
    core_url: str,
    manifest: dict,
    *,
    token_file: str | os.PathLike,
    enrolment_key: str | None = None,
    attempts: int = 30,
    timeout_s: float = 10.0,
    session: requests.Session | None = None,
) -> str:
    """Return a working plugin token: update with the stored one, else register with the key.

    An update with the same version is a no-op (the core answers 409 and that is fine). An
    update the core accepts without applying yet (``202``: a migration, or a ``base_url`` on
    another origin awaiting an operator's approval) is logged and the token returned. The
    core may still be starting: connection errors and 5xx are retried ``attempts`` times.
    """
    session = session or requests.Session()
    api = core_url.rstrip("/") + "/api/registry/plugins"
    plugin_id = manifest["plugin_id"]
    for attempt in range(attempts):
        try:
            token = read_token(token_file)
            if token:
                response = session.put(
                    f"{api}/{plugin_id}",
                    json=manifest,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=timeout_s,
                )
                if response.status_code == 200:
                    log.info("manifest updated to %s", manifest["version"])
                    return token
                if response.status_code == 202:
                    # A migration started, or a move to another server awaits an operator:
                    # the token stays valid and the core keeps calling the current base_url.
                    log.warning(
                        "update to %s accepted, not yet applied: %s",
                        manifest["version"],
                        _problem(response),
                    )
                    return token
                if response.status_code == 409 and "not higher" in response.text:
                    log.info("already registered at this version")
                    return token
                if response.status_code != 401:
                    if response.status_code >= 500:
                        raise requests.ConnectionError(f"core answered {response.status_code}")
                    raise EnrolmentError(
                        f"update refused ({response.status_code}): {_problem(response)}"
                    )
                log.warning("stored plugin token was refused; registering again")
            if not enrolment_key:
                raise EnrolmentError("no plugin token and no enrolment key: cannot register")
            response = session.post(
                api,
                json=manifest,
                headers={"Authorization": f"Bearer {enrolment_key}"},
                timeout=timeout_s,
            )
            if response.status_code == 201:
                token = response.json()["plugin_token"]
                write_token(token_file, token)
                log.info("registered as %s", plugin_id)
                return token
            if response.status_code >= 500 and response.status_code != 502:
                raise requests.ConnectionError(f"core answered {response.status_code}")
            raise EnrolmentError(
                f"registration refused ({response.status_code}): {_problem(response)}"
            )
        except requests.RequestException as exc:
            wait = min(0.2 * 2**attempt, 2.0)
            log.info("core not reachable yet (%s); retrying in %.1f s", exc, wait)
            time.sleep(wait)
    raise EnrolmentError(f"the core at {core_url} did not answer after {attempts} attempts")
