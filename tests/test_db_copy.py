"""`flask --app app db copy --to postgresql://…` moves a SQLite installation (issue 15)."""

import pytest

from extframework import create_app, db
from extframework.services import db_copy
from tests.conftest import PASSWORD
from tests.support.engines import raw_connection


@pytest.fixture
def target(empty_database_url):
    """The empty PostgreSQL database a copy goes into."""
    return empty_database_url


def on_postgresql(app, url: str, tmp_path, **config):
    """The same installation, started on the copy as a new host would be."""
    return create_app(
        {
            "TESTING": True,
            "HEALTH_MONITOR": False,
            "WTF_CSRF_ENABLED": False,
            "BASE_URL": app.config["BASE_URL"],
            "DATABASE_URL": url,
            "SECRET_KEY": app.config["SECRET_KEY"],
            **config,
        },
        instance_path=str(tmp_path / "new-host"),
    )


def test_a_copy_keeps_people_tokens_documents_keys_and_archives(
    app, client, make_user, user_token, make_storage_plugin, target, tmp_path
):
    make_user("ops@example.com", role="admin", operator=True)
    jwt_before = user_token("ops@example.com")
    _, token = make_storage_plugin("acme-notes")
    headers = {"Authorization": f"Bearer {token}"}
    body = b'{"title":"Zo\\u00eb","meta":{"owner":"ann"},"count":3,"customer_id":"c1"}'
    made = client.post(
        "/api/storage/notes", data=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert made.status_code == 201, made.get_json()
    doc = made.get_json()
    _, other_token = make_storage_plugin("old-plugin")
    client.post(
        "/api/storage/notes",
        json={"title": "kept in an archive"},
        headers={"Authorization": f"Bearer {other_token}"},
    )
    client.post("/login", data={"email": "ops@example.com", "password": PASSWORD})
    url = "/api/registry/plugins/old-plugin"
    assert client.put(f"{url}/tenants/default/uninstall-policy", json={"policy": "archive"})
    assert client.post(f"{url}/disable").status_code == 200
    gone = client.post(f"{url}/deregister", json={})
    assert gone.status_code == 200, gone.get_json()
    relative = gone.get_json()["uninstall"]["tenants"]["default"]["archive"]

    shared = tmp_path / "shared-archives"
    result = app.test_cli_runner().invoke(
        args=["db", "copy", "--to", target, "--archives-to", str(shared)]
    )
    assert result.exit_code == 0, result.output
    assert "document\t1 row(s)" in result.output and "signing_key\t1 row(s)" in result.output

    moved = on_postgresql(app, target, tmp_path, ARCHIVE_PATH=str(shared))
    new = moved.test_client()
    read = new.get(f"/api/storage/notes/{doc['id']}", headers=headers)
    assert read.status_code == 200 and read.get_json() == doc
    stored = "SELECT data, created_at FROM document WHERE doc_id = ?"
    with raw_connection(app) as before, raw_connection(moved) as after:
        text, _ = before.execute(stored, [doc["id"]]).fetchone()
        assert after.execute(stored, [doc["id"]]).fetchone()[0] == text  # byte for byte
    assert text.startswith('{"title":"Zo')  # the keys in the order they were written
    assert read.headers["ETag"] == made.headers["ETag"]
    query = new.get("/api/storage/notes?customer_id=c1", headers=headers).get_json()
    assert [d["id"] for d in query["items"]] == [doc["id"]]  # the copied collection index
    me = new.get("/api/auth/me", headers={"Authorization": f"Bearer {jwt_before}"})
    assert me.status_code == 200, me.get_json()  # the key came along, sealed as before
    login = new.post("/login", data={"email": "ops@example.com", "password": PASSWORD})
    assert login.status_code == 302
    assert new.post("/api/storage/notes", json={"title": "new"}, headers=headers).status_code == 201
    restored = moved.test_cli_runner().invoke(args=["plugins", "restore", relative])
    assert restored.exit_code == 0, restored.output

    again = app.test_cli_runner().invoke(args=["db", "copy", "--to", target])
    assert again.exit_code != 0 and "not empty" in again.output


def test_a_copy_that_does_not_verify_says_so(app, client, make_storage_plugin, target, monkeypatch):
    _, token = make_storage_plugin("acme-notes")
    for n in range(3):
        client.post(
            "/api/storage/notes",
            json={"title": f"n{n}"},
            headers={"Authorization": f"Bearer {token}"},
        )
    copy_table = db_copy._copy_table

    def copy_then_lose_a_document(source, model):
        copy_table(source, model)
        if model._meta.table_name == "document":  # a copy that lost a row: verify must notice
            db.database.execute_sql("DELETE FROM document WHERE pk = 2")

    monkeypatch.setattr(db_copy, "_copy_table", copy_then_lose_a_document)
    with pytest.raises(db_copy.CopyError, match="Table document did not verify: 3 row"):
        db_copy.copy(app.config["DATABASE"], target, app.config, archives_from=app.instance_path)


def test_only_a_current_sqlite_database_is_copied(app, target):
    with app.app_context(), db.database.connection_context():
        db.SchemaVersion.update(version=len(db.MIGRATIONS) - 1).execute()
    result = app.test_cli_runner().invoke(args=["db", "copy", "--to", target])
    assert result.exit_code != 0 and "init-db" in result.output
    result = app.test_cli_runner().invoke(args=["db", "copy", "--to", "mysql://x/y"])
    assert result.exit_code != 0 and "postgresql://" in result.output
