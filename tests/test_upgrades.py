"""Upgrades (issue 13): a newer database is refused, an older one is reported, no step twice."""

import pytest

from extframework import create_app, db

SHIPPED = len(db.MIGRATIONS)


def _set_marker(app, version: int) -> None:
    with app.app_context(), db.database.connection_context():
        db.SchemaVersion.update(version=version).execute()


def _marker(app) -> int:
    with app.app_context(), db.database.connection_context():
        return db.current_version()


def _app_on(tmp_path):
    return create_app(
        {"TESTING": True, "DATABASE": str(tmp_path / "core.sqlite3"), "HEALTH_MONITOR": False},
        instance_path=str(tmp_path / "instance"),
    )


def test_init_db_refuses_a_newer_database_and_leaves_its_marker(app, runner):
    _set_marker(app, SHIPPED + 2)
    result = runner.invoke(args=["init-db"])
    assert result.exit_code != 0
    assert f"version {SHIPPED + 2}" in result.output and f"version {SHIPPED}" in result.output
    assert _marker(app) == SHIPPED + 2


def test_the_app_refuses_to_start_on_a_newer_database(app, tmp_path):
    _set_marker(app, SHIPPED + 1)
    with pytest.raises(db.SchemaTooNew) as refused:
        _app_on(tmp_path)
    message = str(refused.value)
    assert f"version {SHIPPED + 1}" in message and f"version {SHIPPED}" in message
    assert _marker(app) == SHIPPED + 1


def test_healthz_is_503_until_an_older_database_is_upgraded(app, client, runner):
    _set_marker(app, SHIPPED - 1)
    answer = client.get("/healthz")
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["type"] == "urn:extframework:problem:upgrade-needed"
    assert f"version {SHIPPED - 1}" in body["detail"] and "init-db" in body["detail"]
    assert runner.invoke(args=["init-db"]).exit_code == 0
    assert client.get("/healthz").status_code == 200


def test_healthz_is_503_when_a_newer_release_upgraded_the_database_meanwhile(app, client):
    _set_marker(app, SHIPPED + 1)
    answer = client.get("/healthz")
    assert answer.status_code == 503
    assert answer.get_json()["type"] == "urn:extframework:problem:schema-too-new"


def test_an_upgrade_runs_only_the_steps_not_yet_applied(app, monkeypatch):
    ran = []

    def applied_already():
        raise AssertionError("a step already applied ran again")

    steps = [applied_already] * SHIPPED + [lambda: ran.append("new")]
    monkeypatch.setattr(db, "MIGRATIONS", steps)
    with app.app_context():
        assert db.upgrade() == (SHIPPED, SHIPPED + 1)
        assert db.upgrade() == (SHIPPED + 1, SHIPPED + 1)
    assert ran == ["new"]
