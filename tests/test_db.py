"""The core's own schema upgrades: versioned, append-only, never losing rows."""

import os
import time

from peewee import CharField
from playhouse.migrate import SqliteMigrator, migrate

from extframework import create_app, db
from extframework.models import EnrolmentKey, Installation, PendingUpdate, Plugin, Tenant, User


def test_a_new_upgrade_step_keeps_existing_rows(app, make_user, monkeypatch):
    make_user("kept@example.com")

    def add_column():
        migrate(SqliteMigrator(db.database).add_column("user", "nickname", CharField(default="")))

    shipped = len(db.MIGRATIONS)
    monkeypatch.setattr(db, "MIGRATIONS", [*db.MIGRATIONS, add_column])
    with app.app_context():
        before, after = db.upgrade()
        assert (before, after) == (shipped, shipped + 1)
        assert db.upgrade() == (shipped + 1, shipped + 1)
        with db.database.connection_context():
            rows = db.database.execute_sql("SELECT email, nickname FROM user").fetchall()
            assert db.current_version() == shipped + 1
    assert rows == [("kept@example.com", "")]


def test_version_2_adds_installation_available_and_keeps_every_installation(app):
    """A version-1 database (no ``available`` column) upgrades with its rows available."""
    with app.app_context(), db.database.connection_context():
        tenant = Tenant.get(Tenant.slug == "default")
        plugin = Plugin.create(
            plugin_id="old", name="Old", version="1.0.0", base_url="http://x", manifest={}
        )
        Installation.create(plugin=plugin, tenant=tenant, uninstall_policy="archive")
        db.database.execute_sql("ALTER TABLE installation DROP COLUMN available")
        db.SchemaVersion.update(version=1).execute()
    with app.app_context():
        assert db.upgrade() == (1, len(db.MIGRATIONS))
        with db.database.connection_context():
            rows = db.database.execute_sql(
                "SELECT uninstall_policy, available FROM installation"
            ).fetchall()
    assert rows == [("archive", 1)]


def test_version_3_scopes_enrolment_keys_and_adds_pending_updates_keeping_every_key(app):
    """A version-2 database (no ``enrolment_key.plugin_id``, no ``pending_update``) upgrades
    with its keys unscoped and an empty queue of pending updates."""
    with app.app_context(), db.database.connection_context():
        EnrolmentKey.create(key_hash="h1", label="old key", uses_left=2, created_by="cli")
        db.database.execute_sql("DROP TABLE pending_update")
        db.database.execute_sql("ALTER TABLE enrolment_key DROP COLUMN plugin_id")
        db.SchemaVersion.update(version=2).execute()
    with app.app_context():
        assert db.upgrade() == (2, len(db.MIGRATIONS))
        with db.database.connection_context():
            keys = db.database.execute_sql(
                "SELECT key_hash, label, uses_left, plugin_id FROM enrolment_key"
            ).fetchall()
            plugin = Plugin.create(
                plugin_id="new", name="New", version="1.0.0", base_url="http://x", manifest={}
            )
            PendingUpdate.create(
                plugin=plugin,
                version="1.1.0",
                base_url="http://y",
                previous_version="1.0.0",
                previous_base_url="http://x",
                manifest={},
                requested_by="plugin:new",
            )
            assert PendingUpdate.select().count() == 1
    assert keys == [("h1", "old key", 2, None)]


def test_version_6_adds_the_namespace_index_and_keeps_every_document(app):
    """A version-5 database (no namespace index) upgrades with its documents unchanged."""
    with app.app_context(), db.database.connection_context():
        db.database.execute_sql(f'DROP INDEX "{db.NAMESPACE_INDEX}"')
        for i in range(3):
            db.database.execute_sql(
                "INSERT INTO document (tenant, plugin_id, collection, doc_id, version, "
                "created_at, updated_at, data) VALUES ('default', 'p', 'c', ?, 1, "
                "'2026-01-01', '2026-01-01', ?)",
                [f"d{i}", f'{{"n": {i}}}'],
            )
        db.SchemaVersion.update(version=5).execute()
    with app.app_context():
        assert db.upgrade() == (5, len(db.MIGRATIONS))
        assert db.upgrade() == (len(db.MIGRATIONS), len(db.MIGRATIONS))  # step 6 ran once
        with db.database.connection_context():
            rows = db.database.execute_sql(
                "SELECT doc_id, data FROM document ORDER BY pk"
            ).fetchall()
            index = db.database.execute_sql(
                "SELECT sql FROM sqlite_master WHERE name = ?", [db.NAMESPACE_INDEX]
            ).fetchone()
    assert rows == [("d0", '{"n": 0}'), ("d1", '{"n": 1}'), ("d2", '{"n": 2}')]
    assert index and '("plugin_id", "tenant", "collection")' in index[0]


def test_step_6_is_a_no_op_on_a_new_database_that_has_the_index(app):
    with app.app_context(), db.database.connection_context():
        db._migration_6()
        names = [
            row[0]
            for row in db.database.execute_sql(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'document'"
            )
        ]
    assert names.count(db.NAMESPACE_INDEX) == 1


def test_pragmas_are_applied_to_every_connection(app):
    with app.app_context(), db.database.connection_context():
        assert db.database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.database.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.database.execute_sql("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_a_request_closes_its_connection(client, make_user):
    make_user()
    client.get("/healthz")
    assert db.database.is_closed()
    assert User.select().count() == 1


def test_healthz_says_503_when_the_database_cannot_be_opened(tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "HEALTH_MONITOR": False,
            "DATABASE": str(tmp_path / "missing-dir" / "core.sqlite3"),
        },
        instance_path=str(tmp_path / "instance"),
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "1"


def test_healthz_answers_200_when_the_database_does(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_write_transactions_of_two_processes_take_turns(app, tmp_path):
    """A worker's write waits on the instance's write lock while another process holds it."""
    released = tmp_path / "child-released"
    read_end, write_end = os.pipe()
    with app.app_context(), db.database.connection_context():
        pid = os.fork()
        if pid == 0:  # the child: take the lock, say so, hold it, note the release
            status = 1
            try:
                db.database.close_all()  # never share the parent's SQLite connections
                db.database.connect()
                with db.write_transaction():
                    os.write(write_end, b"x")
                    time.sleep(0.3)
                    released.touch()
                status = 0
            finally:
                os._exit(status)
        assert os.read(read_end, 1) == b"x"
        with db.write_transaction():
            holder_was_done = released.exists()
        _, status = os.waitpid(pid, 0)
    assert status == 0
    assert holder_was_done


def test_a_write_transaction_inside_a_transaction_nests_without_queuing(app):
    """An open transaction may already hold SQLite's lock: queuing then could deadlock."""
    with app.app_context(), db.database.connection_context():
        lock, _ = db._write_lock()
        with db.database.atomic(), db.write_transaction():
            assert not lock.locked()
            Tenant.create(slug="nested", name="Nested")
        assert Tenant.select().where(Tenant.slug == "nested").count() == 1
