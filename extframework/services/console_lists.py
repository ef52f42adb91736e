"""The console's plugin, enrolment-key and audit-log lists: search, sort and paging (issue 17).

Each function takes the page's query-string arguments and returns one page of rows, searched,
sorted and sliced in the database through ``listing``.
"""

from collections.abc import Mapping

from peewee import fn

from extframework.errors import BadRequest
from extframework.models import AuditEvent, EnrolmentKey, HealthCheck, Plugin, iso_utc
from extframework.services import audit, enrolment, listing, pending_updates

PLUGIN_SORTS = {
    "name": (Plugin.name, Plugin.plugin_id),
    "plugin_id": (Plugin.plugin_id,),
    "state": (Plugin.state, Plugin.name, Plugin.plugin_id),
    "version": (Plugin.version, Plugin.plugin_id),
    "health": (Plugin.last_health_at, Plugin.plugin_id),
}
KEY_SORTS = {
    "created": (EnrolmentKey.created_at, EnrolmentKey.id),
    "id": (EnrolmentKey.id,),
    "label": (EnrolmentKey.label, EnrolmentKey.id),
    "plugin_id": (EnrolmentKey.plugin_id, EnrolmentKey.id),
    "expires": (EnrolmentKey.expires_at, EnrolmentKey.id),
}
AUDIT_SORTS = {
    "at": (AuditEvent.id,),  # ids grow with time and, unlike times, never tie
    "actor": (AuditEvent.actor, AuditEvent.id),
    "action": (AuditEvent.action, AuditEvent.id),
    "target": (AuditEvent.target, AuditEvent.id),
}


def plugins(args: Mapping[str, str]) -> tuple[listing.Page, list[tuple], set[int]]:
    """One page of plugins, each with its last health check, and the ids with a pending move."""
    view = listing.parse(args, sorts=PLUGIN_SORTS, default_sort="name")
    page = listing.apply(
        Plugin.select(),
        view,
        sorts=PLUGIN_SORTS,
        search=(Plugin.name, Plugin.plugin_id, Plugin.base_url, Plugin.state),
    )
    last = last_checks([p.id for p in page.rows])
    rows = [(p, last.get(p.id)) for p in page.rows]
    pending = {row.plugin_id for row in pending_updates.list_pending()}
    return page, rows, pending


def last_checks(plugin_pks: list[int]) -> dict[int, dict]:
    """The newest health check of each plugin, in two queries whatever the page's length."""
    newest = (
        HealthCheck.select(fn.MAX(HealthCheck.id))
        .where(HealthCheck.plugin.in_(plugin_pks))
        .group_by(HealthCheck.plugin)
    )
    return {
        check.plugin_id: {
            "at": iso_utc(check.at),
            "ok": check.ok,
            "status_code": check.status_code,
            "latency_ms": check.latency_ms,
            "detail": check.detail,
        }
        for check in HealthCheck.select().where(HealthCheck.id.in_(newest))
    }


def enrolment_keys(args: Mapping[str, str]) -> tuple[listing.Page, list[dict]]:
    """One page of enrolment keys, newest first unless the view says otherwise."""
    view = listing.parse(args, sorts=KEY_SORTS, default_sort="created", default_dir="desc")
    page = listing.apply(
        EnrolmentKey.select(),
        view,
        sorts=KEY_SORTS,
        search=(EnrolmentKey.label, EnrolmentKey.plugin_id, EnrolmentKey.created_by),
    )
    return page, [enrolment.key_summary(k) for k in page.rows]


def audit_events(args: Mapping[str, str]) -> tuple[listing.Page, list[dict], dict]:
    """One page of audit events and the filters it applied.

    Besides the search, ``action`` keeps events whose action starts with it, ``target`` those
    with exactly that target, and ``before`` those older than that event id (the newest-first
    view pages with it, so new events do not shift the older pages).
    """
    before = args.get("before", "").strip()
    if before and not (before.isascii() and before.isdigit()):
        raise BadRequest(
            "'before' is the id of an audit event.", parameter="before", kind="invalid-query"
        )
    filters = {
        "before": int(before) if before else None,
        "action": args.get("action", "").strip() or None,
        "target": args.get("target", "").strip() or None,
    }
    view = listing.parse(
        args, sorts=AUDIT_SORTS, default_sort="at", default_dir="desc", per_page=audit.PAGE_SIZE
    )
    query = AuditEvent.select()
    if filters["before"] is not None:
        query = query.where(AuditEvent.id < filters["before"])
    if filters["action"]:
        query = query.where(AuditEvent.action.startswith(filters["action"]))
    if filters["target"]:
        query = query.where(AuditEvent.target == filters["target"])
    page = listing.apply(
        query,
        view,
        sorts=AUDIT_SORTS,
        search=(AuditEvent.actor, AuditEvent.action, AuditEvent.target),
    )
    return page, [audit.summary(e) for e in page.rows], filters


def older_cursor(page: listing.Page) -> int | None:
    """The ``before`` of the next page of the newest-first view, or None on its last page."""
    view = page.listing
    if view.sort != "at" or view.dir != "desc" or view.page != 1 or not page.has_next:
        return None
    return page.rows[-1].id
