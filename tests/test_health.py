"""Health sweeps against real plugin processes on loopback (SPEC §6)."""

import time

import pytest

from extframework import db
from extframework.db import database
from extframework.models import HealthCheck, Lease, Plugin
from extframework.services import health, lifecycle
from tests.support.registry_fixtures import sample_manifest

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_engines


@pytest.fixture
def sweep(app):
    app.config.update(HEALTH_TIMEOUT_S=0.5, HEALTH_FAILURES=3, HEALTH_HISTORY=100)

    def run(times: int = 1) -> None:
        for _ in range(times):
            with app.app_context(), database.connection_context():
                health.sweep(app.config)

    return run


@pytest.fixture
def read(app):
    def get(plugin: Plugin) -> tuple[Plugin, list[tuple[str | None, str, str]]]:
        with app.app_context(), database.connection_context():
            fresh = Plugin.get_by_id(plugin.id)
            steps = [(h["from"], h["to"], h["cause"]) for h in lifecycle.history(fresh)]
        return fresh, steps

    return get


def register_at(make_plugin, server, plugin_id: str, state: str = "registered") -> Plugin:
    plugin, _ = make_plugin(sample_manifest(plugin_id=plugin_id, base_url=server.url), state=state)
    return plugin


def test_real_plugins_end_in_their_spec_states(app, plugin_server, make_plugin, sweep, read):
    servers = {name: plugin_server("healthy") for name in ("healthy", "hang", "error", "flap")}
    plugins = {name: register_at(make_plugin, s, name) for name, s in servers.items()}

    sweep()  # the first passing probe: registered -> active
    for name, plugin in plugins.items():
        fresh, steps = read(plugin)
        assert fresh.state == "active", name
        assert steps[-1] == ("registered", "active", "first health check passed")

    servers["hang"].set_mode("hang")
    servers["error"].set_mode("error")
    servers["flap"].set_mode("flap")  # ok, fail, ok, ... from here on
    sweep(2)
    for name in ("hang", "error"):
        fresh, _ = read(plugins[name])
        assert (fresh.state, fresh.consecutive_failures) == ("active", 2), name

    sweep()  # third failure in a row reaches HEALTH_FAILURES
    for name, detail in (("hang", "no answer within 0.5 s"), ("error", "HTTP 500")):
        fresh, steps = read(plugins[name])
        assert fresh.state == "degraded", name
        assert (fresh.consecutive_failures, fresh.last_health_ok) == (3, False)
        assert steps[-1][:2] == ("active", "degraded")
        assert "3 consecutive health checks failed" in steps[-1][2] and detail in steps[-1][2]
    flap, flap_steps = read(plugins["flap"])
    assert flap.state == "active" and flap_steps[-1][:2] == ("registered", "active")
    healthy, healthy_steps = read(plugins["healthy"])
    assert healthy.state == "active" and len(healthy_steps) == 2

    servers["error"].set_mode("healthy")
    sweep()  # recovery: degraded -> active
    fresh, steps = read(plugins["error"])
    assert fresh.state == "active" and fresh.consecutive_failures == 0
    assert steps[-1] == ("degraded", "active", "health checks recovered")
    assert read(plugins["hang"])[0].state == "degraded"
    assert read(plugins["flap"])[0].state == "active"
    with app.app_context(), database.connection_context():
        for name, plugin in plugins.items():
            actors = [h["actor"] for h in lifecycle.history(plugin)]
            assert actors[0] == "test" and set(actors[1:]) == {"health-monitor"}, name


def test_a_plugin_that_never_answers_stays_registered(plugin_server, make_plugin, sweep, read):
    plugin = register_at(make_plugin, plugin_server("error"), "broken")
    sweep(4)
    fresh, steps = read(plugin)
    assert fresh.state == "registered" and fresh.consecutive_failures == 4
    assert steps == [(None, "registered", "manifest accepted")]


def test_probes_run_concurrently_so_a_hanging_plugin_delays_no_other(
    app, tmp_path, plugin_server, make_plugin, sweep, read
):
    # Each rendezvous plugin answers 200 only while the other is being probed too: if the
    # sweep probed one after the other, the first would time out and both would fail.
    app.config["HEALTH_TIMEOUT_S"] = 2
    meeting = tmp_path / "meeting"
    first = plugin_server("rendezvous", rendezvous=meeting, peers=2)
    second = plugin_server("rendezvous", rendezvous=meeting, peers=2)
    hanging = plugin_server("hang")
    plugins = [
        register_at(make_plugin, hanging, "hanging"),
        register_at(make_plugin, first, "first"),
        register_at(make_plugin, second, "second"),
    ]
    sweep()
    states = [read(p)[0].state for p in plugins]
    assert states == ["registered", "active", "active"]


def test_a_disabled_plugin_stays_disabled_and_is_not_probed(
    app, tmp_path, plugin_server, make_plugin, sweep, read
):
    record = tmp_path / "probes.log"
    server = plugin_server("healthy", record=record)
    plugin = register_at(make_plugin, server, "paused", state="disabled")
    sweep(2)
    fresh, steps = read(plugin)
    assert fresh.state == "disabled" and steps[-1][1] == "disabled"
    assert not record.exists()
    with app.app_context(), database.connection_context():
        assert HealthCheck.select().count() == 0


def test_health_history_is_bounded_per_plugin(app, plugin_server, make_plugin, sweep):
    app.config["HEALTH_HISTORY"] = 3
    server = plugin_server("healthy")
    plugins = [register_at(make_plugin, server, name) for name in ("one", "two")]
    sweep(5)
    with app.app_context(), database.connection_context():
        for plugin in plugins:
            checks = health.recent_checks(plugin)
            assert len(checks) == 3
            assert all(c.ok and c.status_code == 200 for c in checks)
        assert HealthCheck.select().count() == 6


def test_probe_reports_what_came_back(plugin_server):
    from tests.support.processes import free_port

    ok = health.probe(plugin_server("healthy").url, 1)
    assert (ok.ok, ok.status_code, ok.detail) == (True, 200, "HTTP 200 OK")
    assert ok.latency_ms is not None
    failing = health.probe(plugin_server("error").url + "/base", 1)
    assert (failing.ok, failing.status_code) == (False, 500)
    assert "/base/health answered HTTP 500" in failing.detail
    refused = health.probe(f"http://127.0.0.1:{free_port()}", 1)
    assert not refused.ok and "connection refused" in refused.detail


# --- the lease ------------------------------------------------------------------------


def test_the_lease_has_one_holder_until_it_expires(app):
    with app.app_context(), database.connection_context():
        assert health.acquire_lease("job", "a", 10, now=1000)
        assert not health.acquire_lease("job", "b", 10, now=1005)
        assert not health.acquire_lease("job", "a", 10, now=1009)
        assert health.acquire_lease("job", "b", 10, now=1010)
        assert not health.hold_lease_until("job", "a", 2000)
        assert health.hold_lease_until("job", "b", 1015)
        assert not health.acquire_lease("job", "a", 10, now=1014)
        assert health.acquire_lease("other", "a", 10, now=1014)


def test_two_monitors_in_one_database_sweep_once_per_interval(
    app, tmp_path, plugin_server, make_plugin
):
    app.config.update(HEALTH_INTERVAL_S=3600, HEALTH_TIMEOUT_S=1)
    record = tmp_path / "probes.log"
    plugin = register_at(make_plugin, plugin_server("healthy", record=record), "watched")
    first, second = health.Monitor(app), health.Monitor(app)
    assert first.holder != second.holder
    assert [first.tick(), second.tick(), first.tick(), second.tick()] == [
        True,
        False,
        False,
        False,
    ]
    assert len(record.read_text().splitlines()) == 1
    with app.app_context(), database.connection_context():
        assert Plugin.get_by_id(plugin.id).state == "active"


def test_a_host_whose_clock_runs_ahead_takes_the_lease_no_sooner(app, monkeypatch):
    """Leases are set and compared on the database's clock, not each host's (issue 15)."""
    app.config.update(HEALTH_INTERVAL_S=3600, HEALTH_TIMEOUT_S=1)
    first, second = health.Monitor(app), health.Monitor(app)
    assert first.tick()
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 7200)  # two hours ahead
    assert not second.tick()  # by its own clock the lease ran out an hour ago
    with app.app_context(), database.connection_context():
        expires = Lease.get(Lease.name == health.LEASE_NAME).expires_at
        assert abs(expires - (db.database_time() + 3600)) < 60


def test_a_lease_keeps_its_expiry_to_the_microsecond(app):
    """Unix times need 8-byte floats: PostgreSQL's REAL kept them to 128 s (issue 15)."""
    now = 1_796_159_550.427747
    with app.app_context(), database.connection_context():
        assert health.acquire_lease("job", "a", 10, now=now)
        assert Lease.get(Lease.name == "job").expires_at == now + 10
