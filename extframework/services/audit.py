"""The audit log: who did what to which target, newest first.

Services write events inside the transaction of the change, with ``record`` (the event and
its log line in one call) or ``AuditEvent.create``.
"""

import json
import logging

from extframework.models import AuditEvent, iso_utc

log = logging.getLogger(__name__)

PAGE_SIZE = 100


def record(actor: str, action: str, target: str = "", detail: dict | None = None) -> AuditEvent:
    """Write one audit event and its log line; call it inside the change's transaction."""
    event = AuditEvent.create(actor=actor, action=action, target=target, detail=detail or {})
    log.info("audit: %s %s %s", actor, action, target)
    return event


def recent(
    *,
    limit: int = PAGE_SIZE,
    before: int | None = None,
    action: str | None = None,
    target: str | None = None,
) -> tuple[list[AuditEvent], int | None]:
    """Return up to ``limit`` events newest first, and the ``before`` cursor of the next page.

    ``action`` matches a prefix (``user.`` finds every user event), ``target`` the whole
    target; the cursor is None on the last page.
    """
    query = AuditEvent.select()
    if before is not None:
        query = query.where(AuditEvent.id < before)
    if action:
        query = query.where(AuditEvent.action.startswith(action))
    if target:
        query = query.where(AuditEvent.target == target)
    rows = list(query.order_by(AuditEvent.id.desc()).limit(limit + 1))
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None


def summary(event: AuditEvent) -> dict:
    """Describe an event for a page: ISO time and the detail as compact JSON."""
    return {
        "id": event.id,
        "at": iso_utc(event.at),
        "actor": event.actor,
        "action": event.action,
        "target": event.target,
        "detail": json.dumps(event.detail, separators=(",", ":"), sort_keys=True)
        if event.detail
        else "",
    }
