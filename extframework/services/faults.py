"""What the shell tells a person, and a plugin's author, when a proxied call fails (SPEC §8).

One row per way a plugin can fail: the status the shell answers, the panel's title and detail
and, where the plugin's author can fix it, a hint (issue 16). The proxy (``services/proxy``)
classifies each answer; this module describes the fault and remembers the last ones of each
plugin, with their request ids, for the plugin's console page.
"""

import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from extframework.models import Plugin
from extframework.problems import problem_type

BUSY_RETRY_AFTER_S = 5


@dataclass(frozen=True)
class Fault:
    kind: str  # a key of FAULTS
    title: str
    detail: str
    status: int  # what the shell answers the browser
    headers: tuple[tuple[str, str], ...] = ()  # extra response headers (Retry-After)
    hint: str = ""  # what the plugin's author can do about it

    @property
    def problem_type(self) -> str:
        """The catalogued problem type of this fault (docs/errors.md), shown on the panel."""
        return problem_type(FAULT_KINDS[self.status])


# A fault's status names its kind: the plugin did not answer (504), answered something the
# shell refuses or refused the core's request JWT (502), is answering as many requests as it
# may at once (503), or refused the person (403).
FAULT_KINDS = {403: "forbidden", 502: "bad-gateway", 503: "unavailable", 504: "gateway-timeout"}

FAULTS = {
    "refused": (502, "{name} is not reachable", "The core could not connect to the plugin."),
    "unreachable": (502, "{name} is not reachable", "The connection to the plugin failed."),
    "timeout": (504, "{name} did not answer in time", "No answer within {timeout_s:g} s."),
    "busy": (
        503,
        "{name} is busy",
        "{name} is already answering {limit_calls} requests from this server; try again shortly.",
    ),
    "error": (502, "{name} ran into an error", "The plugin answered with HTTP {status}."),
    "not-html": (
        502,
        "{name} sent something that is not a page",
        "Expected an HTML fragment, got {content_type!r} (HTTP {status}).",
    ),
    "too-large": (502, "{name} sent too much", "The answer is larger than {limit} bytes."),
    "bad-redirect": (
        502,
        "{name} redirected outside itself",
        "The plugin answered HTTP {status} with a redirect the shell will not follow.",
    ),
    # A 401 is the plugin refusing the core's request JWT: the person's login is fine and
    # cannot fix it, so it is a bad gateway, never a 401 (which would ask the browser to log in).
    "jwt-refused": (
        502,
        "{name} refused the core's credentials",
        "The plugin answered HTTP 401: it could not verify the request JWT the core signed for"
        " this call{said}.",
    ),
    # A 403 without a page of its own: the plugin refused this person.
    "person-refused": (
        403,
        "{name} refused you",
        "The plugin answered HTTP 403: it does not let you ({role}) do this, although the"
        " core's rules for this plugin allow it.",
    ),
    "too-complex": (
        502,
        "{name} sent a page too complex to show",
        "The page has {problem}; the shell shows at most {max_elements} elements, nested at"
        " most {max_depth} deep.",
    ),
}

# What the plugin's author can do, where the fault is theirs to fix.
HINTS = {
    "jwt-refused": "If you run this plugin: verify the token with the core's public keys from"
    " /.well-known/jwks.json, and fetch them again when a token names a kid you have not seen"
    " (the core publishes a new key before it signs with it, and a copy may be cached for the"
    " JWKS's max-age); check that iss is the core's URL, aud is {plugin_id} and the algorithm"
    " is the one the key names; allow a few seconds of clock leeway on exp and iat (request"
    " JWTs are short-lived: REQUEST_JWT_TTL_S, 60 s by default). The plugin received this"
    " call's request id as X-Request-ID.",
    "person-refused": "If you think you should be allowed, ask an administrator. If you run"
    " this plugin: it refused a {role} that its manifest lets in; check how it reads the role"
    " and scopes claims, or declare the route's lowest role in the manifest so that the core"
    " refuses before calling it.",
}


def describe(plugin: Plugin, kind: str, **facts: object) -> Fault:
    """The fault ``kind`` of ``plugin``, its texts filled in from ``facts``."""
    status, title, detail = FAULTS[kind]
    values = {"name": plugin.name, "plugin_id": plugin.plugin_id, **facts}
    if kind == "jwt-refused":
        values["said"] = f" (it said: {facts['challenge']})" if facts.get("challenge") else ""
    headers = (("Retry-After", str(BUSY_RETRY_AFTER_S)),) if kind == "busy" else ()
    hint = HINTS[kind].format(**values) if kind in HINTS else ""
    return Fault(kind, title.format(**values), detail.format(**values), status, headers, hint)


def printable(text: str, limit: int = 200) -> str:
    """A header value fit to quote on a panel: printable ASCII, at most ``limit`` characters."""
    text = "".join(c for c in text if " " <= c <= "~")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# The last faults of each plugin seen by this process, for its console page: with the request
# id an author finds the call in the core's access log and in the plugin's own (X-Request-ID).
# Per process, not shared: with several workers or hosts each page shows its own process's.
RECENT_FAULTS = 20
_recent: dict[str, deque] = {}
_recent_lock = threading.Lock()


def remember(plugin_id: str, method: str, path: str, request_id: str, fault: Fault) -> None:
    entry = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "method": method,
        "path": path,
        "kind": fault.kind,
        "title": fault.title,
        "status": fault.status,
        "request_id": request_id,
    }
    with _recent_lock:
        _recent.setdefault(plugin_id, deque(maxlen=RECENT_FAULTS)).appendleft(entry)


def recent(plugin_id: str) -> list[dict]:
    """This process's last ``RECENT_FAULTS`` faults of a plugin, newest first."""
    with _recent_lock:
        return list(_recent.get(plugin_id, ()))
