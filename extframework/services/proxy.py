"""Contract A from the core's side: match a declared route, call the plugin, classify the answer.

Only routes the manifest declares are proxied (SPEC §8); everything else is ``NotFound``
before any byte goes to the plugin. Every call carries a fresh request JWT (SPEC §4). Every
way a plugin can fail comes back as a ``Fault`` that the shell renders as a panel.
"""

import logging
import os
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as HTTPTimeout

from extframework import observability
from extframework.errors import Forbidden, NotFound, Unavailable
from extframework.models import Plugin, Route
from extframework.services import (
    catalog,
    deadlines,
    faults,
    fragments,
    lifecycle,
    markup,
    registry_cache,
    tokens,
    urls,
)
from extframework.services.accounts import role_rank
from extframework.services.faults import FAULT_KINDS, FAULTS, Fault  # noqa: F401 (re-exported)
from extframework.services.installations import is_installed

log = logging.getLogger(__name__)

MAX_FRAGMENT_BYTES = 2 * 1024 * 1024
POOL_SIZE = 32
BUSY_WAIT_S = 0.1  # how long a call waits for one of its plugin's slots before "busy"
SEGMENT_SAFE = "-._~!$&'()*+,;=:@"


@dataclass(frozen=True)
class Target:
    """A declared route of a served plugin, with the concrete plugin path to call."""

    plugin: Plugin
    route: Route
    path: str
    params: dict[str, str]


@dataclass(frozen=True)
class Caller:
    """The person on whose behalf the core calls the plugin; becomes the request JWT's claims."""

    user_id: int
    name: str
    email: str
    tenant: str
    role: str
    request_id: str = ""  # sent as X-Request-ID, shown in fault panels


@dataclass(frozen=True)
class Fragment:
    html: str
    status: int


@dataclass(frozen=True)
class Redirect:
    location: str  # a path inside the shell


Outcome = Fragment | Redirect | Fault


# --- matching -------------------------------------------------------------------------


def _segments(path: str) -> list[str]:
    stripped = path.strip("/")
    return stripped.split("/") if stripped else []


def match_path(pattern: str, path: str) -> dict[str, str] | None:
    """Return the ``:params`` of ``path`` under ``pattern``, or None if it does not match."""
    expected, actual = _segments(pattern), _segments(path)
    if len(expected) != len(actual):
        return None
    params = {}
    for want, got in zip(expected, actual, strict=True):
        if got in ("", ".", ".."):
            return None
        if want.startswith(":"):
            params[want[1:]] = got
        elif want != got:
            return None
    return params


def concrete_path(pattern: str, params: dict[str, str]) -> str:
    """Build the path to call from the declared pattern, quoting each parameter."""
    parts = [
        quote(params[s[1:]], safe=SEGMENT_SAFE) if s.startswith(":") else s
        for s in _segments(pattern)
    ]
    return "/" + "/".join(parts)


def _specificity(route: Route) -> int:
    return sum(1 for s in _segments(route.path) if not s.startswith(":"))


# Route lookup runs on every proxied request: a plain statement, no query building.
_ROUTES_SQL = "SELECT * FROM route WHERE plugin_id = ? AND method = ?"


def resolve(plugin_id: str, method: str, path: str, *, role: str, tenant: str) -> Target:
    """Find the declared route a person may call, or raise why not (404, 503, 403)."""
    method = "GET" if method.upper() == "HEAD" else method.upper()
    plugin = catalog.serving_plugin(plugin_id)
    if plugin is None or plugin.state == "deregistered" or not _installed(plugin, tenant):
        raise NotFound(f"No plugin {plugin_id!r} is available to you.")
    if plugin.state not in lifecycle.PROXIED_STATES:
        raise Unavailable(
            f"{plugin.name} is {plugin.state} and cannot be opened right now.",
            headers={"Retry-After": "30"},
        )
    routes = registry_cache.cached(("routes", plugin.id, method), lambda: _routes(plugin, method))
    for route in routes:
        params = match_path(route.path, path)
        if params is not None:
            break
    else:
        raise NotFound(f"{plugin.name} declares no {method} {path}.")
    if role_rank(role) < role_rank(route.role):
        kind = "view" if route.action_id is None else f"action {route.action_id!r}"
        raise Forbidden(f"Your role ({role}) may not use this {kind}; it needs {route.role}.")
    return Target(plugin, route, concrete_path(route.path, params), params)


def _routes(plugin: Plugin, method: str) -> list[Route]:
    """The plugin's routes for one method, most specific first (cached: do not change them)."""
    routes = sorted(Route.raw(_ROUTES_SQL, plugin.id, method), key=_specificity, reverse=True)
    for route in routes:
        route.plugin = plugin
    return routes


def _installed(plugin: Plugin, tenant: str) -> bool:
    """Is the plugin in the tenant (available there, not uninstalled by its admin)? Cached."""
    return registry_cache.cached(
        ("installed", plugin.id, plugin.restricted, tenant), lambda: is_installed(plugin, tenant)
    )


# --- calling --------------------------------------------------------------------------

_pools: dict[int, urllib3.PoolManager] = {}
_pools_lock = threading.Lock()


def http_pool() -> urllib3.PoolManager:
    """Return this process's connection pools (a forked worker gets its own).

    urllib3 directly, not ``requests``: no environment proxy, no cookie jar (one pool serves
    every user, so a cookie one call receives can never travel with the next), no redirect
    followed, no retry; ~1 M instructions less per view (README, performance).
    """
    pid = os.getpid()
    pool = _pools.get(pid)
    if pool is None:
        with _pools_lock:
            pool = _pools.get(pid)
            if pool is None:
                pool = deadlines.pool_manager(num_pools=POOL_SIZE, maxsize=POOL_SIZE)
                _pools.clear()
                _pools[pid] = pool
    return pool


def mint_for(
    store: tokens.KeyStore, target: Target, caller: Caller, *, issuer: str, ttl_s: int
) -> str:
    return tokens.mint_request_jwt(
        store,
        issuer=issuer,
        plugin_id=target.plugin.plugin_id,
        user_id=str(caller.user_id),
        name=caller.name,
        email=caller.email,
        tenant=caller.tenant,
        role=caller.role,
        scopes=list(tokens.SCOPES_BY_ROLE[caller.role]),
        ttl_s=ttl_s,
    )


def forward(
    target: Target,
    caller: Caller,
    *,
    method: str,
    query_string: str,
    form: list[tuple[str, str]],
    store: tokens.KeyStore,
    issuer: str,
    jwt_ttl_s: int,
    timeout_s: float,
    max_concurrent: int | None = None,
) -> Outcome:
    """Call the plugin's declared route for a person and classify what came back.

    The whole answer, connect to last byte, must arrive within ``timeout_s``; at most
    ``max_concurrent`` calls to one plugin run at once in this process (None: no bound), and
    a call that finds no free slot within ``BUSY_WAIT_S`` is a ``busy`` fault.
    """
    started = time.perf_counter()
    slots = None
    if max_concurrent is not None:
        slots = deadlines.slots_for(target.plugin.plugin_id, max_concurrent)
        if not slots.take(BUSY_WAIT_S):
            outcome = _fault(target, method, "busy", limit_calls=max_concurrent)
            observability.record_proxy_call(target.plugin.plugin_id, outcome.kind, 0.0)
            _remember(target, method, caller, outcome)
            return outcome
    try:
        outcome = _call(
            target, caller, method, query_string, form, store, issuer, jwt_ttl_s, timeout_s
        )
    finally:
        if slots is not None:
            slots.give()
    label = outcome.kind if isinstance(outcome, Fault) else type(outcome).__name__.lower()
    observability.record_proxy_call(target.plugin.plugin_id, label, time.perf_counter() - started)
    if isinstance(outcome, Fault):
        _remember(target, method, caller, outcome)
    return outcome


def _call(
    target: Target,
    caller: Caller,
    method: str,
    query_string: str,
    form: list[tuple[str, str]],
    store: tokens.KeyStore,
    issuer: str,
    jwt_ttl_s: int,
    timeout_s: float,
) -> Outcome:
    plugin = target.plugin
    url = plugin.base_url.rstrip("/") + target.path
    if query_string:
        url += "?" + query_string
    headers = {
        "Authorization": "Bearer "
        + mint_for(store, target, caller, issuer=issuer, ttl_s=jwt_ttl_s),
        "Accept": "text/html",
    }
    if caller.request_id:
        headers["X-Request-ID"] = caller.request_id
    method = "GET" if method.upper() == "HEAD" else method.upper()
    body = None
    if method != "GET":
        body = urlencode(form)  # "" still sends Content-Length: 0, as a form post does
        if form:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
    with deadlines.Deadline(timeout_s) as deadline:
        try:
            response = http_pool().urlopen(
                method,
                url,
                body=body,
                headers=headers,
                retries=False,  # no retry, and a redirect is the plugin's answer, not followed
                redirect=False,
                timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
                preload_content=False,
            )
        except HTTPError as exc:
            return _failed(target, method, exc, deadline)
        complete = False
        try:
            try:
                outcome, complete = _classify(target, method, url, response, caller.role)
            except HTTPError as exc:  # the body broke off
                return _failed(target, method, exc, deadline)
            if deadline.finish():
                # Cut by the watchdog: whatever arrived is incomplete, and the connection is
                # closed below so that the pool never hands it out again.
                complete = False
                return _fault(target, method, "timeout", timeout_s=timeout_s)
            return outcome
        finally:
            if not complete:  # an unread or cut body: the connection cannot be reused
                response.close()
            response.release_conn()


def _failed(target: Target, method: str, exc: HTTPError, deadline: deadlines.Deadline) -> Fault:
    refused = isinstance(exc, NewConnectionError)  # a subclass of urllib3's TimeoutError
    if deadline.finish() or (isinstance(exc, HTTPTimeout) and not refused):
        return _fault(target, method, "timeout", timeout_s=deadline.timeout_s)
    if refused and "refused" in str(exc).lower():
        return _fault(target, method, "refused", reason=str(exc))
    return _fault(target, method, "unreachable", reason=str(exc))


def _charset(content_type: str) -> str | None:
    """The ``charset`` parameter of a Content-Type header, as ``requests`` reads it."""
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip(" \"'") or None
    return None


def _classify(
    target: Target, method: str, url: str, response: urllib3.BaseHTTPResponse, role: str
) -> tuple[Outcome, bool]:
    """Classify the answer; the flag says whether its body was read to the end."""
    status = response.status
    if 300 <= status < 400 and status != 304:
        location = response.headers.get("Location", "")
        shell_path = shell_location(location, url, target.plugin) if location else None
        if shell_path is None:
            return _fault(target, method, "bad-redirect", status=status, location=location), False
        return Redirect(shell_path), False
    if status >= 500:
        return _fault(target, method, "error", status=status), False
    header = response.headers.get("Content-Type", "")
    content_type = header.split(";")[0].strip().lower()
    if status == 401:  # whatever its body: the person cannot fix the core's credentials
        challenge = faults.printable(response.headers.get("WWW-Authenticate", ""))
        return _fault(target, method, "jwt-refused", status=status, challenge=challenge), False
    if status == 403 and content_type != "text/html":  # a 403 page of its own is shown as is
        return _fault(target, method, "person-refused", status=status, role=role), False
    if content_type != "text/html":
        return _fault(target, method, "not-html", status=status, content_type=content_type), False
    body = bytearray()
    for chunk in response.stream(64 * 1024):
        body += chunk
        if len(body) > MAX_FRAGMENT_BYTES:
            return _fault(target, method, "too-large"), False
    charset = _charset(header) or "utf-8"
    try:
        html = bytes(body).decode(charset, errors="replace")
    except LookupError:
        html = bytes(body).decode("utf-8", errors="replace")
    return Fragment(html, status), True


def shell_location(location: str, request_url: str, plugin: Plugin) -> str | None:
    """Map a plugin's redirect to a proxy path, or None if it leaves the plugin.

    The ``Location`` is read the way the browser would read it (``services/urls``): a
    ``/<TAB>/host`` or ``/\\host`` is another host, never a path (issue 11).
    """
    resolved = urls.resolve(location, request_url)
    path = urls.path_under_base(resolved.href, plugin.base_url) if resolved else None
    if path is None:  # a plugin path, as fragments and manifests write them
        path = urls.plugin_path(location, current_path="/", base_url=plugin.base_url)
    if path is None:
        return None
    prefix = fragments.proxy_prefix(plugin.plugin_id)
    shell_path = fragments.shell_url(path, prefix)
    return shell_path if urls.within(shell_path, prefix) else None


def check_markup(target: Target, method: str, fragment: Fragment) -> Fragment | Fault:
    """Refuse a fragment that would cost the sanitizer too much, before it parses (issue 11)."""
    try:
        markup.check(fragment.html)
    except markup.TooComplex as exc:
        return _fault(
            target,
            method,
            "too-complex",
            problem=str(exc),
            max_elements=markup.MAX_ELEMENTS,
            max_depth=markup.MAX_DEPTH,
        )
    return fragment


def _fault(target: Target, method: str, kind: str, **facts: object) -> Fault:
    """Log a fault of ``target`` and describe it for the panel (``services/faults``)."""
    log.warning(
        "plugin %s %s %s failed: %s %s",
        target.plugin.plugin_id,
        method,
        target.path,
        kind,
        {k: v for k, v in facts.items() if k != "reason"} or facts.get("reason", ""),
    )
    return faults.describe(target.plugin, kind, limit=MAX_FRAGMENT_BYTES, **facts)


def _remember(target: Target, method: str, caller: Caller, fault: Fault) -> None:
    method = "GET" if method.upper() == "HEAD" else method.upper()
    faults.remember(target.plugin.plugin_id, method, target.path, caller.request_id, fault)
