"""The lifecycle state machine (SPEC §6): exactly its transitions, each recorded."""

import itertools

import pytest

from extframework.db import database
from extframework.errors import Conflict
from extframework.models import PLUGIN_STATES, AuditEvent, Plugin, PluginToken, Transition
from extframework.services import lifecycle

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_engines

SPEC_TRANSITIONS = {
    ("registered", "active"),
    ("registered", "deregistered"),
    ("active", "degraded"),
    ("degraded", "active"),
    ("active", "disabled"),
    ("degraded", "disabled"),
    ("disabled", "active"),
    ("active", "migrating"),
    ("migrating", "active"),
    ("disabled", "deregistered"),
}


def test_the_table_is_exactly_the_spec():
    table = {(a, b) for a, targets in lifecycle.ALLOWED.items() for b in targets}
    assert table == SPEC_TRANSITIONS
    assert set(lifecycle.ALLOWED) == set(PLUGIN_STATES)


@pytest.mark.parametrize(("start", "target"), list(itertools.product(PLUGIN_STATES, repeat=2)))
def test_every_pair_is_allowed_or_refused_per_the_table(app, make_plugin, start, target):
    plugin, _ = make_plugin(state=start)
    with app.app_context(), database.connection_context():
        before = Transition.select().count()
        if (start, target) in SPEC_TRANSITIONS:
            record = lifecycle.transition(plugin, target, cause="because", actor="tester")
            assert (record.from_state, record.to_state) == (start, target)
            assert (record.cause, record.actor) == ("because", "tester")
            assert record.at is not None
            assert Plugin.get_by_id(plugin.id).state == target == plugin.state
            assert Transition.select().count() == before + 1
            event = AuditEvent.select().order_by(AuditEvent.id.desc()).first()
            assert event.action == "plugin.transition"
            assert event.detail == {"from": start, "to": target, "cause": "because"}
        else:
            with pytest.raises(Conflict) as caught:
                lifecycle.transition(plugin, target, cause="because", actor="tester")
            assert caught.value.extra["allowed"] == sorted(lifecycle.ALLOWED[start])
            assert Plugin.get_by_id(plugin.id).state == start
            assert Transition.select().count() == before


def test_the_state_is_reread_so_a_stale_object_cannot_skip_a_step(app, make_plugin):
    plugin, _ = make_plugin(state="active")
    with app.app_context(), database.connection_context():
        stale = Plugin.get_by_id(plugin.id)
        lifecycle.transition(plugin, "disabled", cause="ops", actor="a")
        lifecycle.transition(plugin, "deregistered", cause="ops", actor="a")
        with pytest.raises(Conflict):
            lifecycle.transition(stale, "degraded", cause="health", actor="b")
        assert Plugin.get_by_id(plugin.id).state == "deregistered"


def test_deregistration_revokes_the_token(app, make_plugin):
    plugin, _ = make_plugin(state="disabled")
    with app.app_context(), database.connection_context():
        lifecycle.transition(plugin, "deregistered", cause="ops", actor="a")
        assert not plugin.tokens.where(PluginToken.revoked_at.is_null()).count()


def test_history_lists_every_transition_in_order(app, make_plugin):
    plugin, _ = make_plugin(state="deregistered")
    with app.app_context(), database.connection_context():
        steps = [(h["from"], h["to"]) for h in lifecycle.history(plugin)]
    assert steps == [
        (None, "registered"),
        ("registered", "active"),
        ("active", "disabled"),
        ("disabled", "deregistered"),
    ]
