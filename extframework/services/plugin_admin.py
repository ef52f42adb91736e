"""Operator actions on a registered plugin: its lifecycle verbs, its token, its tenants.

Each action is audited with its actor; the state changes go through ``lifecycle.transition``.
"""

import logging
from pathlib import Path

from extframework.db import database
from extframework.errors import BadRequest, Conflict, NotFound
from extframework.models import AuditEvent, Installation, Plugin, Tenant, utcnow
from extframework.services import lifecycle, uninstall
from extframework.services.secrets import PLUGIN_TOKEN_PREFIX, hash_secret, new_secret

log = logging.getLogger(__name__)

# Admin actions on the lifecycle: verb -> (target state, cause).
ADMIN_ACTIONS = {
    "disable": ("disabled", "disabled by an operator"),
    "enable": ("active", "re-enabled by an operator"),
    "deregister": ("deregistered", "removed by an operator"),
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
        return uninstall.deregister(
            plugin, actor=actor, cause=cause, confirm=confirm, archive_root=archive_root
        )
    lifecycle.transition(plugin, target, cause=cause, actor=actor)
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
