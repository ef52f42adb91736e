"""Operator actions on a registered plugin: lifecycle verbs, token, tenants, pending updates.

Each action is audited with its actor; the state changes go through ``lifecycle.transition``.
"""

import logging
from datetime import datetime
from pathlib import Path

from flask import Flask

from extframework.db import write_transaction
from extframework.errors import BadRequest, Conflict, NotFound, field_error
from extframework.models import AuditEvent, Installation, Plugin, Tenant, iso_utc, utcnow
from extframework.services import lifecycle, pending_updates, plugin_tokens, registry, uninstall

log = logging.getLogger(__name__)

# Admin actions that move a plugin: verb -> (target state from lifecycle.VERBS, cause).
ADMIN_ACTIONS = {
    verb: (lifecycle.VERBS[verb], cause)
    for verb, cause in (
        ("disable", "disabled by an operator"),
        ("enable", "re-enabled by an operator"),
        ("deregister", "removed by an operator"),
    )
}


def change_state(
    plugin: Plugin,
    verb: str,
    *,
    actor: str,
    reason: str = "",
    confirm: str | None = None,
    archive_root: Path,
) -> dict | None:
    """Disable, re-enable or deregister a plugin on an operator's word.

    Deregistering applies each tenant's uninstall policy (``confirm`` must repeat the
    plugin_id when a tenant's policy is ``purge``; archives go under ``archive_root``) and
    returns what happened per tenant.
    """
    if verb not in ADMIN_ACTIONS:
        raise NotFound(f"No operator action {verb!r}; use {', '.join(ADMIN_ACTIONS)}.")
    target, cause = ADMIN_ACTIONS[verb]
    cause = f"{cause}: {reason}" if reason else cause
    if verb == "deregister":
        # uninstall re-checks inside its own transaction; this names the refusal by its verb.
        lifecycle.check_allowed(plugin, target, actor=actor, verb=verb)
        outcome = uninstall.deregister(
            plugin, actor=actor, cause=cause, confirm=confirm, archive_root=archive_root
        )
        # A removed plugin has nothing to move; registering it again starts afresh.
        pending_updates.discard(plugin, actor=actor, cause="the plugin was deregistered")
        return outcome
    lifecycle.transition(plugin, target, cause=cause, actor=actor, verb=verb)
    return None


def rotate_token(
    plugin: Plugin, *, actor: str, grace_s: float, revoke_now: bool = False
) -> tuple[str, datetime | None]:
    """Give a plugin a new token; the old one works ``grace_s`` more unless ``revoke_now``.

    Returns the new token (shown once) and when the old one stops working (None: at once).
    """
    if plugin.state == "deregistered":
        raise Conflict(
            f"Plugin {plugin.plugin_id!r} is deregistered; it has no token to rotate.",
            state=plugin.state,
            kind="wrong-state",
        )
    with write_transaction():
        token, old_expires = plugin_tokens.rotate(
            plugin, actor=actor, grace_s=grace_s, revoke_now=revoke_now
        )
        now = utcnow()
        Plugin.update(token_rotated_at=now).where(Plugin.id == plugin.id).execute()
        AuditEvent.create(
            actor=actor,
            action="plugin.rotate_token",
            target=plugin.plugin_id,
            detail={"old_token_expires_at": iso_utc(old_expires), "revoked_now": revoke_now},
        )
    plugin.token_rotated_at = now
    log.info(
        "plugin token rotated: %s by %s; old token %s",
        plugin.plugin_id,
        actor,
        "revoked" if old_expires is None else f"valid until {iso_utc(old_expires)}",
    )
    return token, old_expires


def set_tenants(plugin: Plugin, slugs: list[str] | None, *, actor: str) -> None:
    """Make a plugin available to every tenant (None) or only to the listed ones."""
    with write_transaction():
        if slugs is None:
            plugin.restricted = False
        else:
            rows = list(Tenant.select().where(Tenant.slug.in_(slugs)))
            unknown = sorted(set(slugs) - {t.slug for t in rows})
            if unknown:
                raise BadRequest(
                    f"No such tenant: {', '.join(unknown)}.",
                    errors=[
                        field_error(["tenants", i], "exists", f"no tenant {slug!r}")
                        for i, slug in enumerate(slugs)
                        if slug in unknown
                    ],
                    kind="invalid-body",
                )
            plugin.restricted = True
            allowed = [t.id for t in rows]
            # Rows of the other tenants stay, unavailable: they keep those tenants' policies.
            Installation.update(available=Installation.tenant.in_(allowed)).where(
                Installation.plugin == plugin
            ).execute()
            for tenant in rows:
                Installation.get_or_create(plugin=plugin, tenant=tenant)
        plugin.updated_at = utcnow()
        plugin.save()
        AuditEvent.create(
            actor=actor,
            action="plugin.tenants",
            target=plugin.plugin_id,
            detail={"tenants": slugs},
        )
    log.info("plugin %s tenants set to %s by %s", plugin.plugin_id, slugs or "all", actor)


def approve_update(pending_id: int, *, actor: str, app: Flask) -> dict:
    """Apply a pending update exactly as the plugin's own update would, with the operator as actor.

    It is checked again against the installed version, and the new ``base_url`` is probed; a
    refusal leaves it pending. Returns what ``registry.update`` returns for a direct update.
    """
    row = pending_updates.get(pending_id)
    plugin = Plugin.get_by_id(row.plugin_id)
    checked = registry.check_update(plugin, row.manifest)

    def claim() -> None:
        pending_updates.claim(row)
        AuditEvent.create(
            actor=actor,
            action="plugin.update.approve",
            target=plugin.plugin_id,
            detail=pending_updates.summary(row) | {"changes": len(row.changes)},
        )

    result = registry.apply_update(plugin, checked, actor=actor, app=app, claim=claim)
    log.info("update %d of %s approved by %s", pending_id, plugin.plugin_id, actor)
    return result


def reject_update(pending_id: int, *, actor: str, reason: str = "") -> dict:
    """Discard a pending update; the plugin keeps its version and server."""
    return pending_updates.reject(pending_updates.get(pending_id), actor=actor, reason=reason)
