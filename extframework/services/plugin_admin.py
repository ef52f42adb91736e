"""Operator actions on a registered plugin: lifecycle verbs, token, tenants, pending updates.

Each action is audited with its actor; the state changes go through ``lifecycle.transition``.
"""

import logging
from pathlib import Path

from flask import Flask

from extframework.db import database
from extframework.errors import BadRequest, Conflict, NotFound
from extframework.models import AuditEvent, Installation, Plugin, Tenant, utcnow
from extframework.services import lifecycle, pending_updates, registry, uninstall
from extframework.services.secrets import PLUGIN_TOKEN_PREFIX, hash_secret, new_secret

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


def rotate_token(plugin: Plugin, *, actor: str) -> str:
    """Replace a plugin's token; the old one stops working at once. Return the new one."""
    if plugin.state == "deregistered":
        raise Conflict(
            f"Plugin {plugin.plugin_id!r} is deregistered; it has no token to rotate.",
            state=plugin.state,
        )
    token = new_secret(PLUGIN_TOKEN_PREFIX)
    with database.atomic():
        now = utcnow()
        Plugin.update(token_hash=hash_secret(token), token_rotated_at=now).where(
            Plugin.id == plugin.id
        ).execute()
        AuditEvent.create(actor=actor, action="plugin.rotate_token", target=plugin.plugin_id)
    plugin.token_hash, plugin.token_rotated_at = hash_secret(token), now
    log.info("plugin token rotated: %s by %s", plugin.plugin_id, actor)
    return token


def set_tenants(plugin: Plugin, slugs: list[str] | None, *, actor: str) -> None:
    """Make a plugin available to every tenant (None) or only to the listed ones."""
    with database.atomic():
        if slugs is None:
            plugin.restricted = False
        else:
            rows = list(Tenant.select().where(Tenant.slug.in_(slugs)))
            unknown = sorted(set(slugs) - {t.slug for t in rows})
            if unknown:
                raise BadRequest(
                    f"No such tenant: {', '.join(unknown)}.",
                    errors=[
                        {"path": "$.tenants", "message": f"unknown tenant {s!r}"} for s in unknown
                    ],
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
