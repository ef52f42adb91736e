"""What each lifecycle state means (SPEC §6): one table that services and the console read."""

import itertools

import pytest

from extframework.db import database
from extframework.errors import DomainError
from extframework.models import PLUGIN_STATES, Plugin, PluginToken, Transition
from extframework.services import lifecycle, storage
from tests.support.migration_fixtures import (
    ENUM_STATUS,
    STRING_STATUS,
    migration_manifest,
    wait_for,
)

PROBLEM = "application/problem+json"

# SPEC §6's table, written out again so the code's table is checked against the text.
SPEC_ROWS = {
    "registered": (False, "closed"),
    "active": (True, "open"),
    "degraded": (False, "open"),
    "disabled": (False, "read-only"),
    "migrating": (False, "frozen"),
    "deregistered": (False, "per uninstall policy"),
}
# Operator verbs SPEC §6 allows from each state (enable is disabled -> active only).
SPEC_VERBS = {
    "registered": {"deregister"},
    "active": {"disable"},
    "degraded": {"disable"},
    "disabled": {"enable", "deregister"},
    "migrating": set(),
    "deregistered": set(),
}
MOVING_VERBS = ("disable", "enable", "deregister")


@pytest.fixture
def operator(make_user, login):
    make_user("ops@example.com", role="admin", operator=True)
    login("ops@example.com")


def state_of(app, plugin_id: str = "test-plugin") -> tuple[str, str]:
    with app.app_context(), database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == plugin_id)
        return plugin.state, plugin.version


def test_every_state_has_one_row_matching_the_spec():
    assert set(lifecycle.STATES) == set(PLUGIN_STATES)
    for name, (menus, mode) in SPEC_ROWS.items():
        rules = lifecycle.rules(name)
        assert (rules.menus, rules.storage) == (menus, mode), name
        moving = {v for v in rules.verbs if lifecycle.VERBS[v] is not None}
        assert moving == SPEC_VERBS[name], name
        for verb in moving:
            assert lifecycle.VERBS[verb] in rules.next, (name, verb)
    assert lifecycle.verbs_from("migrating") == ["retry"]
    assert set(lifecycle.PROXIED_STATES) == {"active"}
    assert set(lifecycle.PROBED_STATES) == {"registered", "active", "degraded"}


@pytest.mark.parametrize(("state", "write"), list(itertools.product(PLUGIN_STATES, [False, True])))
def test_storage_access_follows_the_table(app, make_plugin, state, write):
    plugin, _ = make_plugin(state=state)
    mode = lifecycle.rules(state).storage
    expected_open = mode == "open" or (mode == "read-only" and not write)
    try:
        storage.check_access(plugin, write=write)
    except DomainError as refused:
        assert not expected_open, refused.detail
        assert refused.status == (503 if mode == "frozen" else 403)
    else:
        assert expected_open
    if mode == "frozen":
        storage.check_access(plugin, write=write, migration_context=True)


@pytest.mark.parametrize(("state", "verb"), list(itertools.product(PLUGIN_STATES, MOVING_VERBS)))
def test_operator_verbs_are_exactly_the_tables(app, client, make_plugin, operator, state, verb):
    make_plugin(state=state)
    with app.app_context(), database.connection_context():
        before = Transition.select().count()
    answer = client.post(f"/api/registry/plugins/test-plugin/{verb}", json={})
    if verb in SPEC_VERBS[state]:
        assert answer.status_code == 200, answer.get_json()
        assert state_of(app)[0] == lifecycle.VERBS[verb]
    else:
        assert answer.status_code == 409 and answer.mimetype == PROBLEM
        problem = answer.get_json()
        assert problem["state"] == state
        assert problem["allowed_actions"] == lifecycle.verbs_from(state)
        assert state_of(app)[0] == state
        with app.app_context(), database.connection_context():
            assert Transition.select().count() == before


def test_an_operator_can_remove_a_plugin_that_never_became_healthy(
    app, client, make_plugin, operator
):
    make_plugin(state="registered")
    page = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    assert "/console/plugins/test-plugin/deregister" in page
    assert "/console/plugins/test-plugin/enable" not in page
    assert "/console/plugins/test-plugin/disable" not in page
    done = client.post(
        "/console/plugins/test-plugin/deregister", data={"confirm": "yes"}, follow_redirects=True
    )
    assert "Test Plugin is now deregistered." in done.get_data(as_text=True)
    with app.app_context(), database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == "test-plugin")
        assert plugin.state == "deregistered"
        assert (
            not PluginToken.select()
            .where((PluginToken.plugin == plugin) & PluginToken.revoked_at.is_null())
            .exists()
        )
        last = Transition.select().order_by(Transition.id.desc()).first()
        assert (last.from_state, last.to_state) == ("registered", "deregistered")


def test_a_migrating_plugin_page_offers_no_enable(client, make_plugin, operator):
    make_plugin(state="migrating")
    page = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    for verb in MOVING_VERBS:
        assert f"/console/plugins/test-plugin/{verb}" not in page


def test_enable_cannot_end_a_failed_migration(
    app, client, operator, make_plugin, live_core, migrating_plugin, plugin_api
):
    """Found: Enable moved a plugin whose migration handler failed to active at its old version."""
    process = migrating_plugin(live_core, "fail")
    _, token = make_plugin(migration_manifest("1.0.0", process.url, STRING_STATUS))
    plugin_api(token, "default").create("items", {"title": "t", "status": "OPEN"})
    update = client.put(
        "/api/registry/plugins/test-plugin",
        json=migration_manifest("2.0.0", process.url, ENUM_STATUS),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert update.status_code == 202, update.get_json()

    def failed():
        run = client.get("/api/registry/plugins/test-plugin/migration").get_json()["migration"]
        return run["state"] == "failed"

    wait_for(failed)
    assert state_of(app) == ("migrating", "1.0.0")

    page = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    assert "/console/plugins/test-plugin/enable" not in page
    assert 'data-testid="migration-retry"' in page
    console = client.post("/console/plugins/test-plugin/enable", follow_redirects=True)
    assert "cannot enable" in console.get_data(as_text=True)
    assert state_of(app) == ("migrating", "1.0.0")

    api = client.post("/api/registry/plugins/test-plugin/enable", json={})
    assert api.status_code == 409 and api.mimetype == PROBLEM
    problem = api.get_json()
    assert problem["state"] == "migrating" and problem["allowed_actions"] == ["retry"]
    assert "only when its migration succeeds" in problem["detail"]
    assert state_of(app) == ("migrating", "1.0.0")
    frozen = plugin_api(token, "default").create("items", {"title": "u", "status": "OPEN"})
    assert frozen.status_code == 503
