"""The core's problem+json answers (RFC 9457): branch on ``kind``, never on the prose.

Every refusal names its kind in ``type`` as ``urn:extframework:problem:{kind}``; the core's
docs/errors.md lists them. Field errors are ``{"pointer", "keyword", "message"}``.
"""

import requests

TYPE_PREFIX = "urn:extframework:problem:"


class ProblemError(Exception):
    """A refusal from the core: its status, its problem+json body and the kind it names."""

    def __init__(self, message: str, status: int | None = None, problem: dict | None = None):
        super().__init__(message)
        self.status = status
        self.problem = problem or {}

    @property
    def type(self) -> str | None:
        """The problem's ``type`` URI, as the core sent it."""
        return self.problem.get("type")

    @property
    def kind(self) -> str | None:
        """The short name of the problem's type (``breaking-change``, ``stale-if-match``...)."""
        return kind_of(self.problem)

    @property
    def errors(self) -> list[dict]:
        """The field errors, each ``{"pointer", "keyword", "message"}``."""
        return list(self.problem.get("errors") or [])


def kind_of(problem: dict) -> str | None:
    """Return the kind a problem's ``type`` names, or None for a body that is not the core's."""
    value = problem.get("type") if isinstance(problem, dict) else None
    if isinstance(value, str) and value.startswith(TYPE_PREFIX):
        return value.removeprefix(TYPE_PREFIX)
    return None


def problem_of(response: requests.Response) -> dict:
    """Return the response's problem+json body (a ``detail`` of its text if it is not JSON)."""
    try:
        body = response.json()
    except ValueError:
        return {"status": response.status_code, "detail": response.text[:300]}
    return body if isinstance(body, dict) else {"status": response.status_code, "detail": body}


def describe(problem: dict) -> str:
    """One line for a log: the detail, each field error, and each change of a refused diff."""
    parts = [str(problem.get("detail") or problem.get("title") or "")]
    parts += [
        f"{e.get('pointer') or '/'}: {e.get('message', '')}" for e in problem.get("errors") or []
    ]
    parts += [
        f"{c.get('collection')} {c.get('path')}: {c.get('kind')}" for c in problem.get("diff") or []
    ]
    return "; ".join(p for p in parts if p)
