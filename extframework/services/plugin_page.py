"""What the console's plugin page opens with: the summary and the paged health history (issue 17).

The summary says what the plugin's state means from the lifecycle table (SPEC §6), how many of
its last kept health checks passed, its last failure and why, and when its token was last used.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

from extframework import relative_time
from extframework.models import HealthCheck, Plugin, Transition, iso_utc
from extframework.services import lifecycle, listing, migrations, plugin_tokens

HEALTH_PAGE_SIZE = 20

# Why a plugin is in each state and what brings it out: the lifecycle table says what the state
# does (menus, storage, proxying, probing), not how it got there.
WHY = {
    "registered": "Its manifest was accepted; it becomes active when a health check first passes.",
    "active": "It answers its health checks and people can use it.",
    "degraded": "Its health checks fail; it becomes active again when they pass.",
    "disabled": "An operator disabled it; only an operator's enable brings it back.",
    "migrating": "A breaking update is migrating its data; it becomes active when the "
    "migration succeeds.",
    "deregistered": "An operator removed it; its data went per each tenant's uninstall policy.",
}
STORAGE = {
    lifecycle.OPEN: "storage open",
    lifecycle.READ_ONLY: "storage read-only (reads work, writes are refused)",
    lifecycle.FROZEN: "storage frozen (every call but the migration's gets 503)",
    lifecycle.CLOSED: "storage closed",
    lifecycle.PER_POLICY: "storage per the uninstall policy",
}


@dataclass(frozen=True)
class Uptime:
    passed: int
    checks: int

    @property
    def percent(self) -> float | None:
        return None if not self.checks else 100.0 * self.passed / self.checks


def meaning(state: str) -> dict:
    """Say why a plugin is in ``state`` and what the state does, from the lifecycle table."""
    rules = lifecycle.rules(state)
    effects = [
        "menus shown" if rules.menus else "menus hidden",
        "views served" if rules.proxied else "views not served",
        STORAGE[rules.storage],
        "health checked" if rules.probed else "not health checked",
    ]
    return {"why": WHY.get(state, ""), "effects": effects, "next": sorted(rules.next)}


def uptime(plugin: Plugin, window: int) -> Uptime:
    """Count the passed checks among the plugin's last ``window`` health checks."""
    recent = (
        HealthCheck.select(HealthCheck.ok)
        .where(HealthCheck.plugin == plugin)
        .order_by(HealthCheck.id.desc())
        .limit(window)
    )
    results = [row.ok for row in recent]
    return Uptime(sum(1 for ok in results if ok), len(results))


def last_failure(plugin: Plugin) -> dict | None:
    """The newest failed health check kept, else the newest move to ``degraded``, with why."""
    check = (
        HealthCheck.select()
        .where((HealthCheck.plugin == plugin) & (HealthCheck.ok == False))  # noqa: E712
        .order_by(HealthCheck.id.desc())
        .first()
    )
    if check is not None:
        return {"at": iso_utc(check.at), "reason": check.detail, "status": check.status_code}
    moved = (
        Transition.select()
        .where((Transition.plugin == plugin) & (Transition.to_state == "degraded"))
        .order_by(Transition.id.desc())
        .first()
    )
    if moved is not None:
        return {"at": iso_utc(moved.at), "reason": moved.cause, "status": None}
    return None


def health_history(plugin: Plugin, args) -> listing.Page:
    """One page of the plugin's health checks, newest first (``?health_page=N``)."""
    view = listing.Listing(
        q="",
        sort="at",
        dir="desc",
        page=listing.parse_page(args.get("health_page", "")),
        per_page=HEALTH_PAGE_SIZE,
    )
    return listing.apply(
        HealthCheck.select().where(HealthCheck.plugin == plugin),
        view,
        sorts={"at": (HealthCheck.id,)},
    )


# A summary costs four queries; only a plugin page asks, for its one plugin.
LIVE_MAX_PLUGINS = 100
LIVE_MAX_SUMMARIES = 5

# A summary line is a list of parts: a string, a time (relative_time.time_part) or
# {"strong": text}; console/_parts.html renders them and static/live.js builds the same nodes.
Parts = list[str | dict]


def summary_parts(plugin: Plugin, window: int) -> dict[str, Parts]:
    """Say the summary's uptime, last failure, version and token last use, as parts."""
    seen = uptime(plugin, window)
    if seen.checks:
        said: Parts = [
            f"{seen.percent:.0f}% — {seen.passed} of the last {seen.checks} health checks passed"
        ]
    else:
        said = ["no health checks yet"]
    said += _failures_in_a_row(plugin, "; ")
    failure = last_failure(plugin)
    failed: Parts = ["none recorded"]
    if failure is not None:
        failed = [relative_time.time_part(failure["at"])]
        failed.append(f": {reason(failure['reason'] or 'no reason given', failure['status'])}")
    tokens = plugin_tokens.live_tokens(plugin)
    used = [token["last_used_at"] for token in tokens if token["last_used_at"]]
    token_used: Parts = ["no live token (revoked)"]
    if tokens:
        token_used = [relative_time.time_part(max(used)) if used else "not yet"]
        token_used += [" · issued or rotated ", relative_time.time_part(plugin.token_rotated_at)]
    return {
        "uptime": said,
        "last_failure": failed,
        "version": [plugin.version],
        "token_used": token_used,
    }


def live(
    plugin_ids: Sequence[str], summaries: Sequence[str] = (), window: int = 100
) -> dict[str, dict]:
    """The state, health and migration progress of the named plugins, for static/live.js.

    Plugins named in ``summaries`` too (a plugin page's) also get their ``summary_parts`` over
    the last ``window`` checks.
    """
    wanted = list(dict.fromkeys(plugin_ids))[:LIVE_MAX_PLUGINS]
    summarised = set(list(dict.fromkeys(summaries))[:LIVE_MAX_SUMMARIES])
    result = {}
    for plugin in Plugin.select().where(Plugin.plugin_id.in_(wanted)):
        result[plugin.plugin_id] = {
            "state": plugin.state,
            **meaning(plugin.state),
            "health": _health_text(plugin),
            "health_parts": health_parts(plugin),
            "migration": _migration(plugin) if plugin.state == "migrating" else None,
        }
        if plugin.plugin_id in summarised:
            result[plugin.plugin_id]["summary"] = summary_parts(plugin, window)
    return result


def reason(detail: str, status: int | None) -> str:
    """Say a check's ``detail`` with its HTTP ``status`` once: added only if not said already.

    A probe's detail says "… answered HTTP 500 Internal Server Error" (older rows "… answered
    500"); a stored reason from elsewhere may not name the status.
    """
    if not status or re.search(rf"\b(?:HTTP|answered) {status}\b", detail):
        return detail
    return f"{detail} (HTTP {status})"


def health_parts(plugin: Plugin) -> Parts:
    """The last health check as parts: result, when, and the failures in a row if any."""
    if plugin.last_health_at is None:
        return ["not checked yet"]
    said: Parts = [
        "ok · " if plugin.last_health_ok else "failed · ",
        relative_time.time_part(plugin.last_health_at),
    ]
    return said + _failures_in_a_row(plugin, " · ")


def _failures_in_a_row(plugin: Plugin, separator: str) -> Parts:
    if not plugin.consecutive_failures:
        return []
    return [separator, {"strong": f"{plugin.consecutive_failures} failure(s) in a row"}]


def _health_text(plugin: Plugin) -> str:
    if plugin.last_health_at is None:
        return "not checked yet"
    said = "ok" if plugin.last_health_ok else "failed"
    text = f"{said} · {relative_time.relative(plugin.last_health_at)}"
    if plugin.consecutive_failures:
        text += f" · {plugin.consecutive_failures} failure(s) in a row"
    return text


def _migration(plugin: Plugin) -> dict | None:
    run = migrations.latest_run(plugin)
    if run is None:
        return None
    progress = (run.report or {}).get("progress") or {}
    return {
        "state": "interrupted" if migrations.is_abandoned(run) else run.state,
        "progress": f"{progress['checked']} of {progress['total']} documents checked"
        if run.state == "running" and "total" in progress
        else "",
    }
