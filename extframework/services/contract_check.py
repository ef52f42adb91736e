"""The contract checker (issue 16): tell a plugin author which part of the contract breaks.

``preview_update`` is the dry run of ``PUT /api/registry/plugins/{id}`` (or of a registration):
it calls the same checks ``registry.update`` calls, in the same order, and applies nothing.
``check`` runs every probe the core alone can run, because only the core can sign request
JWTs: the manifest against the meta-schema, that dry run, ``/health``, six forged or wrong
request JWTs against every declared view (each must get 401), a valid one (``text/html``
within the proxy timeout, redirects staying under ``base_url``), and the shell's sanitizer over
the fragment. Every call goes through ``plugin_http`` (deadlines, no environment proxy), so a
hostile plugin cannot stall the checker; the calls run in parallel (docs/registry.md).
"""

import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from extframework.errors import BadRequest, DomainError, field_error
from extframework.models import Plugin
from extframework.problems import problem_type
from extframework.services import (
    contract_fragments,
    contract_tokens,
    health,
    migrations,
    pending_updates,
    plugin_http,
    proxy,
    registry,
    tokens,
    urls,
)
from extframework.services.contract_tokens import BAD_TOKENS
from extframework.services.manifest import base_url as manifest_base_url
from extframework.services.manifest import validate_manifest
from extframework.services.manifest_records import VIEW_ROLE

log = logging.getLogger(__name__)

PATH_PARAMETER = "contract-check"  # what fills a view's ``:name`` segments
MAX_REDIRECTS = 3
MAX_WORKERS = 16
BAD_TOKEN_MAX_BODY = 64 * 1024  # only the status of a refusal matters


@dataclass(frozen=True)
class Budget:
    """The whole check's deadline (``CONTRACT_CHECK_TIMEOUT_S``): no call outlives it."""

    seconds: float
    ends_at: float

    @classmethod
    def start(cls, seconds: float) -> "Budget":
        return cls(seconds, time.monotonic() + seconds)

    def left(self) -> float:
        return self.ends_at - time.monotonic()

    def spent(self) -> str:
        return (
            f"not called: the whole check may take at most {self.seconds:g} s "
            "(CONTRACT_CHECK_TIMEOUT_S) and that time ran out; fix the slower views first"
        )


def result(check: str, level: str, detail: str, route: str | None = None) -> dict:
    """One check's result: ``level`` is pass, warn (ok, but something to change) or fail."""
    return {"check": check, "ok": level != "fail", "level": level, "route": route, "detail": detail}


# --- the dry run ----------------------------------------------------------------------------


def problem_of(error: DomainError) -> dict:
    """The problem+json body the error renderer would answer for ``error``."""
    body = {
        "type": problem_type(error.slug),
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
    }
    if error.errors:
        body["errors"] = error.errors
    body.update(error.extra)
    return body


def preview_update(
    plugin_id: str, manifest: object, *, plugin: Plugin | None, config: Mapping
) -> dict:
    """What sending ``manifest`` would do now, applying nothing: the update of an installed
    plugin (``registry.update``), or the registration of a new or removed one."""
    answer = {"plugin_id": plugin_id, "installed_version": None, "diff": []}
    try:
        if plugin is None or plugin.state == "deregistered":
            return answer | _preview_registration(plugin_id, manifest, plugin, config)
        answer["installed_version"] = plugin.version
        return answer | _preview_update(plugin, manifest, config)
    except DomainError as error:
        problem = problem_of(error)
        answer["diff"] = problem.get("diff", [])
        return answer | {"outcome": "refused", "status": error.status, "problem": problem}


def _preview_registration(
    plugin_id: str, manifest: object, previous: Plugin | None, config: Mapping
) -> dict:
    checked = validate_manifest(manifest)
    _same_plugin(plugin_id, checked)
    if previous is not None:
        registry._check_reattachable(previous, checked)
    registry.health_probe(float(config["HEALTH_TIMEOUT_S"]))(manifest_base_url(checked))
    detail = "Registering this manifest with an enrolment key would succeed (201)."
    return {"outcome": "new", "status": 201, "version": checked["version"], "detail": detail}


def _same_plugin(plugin_id: str, manifest: dict) -> None:
    if manifest["plugin_id"] != plugin_id:
        raise BadRequest(
            f"This manifest is for {manifest['plugin_id']!r}, not {plugin_id!r}.",
            errors=[field_error(["plugin_id"], "const", f"must be {plugin_id!r}")],
            kind="invalid-manifest",
        )


def _preview_update(plugin: Plugin, manifest: object, config: Mapping) -> dict:
    version = manifest.get("version") if isinstance(manifest, dict) else None
    try:
        checked = registry.check_update(plugin, manifest)
    except DomainError as error:
        if error.slug == "version-not-higher" and validate_manifest(manifest) == plugin.manifest:
            return {
                "outcome": "unchanged",
                "status": error.status,
                "version": version,
                "detail": f"This is the installed manifest of {plugin.version}; an update "
                "would be refused as not higher (409), and nothing needs to change.",
                "problem": problem_of(error),
            }
        raise
    new_manifest = checked.manifest
    changes = [change.to_dict() for change in checked.changes]
    answer = {"version": new_manifest["version"], "diff": changes}
    new_base_url = manifest_base_url(new_manifest)
    if pending_updates.moves_origin(plugin, new_base_url):
        detail = (
            f"base_url moves to another origin ({new_base_url}): the update would be kept "
            "for an operator to approve (202) and applied only then."
        )
        return answer | {"outcome": "needs-approval", "status": 202, "detail": detail}
    if new_base_url != plugin.base_url:  # registry.apply_update probes a moved base_url
        registry.health_probe(float(config["HEALTH_TIMEOUT_S"]))(new_base_url)
    if checked.breaking:
        breaking = [change.to_dict() for change in checked.breaking]
        migration = {
            "handler": {
                "url": migrations.handler_url(new_manifest),
                "timeout_s": migrations.handler_timeout(new_manifest, config),
            },
            "breaking": breaking,
            "detail": f"The core would enter 'migrating' and POST the handler with a request "
            f"JWT and a migration context; it must rewrite the documents so they satisfy the "
            f"new schemas ({len(breaking)} breaking change(s)), idempotently, and answer 200.",
        }
        detail = "The update is breaking and declares a handler: a migration would start (202)."
        return answer | {
            "outcome": "breaking",
            "status": 202,
            "detail": detail,
            "migration": migration,
        }
    detail = f"The update would apply at once (200): {len(changes)} compatible change(s)."
    return answer | {"outcome": "compatible", "status": 200, "detail": detail}


# --- the probes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """A declared view as the checker calls it."""

    path: str  # as declared, ":name" segments included
    role: str

    @property
    def label(self) -> str:
        return f"GET {self.path}"

    def concrete(self) -> str:
        params = {s[1:]: PATH_PARAMETER for s in self.path.split("/") if s.startswith(":")}
        return proxy.concrete_path(self.path, params)


def views(manifest: dict) -> list[View]:
    return [
        View(item["view"]["path"], item.get("role") or VIEW_ROLE) for item in manifest["menu_items"]
    ]


def check(
    manifest: object,
    *,
    plugin: Plugin | None,
    store: tokens.KeyStore,
    config: Mapping,
    plugin_id: str | None = None,
) -> list[dict]:
    """Run every check on ``manifest`` (registered or not); return one result per check."""
    return check_with_verdict(
        manifest, plugin=plugin, store=store, config=config, plugin_id=plugin_id
    )[1]


def verdict_lines(verdict: dict | None) -> list[str]:
    """The dry run's changes and migration handler, as the commands print them under ``core``."""
    out = []
    for change in (verdict or {}).get("diff", []):
        kind = "breaking" if change.get("breaking") else "compatible"
        where = f"{change.get('collection')} {change.get('path') or '/'}"
        out.append(f"    {kind} change in {where}: {change.get('kind')}")
    handler = ((verdict or {}).get("migration") or {}).get("handler")
    if handler:
        out.append(f"    migration handler: POST {handler['url']}")
    return out


def check_with_verdict(
    manifest: object,
    *,
    plugin: Plugin | None,
    store: tokens.KeyStore,
    config: Mapping,
    plugin_id: str | None = None,
) -> tuple[dict | None, list[dict]]:
    """``check``, with the dry run's verdict (None for an invalid manifest) beside it."""
    try:
        valid = validate_manifest(manifest)
    except DomainError as error:
        listed = "; ".join(f"{e['pointer'] or '/'}: {e['message']}" for e in error.errors or [])
        detail = f"{error.detail} {listed}".strip() + " Fix these; nothing else was checked."
        return None, [result("manifest", "fail", detail)]
    results = [result("manifest", "pass", "Valid against the core's meta-schema.")]
    plugin_id = plugin_id or valid["plugin_id"]  # the audience of every token sent
    verdict = preview_update(plugin_id, valid, plugin=plugin, config=config)
    results.append(_verdict_result(verdict))
    base_url = manifest_base_url(valid)
    health_timeout = float(config["HEALTH_TIMEOUT_S"])
    proxy_timeout = float(config["PROXY_TIMEOUT_S"])
    budget = Budget.start(float(config["CONTRACT_CHECK_TIMEOUT_S"]))
    elsewhere = _elsewhere(plugin, plugin_id, base_url)
    tasks = [lambda: _health_result(base_url, min(health_timeout, budget.seconds))]
    for view in views(valid):
        calls = contract_tokens.for_view(store, plugin_id, view.role, config)
        for name, token in calls["bad"].items():
            tasks.append(_bad_token_task(name, token, base_url, view, proxy_timeout, budget))
        if elsewhere:
            tasks.append(lambda view=view: result("view-html", "warn", elsewhere, view.label))
        else:
            tasks.append(_valid_task(calls["valid"], plugin_id, valid, view, proxy_timeout, budget))
    with ThreadPoolExecutor(min(MAX_WORKERS, len(tasks)), "contract-check") as pool:
        for found in pool.map(lambda task: task(), tasks):
            results.extend(found if isinstance(found, list) else [found])
    failures = sorted({r["check"] for r in results if not r["ok"]})
    log.info("contract check of %s at %s: failed %s", plugin_id, base_url, failures or "none")
    return verdict, results


def _elsewhere(plugin: Plugin | None, plugin_id: str, base_url: str) -> str:
    """Why no valid request JWT is sent, or "": one the installed plugin would accept goes
    only to its registered base_url (an operator may aim the checks anywhere)."""
    if plugin is None or plugin.state == "deregistered" or plugin.plugin_id != plugin_id:
        return ""
    if base_url == plugin.base_url:
        return ""
    return (
        f"Not checked: a valid request JWT for the installed {plugin_id!r} goes only to its "
        f"registered base_url ({plugin.base_url}), never to {base_url}. Check the views once "
        "the update that moves base_url has been applied."
    )


def _verdict_result(verdict: dict) -> dict:
    outcome = verdict["outcome"]
    if outcome == "refused":
        problem = verdict["problem"]
        detail = f"The core would refuse it ({problem['status']} {problem['type']}): "
        return result("core", "fail", detail + problem["detail"])
    level = "warn" if outcome in ("breaking", "needs-approval") else "pass"
    return result("core", level, f"{outcome}: {verdict['detail']}")


def _health_result(base_url: str, timeout_s: float) -> dict:
    probed = health.probe(base_url, timeout_s)
    if probed.ok:
        return result("health", "pass", f"{health.health_url(base_url)} answered 200.")
    detail = (
        f"{probed.detail}. The core needs a 200 from GET {health.health_url(base_url)} within "
        f"{timeout_s:g} s, without a request JWT, to register the plugin and keep it active."
    )
    return result("health", "fail", detail)


def _get(
    url: str, token: str | None, timeout_s: float, budget: Budget, max_body: int
) -> plugin_http.Answer:
    left = budget.left()
    if left <= 0:
        return plugin_http.Answer(None, "", b"", 0.0, budget.spent())
    headers = {"Accept": "text/html", "User-Agent": "extframework-contract-check/1"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return plugin_http.call(
        "GET", url, timeout_s=min(timeout_s, left), max_body=max_body, headers=headers
    )


def _bad_token_task(
    name: str, token: str | None, base_url: str, view: View, timeout_s: float, budget: Budget
):
    def run() -> dict:
        url = base_url + view.concrete()
        answer = _get(url, token, timeout_s, budget, BAD_TOKEN_MAX_BODY)
        sent = BAD_TOKENS[name]
        if answer.failure:
            return result(name, "fail", f"With {sent}: {answer.failure}; expected 401.", view.label)
        if answer.status_code == 401:
            return result(name, "pass", f"With {sent}: 401.", view.label)
        detail = (
            f"With {sent}, {url} answered {answer.status} instead of 401: the plugin must verify "
            "every request JWT (signature with the core's JWKS key of that kid and only its "
            "algorithm, iss, aud = plugin_id, exp) and answer 401 when it fails."
        )
        return result(name, "fail", detail, view.label)

    return run


def _valid_task(
    token: str, audience: str, manifest: dict, view: View, timeout_s: float, budget: Budget
):
    def run() -> list[dict]:
        return _valid_call(token, audience, manifest, view, timeout_s, budget)

    return run


def _valid_call(
    token: str, audience: str, manifest: dict, view: View, timeout_s: float, budget: Budget
) -> list[dict]:
    """GET the view with a valid JWT, following redirects as the shell and browser would."""
    base_url = manifest_base_url(manifest)
    declared = [v.path for v in views(manifest)]
    path = view.concrete()
    url = base_url + path
    for _ in range(MAX_REDIRECTS + 1):
        answer = _get(url, token, timeout_s, budget, proxy.MAX_FRAGMENT_BYTES + 1)
        if answer.failure:
            detail = f"{answer.failure}; the shell waits at most {timeout_s:g} s for a view."
            return [result("view-html", "fail", detail, view.label)]
        if 300 <= (answer.status_code or 0) < 400 and answer.status_code != 304:
            location = answer.headers.get("Location", "")
            path = _redirect_path(location, url, base_url)
            if path is None:
                detail = (
                    f"{url} redirects to {location!r}, outside base_url {base_url}: the shell "
                    "refuses such a redirect. Redirect to a path of the plugin."
                )
                return [result("view-html", "fail", detail, view.label)]
            bare = path.split("?", 1)[0].split("#", 1)[0]
            if not any(proxy.match_path(p, bare) is not None for p in declared):
                detail = (
                    f"{url} redirects to {path}, which no view of the manifest declares: the "
                    "shell answers 404 there. Declare it, or redirect to a declared view."
                )
                return [result("view-html", "fail", detail, view.label)]
            url = base_url + path
            continue
        return _page_results(answer, url, path, audience, base_url, view)
    detail = f"More than {MAX_REDIRECTS} redirects from {view.label}; end at a page."
    return [result("view-html", "fail", detail, view.label)]


def _redirect_path(location: str, request_url: str, base_url: str) -> str | None:
    """The plugin path a redirect leads to, read as ``proxy.shell_location`` reads it."""
    if not location:
        return None
    resolved = urls.resolve(location, request_url)
    path = urls.path_under_base(resolved.href, base_url) if resolved else None
    if path is None:
        path = urls.plugin_path(location, current_path="/", base_url=base_url)
    return path


def _page_results(
    answer: plugin_http.Answer, url: str, path: str, audience: str, base_url: str, view: View
) -> list[dict]:
    """Judge the answer the shell would show for a view reached at ``path``."""
    status = answer.status_code or 0
    content_type = answer.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if status in (401, 403):
        detail = (
            f"{url} refused a valid request JWT ({answer.status}). Verify it with the key of "
            f"its kid from the core's /.well-known/jwks.json (refetch on an unknown kid), "
            f"iss = the core's URL, aud = {audience!r}."
        )
        return [result("view-html", "fail", detail, view.label)]
    if status >= 500:
        detail = f"{url} answered {answer.status}; the shell shows an error panel instead."
        return [result("view-html", "fail", detail, view.label)]
    if content_type != "text/html":
        detail = (
            f"{url} answered {answer.status} with Content-Type {content_type or 'none'!r}; a "
            "view must answer text/html (an HTML fragment)."
        )
        return [result("view-html", "fail", detail, view.label)]
    if len(answer.body) > proxy.MAX_FRAGMENT_BYTES:
        detail = f"The fragment is larger than {proxy.MAX_FRAGMENT_BYTES} bytes."
        return [result("view-html", "fail", detail, view.label)]
    ms = f"{answer.latency_ms:g} ms"
    passed = result("view-html", "pass", f"{answer.status} text/html in {ms}.", view.label)
    html = answer.body.decode("utf-8", errors="replace")
    level, detail = contract_fragments.review(
        html, plugin_id=audience, base_url=base_url, current_path=path
    )
    return [passed, result("fragment", level, detail, view.label)]
