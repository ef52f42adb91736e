"""A busy database answers 503 as the document declares it, from any operation that writes.

Another connection holds SQLite's write lock (``BEGIN IMMEDIATE``) for the whole call, so the
core's write waits out its busy timeout (50 ms here) and answers 503 with ``Retry-After``.
"""

import sqlite3
from contextlib import contextmanager

import pytest

from extframework import create_app, db
from extframework.openapi import openapi_document
from tests.support.openapi_check import check_response


@pytest.fixture
def app(tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "DATABASE": str(tmp_path / "core.sqlite3"),
            "BASE_URL": "http://core.test",
            "HEALTH_MONITOR": False,
            "WTF_CSRF_ENABLED": False,
            "SQLITE_BUSY_TIMEOUT_MS": 50,
        },
        instance_path=str(tmp_path / "instance"),
    )
    with app.app_context():
        db.upgrade()
    yield app


@contextmanager
def write_lock_held(app):
    other = sqlite3.connect(app.config["DATABASE"], isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_a_busy_database_answers_the_documented_503(
    app, client, make_storage_plugin, make_user, user_token
):
    document = openapi_document()
    _, token = make_storage_plugin()
    make_user("op@example.com", role="admin", operator=True)
    operator = bearer(user_token("op@example.com"))
    with write_lock_held(app):
        created = client.post("/api/storage/notes", json={"title": "a"}, headers=bearer(token))
        tenants = client.put(
            "/api/registry/plugins/acme-notes/tenants", json={"tenants": None}, headers=operator
        )
    for response, path, method in (
        (created, "/api/storage/{collection}", "post"),
        (tenants, "/api/registry/plugins/{plugin_id}/tenants", "put"),
    ):
        assert response.status_code == 503, response.get_json()
        assert response.headers["Retry-After"] == "1"
        check_response(document, path, method, response)
    after = client.post("/api/storage/notes", json={"title": "a"}, headers=bearer(token))
    assert after.status_code == 201  # nothing was left half-written
