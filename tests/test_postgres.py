"""The core on PostgreSQL: selecting it, its schema, and what dialect.py makes alike."""

import json
import re
import threading
import time

import psycopg
import pytest
import requests

from extframework import create_app, db, dialect
from extframework.errors import Conflict
from extframework.models import ALL_MODELS, Document, Plugin
from extframework.services import archives, export, lifecycle, storage
from extframework.settings import SettingsError
from tests.support.processes import flask_cli, start_core

pytestmark = pytest.mark.postgres
ON_POSTGRES = pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
# PostgreSQL needs a configured secret: a generated one would differ on every host.
SECRET = {"SECRET_KEY": "shared-by-every-host"}


def schema_of(app) -> dict[str, tuple[list[str], list[str]]]:
    """table -> (column names, index names), read from the database itself."""
    with app.app_context(), db.database.connection_context():
        return {
            table: (
                sorted(c.name for c in db.database.get_columns(table)),
                sorted(
                    i.name for i in db.database.get_indexes(table) if not i.name.endswith("_pkey")
                ),
            )
            for table in db.database.get_tables()
            if table != "sqlite_sequence"
        }


def sqlite_app(tmp_path):
    app = create_app(
        {"TESTING": True, "DATABASE": str(tmp_path / "lite.sqlite3"), "HEALTH_MONITOR": False},
        instance_path=str(tmp_path / "lite"),
    )
    with app.app_context():
        db.upgrade()
    return app


def test_upgrade_builds_the_same_tables_columns_and_indexes_as_on_sqlite(
    tmp_path, empty_database_url
):
    app = create_app(
        {"TESTING": True, "DATABASE_URL": empty_database_url, "HEALTH_MONITOR": False, **SECRET},
        instance_path=str(tmp_path / "instance"),
    )
    with app.app_context():
        db.upgrade()
    postgres = schema_of(app)
    assert dialect.current().name == "postgresql"
    expected = {m._meta.table_name for m in ALL_MODELS} | {"schema_version", "registry_version"}
    assert set(postgres) == expected
    assert postgres == schema_of(sqlite_app(tmp_path))


@ON_POSTGRES
def test_upgrade_is_idempotent_and_records_the_version(app):
    with app.app_context():
        assert db.upgrade() == (len(db.MIGRATIONS), len(db.MIGRATIONS))
        with db.database.connection_context():
            assert db.current_version() == len(db.MIGRATIONS)
            assert db.schema_problem() is None


def test_an_empty_database_says_upgrade_needed_and_the_upgrade_fixes_it(
    tmp_path, empty_database_url
):
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": empty_database_url,
            "HEALTH_MONITOR": False,
            "SECRET_KEY": "shared-by-every-host",
        },
        instance_path=str(tmp_path / "instance"),
    )
    client = app.test_client()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert "init-db" in response.get_json()["detail"]
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    assert f"upgraded from version 0 to {len(db.MIGRATIONS)}" in result.output
    assert client.get("/healthz").status_code == 200


def test_postgresql_without_a_configured_secret_key_stops_the_start(tmp_path, empty_database_url):
    """A secret generated per instance folder would differ on every host (issue 15)."""
    with pytest.raises(SettingsError, match="SECRET_KEY is required with DATABASE_URL"):
        create_app(
            {"TESTING": True, "DATABASE_URL": empty_database_url, "HEALTH_MONITOR": False},
            instance_path=str(tmp_path / "instance"),
        )
    assert not (tmp_path / "instance" / "secret_key").exists()


def test_a_database_url_that_is_not_postgresql_stops_the_start(tmp_path):
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        create_app(
            {"TESTING": True, "DATABASE_URL": "mysql://x/y"},
            instance_path=str(tmp_path / "instance"),
        )


@ON_POSTGRES
def test_documents_are_stored_as_json_text_and_times_read_as_on_sqlite(app, make_storage_plugin):
    """The ``json`` type keeps the text; raw SQL gets text for JSON and times on both engines."""
    plugin_id, _ = make_storage_plugin("acme-notes")
    with app.app_context(), db.database.connection_context():
        kind = db.database.execute_sql(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'document' AND column_name = 'data'"
        ).fetchone()[0]
        assert kind == "json"
        Document.create(
            tenant="default", plugin_id=plugin_id, collection="notes", doc_id="d1", data={"b": 1}
        )
        data, created = db.database.execute_sql(
            "SELECT data, created_at FROM document WHERE doc_id = ?", ["d1"]
        ).fetchone()
        assert data == '{"b":1}' and isinstance(created, str)
        assert Document.get(Document.doc_id == "d1").data == {"b": 1}


@ON_POSTGRES
def test_a_transition_waits_for_a_racing_one_and_re_reads_the_state(app, make_storage_plugin):
    """Two admins: a disable holds the row; a degrade that read ``active`` must not win after it.

    Without a row lock, READ COMMITTED lets the second transaction read the old state, wait for
    the row at its UPDATE, then overwrite ``disabled`` with ``degraded``.
    """
    make_storage_plugin("acme-notes")
    outcome: dict = {}

    def degrade() -> None:
        with app.app_context(), db.database.connection_context():
            plugin = Plugin.get(Plugin.plugin_id == "acme-notes")
            try:
                lifecycle.transition(plugin, "degraded", cause="health", actor="monitor")
                outcome["degrade"] = "applied"
            except Conflict:
                outcome["degrade"] = "refused"

    with app.app_context(), db.database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == "acme-notes")
        with db.write_transaction():
            lifecycle.transition(plugin, "disabled", cause="admin", actor="admin", verb="disable")
            racer = threading.Thread(target=degrade)
            racer.start()
            deadline = time.monotonic() + 10
            while not _waiting_on_a_lock() and racer.is_alive():
                assert time.monotonic() < deadline, "the degrade never reached the row"
                time.sleep(0.01)
        racer.join(10)
        assert outcome == {"degrade": "refused"}
        assert Plugin.get(Plugin.plugin_id == "acme-notes").state == "disabled"


def _waiting_on_a_lock() -> bool:
    """Another session of this database waits for a row lock (read on its own connection)."""
    with psycopg.connect(db.database.obj.database, autocommit=True) as con:
        return bool(
            con.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            ).fetchone()[0]
        )


@ON_POSTGRES
def test_export_and_archive_stream_through_a_server_side_cursor(app, make_storage_plugin, tmp_path):
    """psycopg's ordinary cursor would receive the whole namespace at execute() (the issue
    measured 359 MiB for 1M documents against 24 MiB through a named cursor)."""
    plugin_id, token = make_storage_plugin("acme-notes")
    with app.app_context(), db.database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == plugin_id)
        ns = storage.open_collection(plugin, None, "notes", write=True)
        for n in range(export.BATCH + 1):
            storage.create_document(ns, {"title": f"t{n}"})
        lines = export.export_plugin(plugin_id, actor="test")
        next(lines)  # the first batch is out; the cursor is open for the rest
        open_cursors = db.database.execute_sql("SELECT name FROM pg_cursors").fetchall()
        assert [name for (name,) in open_cursors if name.startswith("extfw_stream_")]
        assert sum(chunk.count("\n") for chunk in lines) == 1  # the rest: one document
        written = archives.write_archive(plugin, "default", tmp_path)
        assert written["documents"] == export.BATCH + 1


def test_a_real_core_runs_on_the_database_url_from_its_environment(tmp_path, empty_database_url):
    """init-db, a CLI command and two gunicorn workers, all on EXTFW_DATABASE_URL."""
    core = start_core(tmp_path, workers=2, threads=2, DATABASE_URL=empty_database_url, **SECRET)
    try:
        instance = tmp_path / "instance"
        env = {
            "EXTFW_DATABASE_URL": empty_database_url,
            "EXTFW_SECRET_KEY": SECRET["SECRET_KEY"],
            "EXTFW_PASSWORD": "a long password",
        }
        made = flask_cli(instance, "users", "create", "ops@example.com", "--role", "admin", env=env)
        assert made.returncode == 0, made.stderr
        for _ in range(4):  # both workers answer from PostgreSQL
            answer = requests.post(
                f"{core.url}/api/auth/token",
                json={"email": "ops@example.com", "password": "a long password"},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
        assert requests.get(f"{core.url}/healthz", timeout=10).status_code == 200
    finally:
        core.stop()
    assert not list(instance.glob("*.sqlite3*")), "a SQLite file was created"
    with psycopg.connect(empty_database_url) as con:
        assert con.execute('SELECT email FROM "user"').fetchall() == [("ops@example.com",)]


def test_two_hosts_upgrading_at_once_take_turns(tmp_path, empty_database_url):
    """The upgrade holds an advisory lock: the second waits, then finds nothing to do."""
    app = create_app(
        {"TESTING": True, "DATABASE_URL": empty_database_url, "HEALTH_MONITOR": False, **SECRET},
        instance_path=str(tmp_path / "instance"),
    )
    results, errors = [], []
    start = threading.Barrier(2)

    def upgrade() -> None:
        try:
            with app.app_context():
                start.wait(10)
                results.append(db.upgrade())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(results) == [(0, len(db.MIGRATIONS)), (len(db.MIGRATIONS), len(db.MIGRATIONS))]


@ON_POSTGRES
def test_metrics_count_documents_and_the_database_size(
    app, client, make_storage_plugin, plugin_api
):
    _, token = make_storage_plugin("acme-notes")
    assert plugin_api(token).create("notes", {"title": "héllo"}).status_code == 201
    text = client.get("/metrics").get_data(as_text=True)
    assert 'extfw_documents{plugin="acme-notes",tenant="default"} 1.0' in text, text
    stored = len(json.dumps({"title": "héllo"}, separators=(",", ":")))  # as SQLite counts it
    assert f'extfw_document_bytes{{plugin="acme-notes",tenant="default"}} {stored}.0' in text
    size = re.search(r"^extfw_database_bytes (\S+)$", text, re.MULTILINE)
    assert size and float(size.group(1)) > 1_000_000  # the database, not a missing file


@ON_POSTGRES
def test_a_file_backup_refuses_a_postgresql_installation(app, tmp_path):
    result = app.test_cli_runner().invoke(args=["backup", "create", str(tmp_path / "b.tar.gz")])
    assert result.exit_code != 0
    assert "pg_dump" in result.output
    assert not (tmp_path / "b.tar.gz").exists()
    assert not list(tmp_path.rglob("*.sqlite3")), "an empty SQLite file was created"
    (tmp_path / "old.tar.gz").write_bytes(b"not used")
    result = app.test_cli_runner().invoke(args=["backup", "restore", str(tmp_path / "old.tar.gz")])
    assert result.exit_code != 0 and "pg_dump" in result.output


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
def test_the_menu_lists_plugins_in_byte_order_of_their_names(app, make_plugin):
    """PostgreSQL's ICU collation would put "beta" before "Zeta"; the menu sorts by bytes."""
    from extframework.services import menu
    from tests.support.registry_fixtures import sample_manifest

    for plugin_id, name in (("p-beta", "beta"), ("p-zeta", "Zeta"), ("p-alpha", "alpha")):
        make_plugin(sample_manifest(plugin_id=plugin_id, name=name))
    with app.app_context(), db.database.connection_context():
        assert [entry.name for entry in menu.menu_for("admin", "default")] == [
            "Zeta",
            "alpha",
            "beta",
        ]


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
def test_an_update_checked_against_an_older_version_is_refused_not_applied(app, make_plugin):
    """Two updates checked at once: the second to commit re-reads the locked row and stops."""
    from extframework.errors import Conflict
    from extframework.models import Plugin
    from extframework.services import registry
    from tests.support.registry_fixtures import sample_manifest

    plugin, _ = make_plugin()
    with app.app_context(), db.database.connection_context():
        stale = registry.check_update(plugin, sample_manifest(version="1.1.0"))
        current = Plugin.get_by_id(plugin.id)
        fresh = registry.check_update(current, sample_manifest(version="1.2.0"))
        registry.apply_update(current, fresh, actor="first", app=app)
        with pytest.raises(Conflict, match="went from 1.0.0 to 1.2.0"):
            registry.apply_update(plugin, stale, actor="second", app=app)
        assert Plugin.get_by_id(plugin.id).version == "1.2.0"
