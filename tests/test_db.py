"""The core's own schema upgrades: versioned, append-only, never losing rows."""

from peewee import CharField
from playhouse.migrate import SqliteMigrator, migrate

from extframework import create_app, db
from extframework.models import User


def test_a_new_upgrade_step_keeps_existing_rows(app, make_user, monkeypatch):
    make_user("kept@example.com")

    def add_column():
        migrate(SqliteMigrator(db.database).add_column("user", "nickname", CharField(default="")))

    monkeypatch.setattr(db, "MIGRATIONS", [*db.MIGRATIONS, add_column])
    with app.app_context():
        before, after = db.upgrade()
        assert (before, after) == (1, 2)
        assert db.upgrade() == (2, 2)
        with db.database.connection_context():
            rows = db.database.execute_sql("SELECT email, nickname FROM user").fetchall()
            assert db.current_version() == 2
    assert rows == [("kept@example.com", "")]


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
