"""Updates that move a plugin to another server wait for an operator (issue 11, takeover).

A plugin token alone must not be able to send every user's request, and its request JWT, to a
server of its choosing. An update whose ``base_url`` changes origin (scheme, host or port) is
validated in full by ``registry.update`` and then kept here, unapplied, until an operator
approves it (``plugin_admin.approve_update``) or rejects it. See docs/registry.md.
"""

import logging
from urllib.parse import urlsplit

from extframework.db import write_transaction
from extframework.errors import NotFound
from extframework.models import AuditEvent, PendingUpdate, Plugin, iso_utc

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> str:
    """Return ``scheme://host[:port]`` of a URL, lower-cased, without a default port."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or DEFAULT_PORTS.get(scheme)
    if port is None or port == DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def moves_origin(plugin: Plugin, new_base_url: str) -> bool:
    return origin(new_base_url) != origin(plugin.base_url)


def store(
    plugin: Plugin, manifest: dict, new_base_url: str, changes: list[dict], *, actor: str
) -> PendingUpdate:
    """Keep this update for an operator, replacing the plugin's older pending one.

    The same manifest sent again keeps the existing row (and its id), so a plugin that
    re-sends its manifest on every start does not reset an operator's review.
    """
    with write_transaction():
        current = PendingUpdate.get_or_none(PendingUpdate.plugin == plugin)
        if current is not None and current.manifest == manifest:
            return current
        replaced = None
        if current is not None:
            replaced = current.id
            current.delete_instance()
        row = PendingUpdate.create(
            plugin=plugin,
            version=manifest["version"],
            base_url=new_base_url,
            previous_version=plugin.version,
            previous_base_url=plugin.base_url,
            manifest=manifest,
            changes=changes,
            requested_by=actor,
        )
        AuditEvent.create(
            actor=actor,
            action="plugin.update.pending",
            target=plugin.plugin_id,
            detail={**_audit_detail(row), "replaced": replaced},
        )
    log.info(
        "update of %s to %s moving to %s awaits approval (requested by %s)",
        plugin.plugin_id,
        row.version,
        origin(row.base_url),
        actor,
    )
    return row


def get(pending_id: int) -> PendingUpdate:
    row = PendingUpdate.get_or_none(PendingUpdate.id == pending_id)
    if row is None:
        raise NotFound(
            f"No pending update {pending_id}: it was approved, rejected, replaced by a newer "
            "update from the plugin, or discarded when the plugin was removed. List the "
            "current ones with GET /api/registry/pending-updates or `flask plugins pending`.",
            pending_id=pending_id,
        )
    return row


def for_plugin(plugin: Plugin) -> PendingUpdate | None:
    return PendingUpdate.get_or_none(PendingUpdate.plugin == plugin)


def list_pending() -> list[PendingUpdate]:
    return list(PendingUpdate.select(PendingUpdate, Plugin).join(Plugin).order_by(PendingUpdate.id))


def claim(row: PendingUpdate) -> None:
    """Take the row out of the queue inside the caller's transaction, or 404 if it is gone."""
    if PendingUpdate.delete().where(PendingUpdate.id == row.id).execute() != 1:
        get(row.id)  # raises NotFound
        raise NotFound(f"Pending update {row.id} was decided meanwhile.")


def reject(row: PendingUpdate, *, actor: str, reason: str = "") -> dict:
    """Discard a pending update on an operator's word; the plugin stays where it is."""
    with write_transaction():
        claim(row)
        AuditEvent.create(
            actor=actor,
            action="plugin.update.reject",
            target=row.plugin.plugin_id,
            detail={**_audit_detail(row), "reason": reason},
        )
    log.info("update %d of %s rejected by %s", row.id, row.plugin.plugin_id, actor)
    return summary(row)


def discard(plugin: Plugin, *, actor: str, cause: str) -> None:
    """Drop the plugin's pending update, if any, because the plugin left (deregistration)."""
    with write_transaction():
        row = for_plugin(plugin)
        if row is None:
            return
        row.delete_instance()
        AuditEvent.create(
            actor=actor,
            action="plugin.update.discard",
            target=plugin.plugin_id,
            detail={**_audit_detail(row), "cause": cause},
        )
    log.info("pending update %d of %s discarded: %s", row.id, plugin.plugin_id, cause)


def _audit_detail(row: PendingUpdate) -> dict:
    return {
        "id": row.id,
        "version": row.version,
        "previous_version": row.previous_version,
        "origin": origin(row.base_url),
        "previous_origin": origin(row.previous_base_url),
        "base_url": row.base_url,
    }


def summary(row: PendingUpdate) -> dict:
    return {
        "id": row.id,
        "plugin_id": row.plugin.plugin_id,
        "version": row.version,
        "previous_version": row.previous_version,
        "base_url": row.base_url,
        "previous_base_url": row.previous_base_url,
        "origin": origin(row.base_url),
        "previous_origin": origin(row.previous_base_url),
        "breaking": any(change.get("breaking") for change in row.changes),
        "changes": row.changes,
        "requested_by": row.requested_by,
        "requested_at": iso_utc(row.requested_at),
    }


def awaiting_detail(row: PendingUpdate) -> str:
    return (
        f"The update to {row.version} moves the plugin from {origin(row.previous_base_url)} to "
        f"{origin(row.base_url)}, so it awaits an operator's approval; until then the core "
        f"keeps calling {row.previous_base_url}. Poll GET /api/registry/plugins/"
        f"{row.plugin.plugin_id}/pending-update: 'pending_update' becomes null once it is "
        f"decided, and 'version' becomes {row.version} if it was approved."
    )
