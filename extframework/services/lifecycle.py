"""The plugin lifecycle (SPEC §6): one table of allowed transitions and one way to make them."""

import logging
from dataclasses import dataclass

from extframework import dialect
from extframework.db import write_transaction
from extframework.errors import Conflict
from extframework.models import AuditEvent, Plugin, Transition, iso_utc, utcnow
from extframework.services import plugin_tokens

log = logging.getLogger(__name__)

INITIAL_STATE = "registered"

# Storage modes (SPEC §6's storage column).
OPEN = "open"
READ_ONLY = "read-only"
FROZEN = "frozen"
CLOSED = "closed"
PER_POLICY = "per uninstall policy"

# Operator verbs -> the state each moves a plugin to (None: no transition of its own).
VERBS: dict[str, str | None] = {
    "disable": "disabled",
    "enable": "active",
    "deregister": "deregistered",
    "retry": None,  # retry a failed migration; the plugin stays migrating until it succeeds
}


@dataclass(frozen=True)
class StateRules:
    """What one lifecycle state means for every other service and for the console."""

    name: str
    menus: bool  # the shell lists its menu entries
    storage: str  # OPEN, READ_ONLY, FROZEN, CLOSED or PER_POLICY
    proxied: bool  # its views and actions are proxied
    probed: bool  # the health monitor checks it
    next: frozenset[str]  # every state it may move to, whoever moves it
    verbs: tuple[str, ...]  # what an operator may do to it


def _rules(name, *, menus, storage, proxied, probed, next, verbs) -> StateRules:  # noqa: A002
    return StateRules(name, menus, storage, proxied, probed, frozenset(next), tuple(verbs))


# SPEC §6, one row per state. The hot paths (proxy, storage, menu) read these as dict lookups.
STATES: dict[str, StateRules] = {
    r.name: r
    for r in (
        _rules(
            "registered",
            menus=False,
            storage=CLOSED,
            proxied=False,
            probed=True,
            next={"active", "deregistered"},
            verbs=["deregister"],
        ),
        _rules(
            "active",
            menus=True,
            storage=OPEN,
            proxied=True,
            probed=True,
            next={"degraded", "disabled", "migrating"},
            verbs=["disable"],
        ),
        _rules(
            "degraded",
            menus=False,
            storage=OPEN,  # in-flight writes must not be lost
            proxied=False,
            probed=True,
            next={"active", "disabled"},
            verbs=["disable"],
        ),
        _rules(
            "disabled",
            menus=False,
            storage=READ_ONLY,
            proxied=False,
            probed=False,  # an operator's disable outranks health
            next={"active", "deregistered"},
            verbs=["enable", "deregister"],
        ),
        _rules(
            "migrating",
            menus=False,
            storage=FROZEN,
            proxied=False,
            probed=False,
            next={"active"},  # only when its migration succeeds, never by an operator's enable
            verbs=["retry"],
        ),
        _rules(
            "deregistered",
            menus=False,
            storage=PER_POLICY,
            proxied=False,
            probed=False,
            next=set(),
            verbs=[],
        ),
    )
}

# Views of the table for callers that filter in SQL or compare against a set.
ALLOWED: dict[str, frozenset[str]] = {name: r.next for name, r in STATES.items()}
MENU_STATES = tuple(name for name, r in STATES.items() if r.menus)
PROXIED_STATES = frozenset(name for name, r in STATES.items() if r.proxied)
PROBED_STATES = tuple(name for name, r in STATES.items() if r.probed)
STORAGE = {name: r.storage for name, r in STATES.items()}


def rules(state: str) -> StateRules:
    """Return what ``state`` means (SPEC §6)."""
    return STATES[state]


def allowed_from(state: str) -> list[str]:
    return sorted(ALLOWED.get(state, frozenset()))


def verbs_from(state: str) -> list[str]:
    """Return the operator verbs ``state`` allows, in the table's order."""
    return list(STATES[state].verbs) if state in STATES else []


def transition(
    plugin: Plugin, to_state: str, *, cause: str, actor: str, verb: str | None = None
) -> Transition:
    """Move a plugin to another state if SPEC §6 allows it, recording who did it and why.

    ``verb`` names the operator action that asks for the move; it must also be one the current
    state allows (``enable`` cannot take a migrating plugin to active). The state is re-read
    inside the transaction, so two racing callers cannot both move the plugin out of the same
    state. ``plugin`` is updated in place.
    """
    with write_transaction():
        current = check_allowed(plugin, to_state, actor=actor, verb=verb)
        changes: dict = {"state": to_state, "updated_at": utcnow()}
        if to_state == "deregistered":
            plugin_tokens.revoke_all(plugin)  # deregistration revokes the plugin's tokens
        Plugin.update(changes).where(Plugin.id == plugin.id).execute()
        record = _record(plugin, current, to_state, cause=cause, actor=actor)
    plugin.state = to_state
    return record


def check_allowed(plugin: Plugin, to_state: str, *, actor: str, verb: str | None = None) -> str:
    """Return the plugin's current state, or raise 409 if SPEC §6 forbids moving to ``to_state``
    (by the operator action ``verb``, when one asks)."""
    # Locked: on PostgreSQL a racing transition waits here and reads the state this one wrote.
    current = dialect.current().locked(Plugin.select(Plugin.state).where(Plugin.id == plugin.id))
    current = current.scalar()
    if current is None:
        raise Conflict(f"Plugin {plugin.plugin_id!r} no longer exists.", allowed=[])
    if verb is not None and verb not in STATES[current].verbs:
        verbs = verbs_from(current)
        log.info(
            "operator action refused: %s %s while %s by %s", verb, plugin.plugin_id, current, actor
        )
        allowed = allowed_from(current)
        raise Conflict(
            f"Plugin {plugin.plugin_id!r} is {current}; an operator cannot {verb} it. "
            + (
                f"Allowed from {current}: {', '.join(allowed)}"
                if allowed
                else f"No transition leaves {current}"
            )
            + f"; operator actions: {', '.join(verbs) or 'none'}."
            + (
                " A migrating plugin becomes active only when its migration succeeds."
                if current == "migrating"
                else ""
            ),
            state=current,
            allowed=allowed,
            allowed_actions=verbs,
            kind="wrong-state",
        )
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
            kind="wrong-state",
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
