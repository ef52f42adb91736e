"""Enrol a plugin with the core on start: register once, then send manifest updates (SPEC §3)."""

import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path

import requests

from extframework_sdk.problems import ProblemError, describe, problem_of

log = logging.getLogger(__name__)


class EnrolmentError(ProblemError):
    """The core refused the plugin for good; ``kind`` says why (docs/errors.md).

    ``invalid-manifest`` (see ``errors``), ``plugin-id-taken``, ``breaking-change`` (see
    ``problem["diff"]``; declare a migration), ``version-not-higher`` (an older build than
    the installed one), ``version-manifest-changed`` (a changed manifest needs a new version),
    ``data-retained``, ``unauthorized``... ``kind`` is None when the core never answered.
    """


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


def refused(what: str, response: requests.Response) -> EnrolmentError:
    """An EnrolmentError for a refusal, carrying the core's problem and its kind."""
    problem = problem_of(response)
    return EnrolmentError(
        f"{what} refused ({response.status_code}): {describe(problem)}",
        response.status_code,
        problem,
    )


def _unchanged(problem: dict, manifest: dict) -> bool:
    """Say whether a ``version-not-higher`` refusal means "installed at exactly this version".

    The same version with the same manifest is a restart: nothing to do. A lower version is
    an older build than the installed one, and is surfaced, not swallowed.
    """
    return problem.get("current_version") == manifest["version"]


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

    The same version and manifest as installed is a no-op (the core's ``version-not-higher``
    naming this version). An update the core accepts without applying yet (``202``: a
    migration, or a ``base_url`` on another origin awaiting an operator's approval) is logged
    and the token returned. Every other refusal raises EnrolmentError with the problem's
    ``kind`` — a ``breaking-change`` among them, so a plugin never runs against schemas the
    core refused. The core may still be starting: connection errors and 5xx are retried
    ``attempts`` times.
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
                        describe(problem_of(response)),
                    )
                    return token
                error = refused("update", response)
                if error.kind == "version-not-higher" and _unchanged(error.problem, manifest):
                    log.info("already registered at this version")
                    return token
                if response.status_code != 401:
                    if response.status_code >= 500:
                        raise requests.ConnectionError(f"core answered {response.status_code}")
                    raise error
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
            raise refused("registration", response)
        except requests.RequestException as exc:
            wait = min(0.2 * 2**attempt, 2.0)
            log.info("core not reachable yet (%s); retrying in %.1f s", exc, wait)
            time.sleep(wait)
    raise EnrolmentError(f"the core at {core_url} did not answer after {attempts} attempts")
