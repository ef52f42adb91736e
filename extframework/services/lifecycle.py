"""The plugin lifecycle (SPEC §6): one table of allowed transitions and one way to make them."""

import logging

from extframework.db import write_transaction
from extframework.errors import Conflict
from extframework.models import AuditEvent, Plugin, Transition, iso_utc, utcnow
from extframework.services import plugin_tokens

log = logging.getLogger(__name__)

INITIAL_STATE = "registered"

ALLOWED: dict[str, set[str]] = {
    "registered": {"active"},
    "active": {"degraded", "disabled", "migrating"},
    "degraded": {"active", "disabled"},
    "disabled": {"active", "deregistered"},
    "migrating": {"active"},
    "deregistered": set(),
}

# What each state means for the other services (SPEC §6's table).
MENUS_SHOWN = frozenset({"active"})
STORAGE = {
    "registered": "closed",
    "active": "open",
    "degraded": "open",
    "disabled": "read-only",
    "migrating": "frozen",
    "deregistered": "per uninstall policy",
}


def allowed_from(state: str) -> list[str]:
    return sorted(ALLOWED.get(state, set()))


def transition(plugin: Plugin, to_state: str, *, cause: str, actor: str) -> Transition:
    """Move a plugin to another state if SPEC §6 allows it, recording who did it and why.

    The state is re-read inside the transaction, so two racing callers cannot both move the
    plugin out of the same state. ``plugin`` is updated in place.
    """
    with write_transaction():
        current = check_allowed(plugin, to_state, actor=actor)
        changes: dict = {"state": to_state, "updated_at": utcnow()}
        if to_state == "deregistered":
            plugin_tokens.revoke_all(plugin)  # deregistration revokes the plugin's tokens
        Plugin.update(changes).where(Plugin.id == plugin.id).execute()
        record = _record(plugin, current, to_state, cause=cause, actor=actor)
    plugin.state = to_state
    return record


def check_allowed(plugin: Plugin, to_state: str, *, actor: str) -> str:
    """Return the plugin's current state, or raise 409 if SPEC §6 forbids moving to ``to_state``."""
    current = Plugin.select(Plugin.state).where(Plugin.id == plugin.id).scalar()
    if current is None:
        raise Conflict(f"Plugin {plugin.plugin_id!r} no longer exists.", allowed=[])
    if to_state not in ALLOWED.get(current, set()):
        allowed = allowed_from(current)
        log.info(
            "transition refused: %s %s -> %s by %s", plugin.plugin_id, current, to_state, actor
        )
        raise Conflict(
            f"Plugin {plugin.plugin_id!r} is {current}; it cannot become {to_state}. "
            + (
                f"Allowed from {current}: {', '.join(allowed)}."
                if allowed
                else f"No transition leaves {current}."
            ),
            state=current,
            allowed=allowed,
        )
    return current


def reenter_initial_state(plugin: Plugin, *, cause: str, actor: str) -> Transition:
    """Record deregistered -> registered for a plugin_id registered again (a new registration).

    Not a transition of SPEC §6's table: no state leaves ``deregistered``; registering the same
    plugin_id again starts its life over on the same row. The caller updates the row.
    """
    return _record(plugin, "deregistered", INITIAL_STATE, cause=cause, actor=actor)


def enter_initial_state(plugin: Plugin, *, cause: str, actor: str) -> Transition:
    """Record the first transition, (none) -> registered, for a plugin just stored."""
    return _record(plugin, None, INITIAL_STATE, cause=cause, actor=actor)


def _record(
    plugin: Plugin, from_state: str | None, to_state: str, *, cause: str, actor: str
) -> Transition:
    record = Transition.create(
        plugin=plugin, from_state=from_state, to_state=to_state, cause=cause, actor=actor
    )
    AuditEvent.create(
        actor=actor,
        action="plugin.transition",
        target=plugin.plugin_id,
        detail={"from": from_state, "to": to_state, "cause": cause},
    )
    log.info(
        "plugin %s: %s -> %s (%s) by %s",
        plugin.plugin_id,
        from_state or "(none)",
        to_state,
        cause,
        actor,
    )
    return record


def history(plugin: Plugin) -> list[dict]:
    """Return the plugin's transitions, oldest first."""
    return [
        {
            "at": iso_utc(t.at),
            "from": t.from_state,
            "to": t.to_state,
            "cause": t.cause,
            "actor": t.actor,
        }
        for t in Transition.select()
        .where(Transition.plugin == plugin)
        .order_by(Transition.at, Transition.id)
    ]
