"""Database errors say what happened (issue 13): busy is 503, a full disk 507, a bug 500."""

import logging

import pytest
from peewee import OperationalError

from extframework.blueprints import storage as storage_blueprint
from extframework.db import database
from extframework.errors import database_error_kind
from extframework.models import Document

PROBLEM = "urn:extframework:problem:"


@pytest.fixture
def api(make_storage_plugin, plugin_api):
    _, token = make_storage_plugin("acme-notes")
    return plugin_api(token)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("database is locked", "unavailable"),
        ("unable to open database file", "unavailable"),
        ("database or disk is full", "storage-full"),
        ("no such table: document", "internal-error"),
        ('near "SELEC": syntax error', "internal-error"),
        ("no such column: x", "internal-error"),
    ],
)
def test_database_errors_are_classified_by_what_happened(message, kind):
    assert database_error_kind(OperationalError(message)) == kind


def test_a_full_disk_is_507_and_nothing_is_written(app, api):
    assert api.create("notes", {"title": "before"}).status_code == 201
    with app.app_context():
        pages = database.execute_sql("PRAGMA page_count").fetchone()[0]
        database.execute_sql(f"PRAGMA max_page_count = {pages}")  # this connection is "full"
    answer = api.create("notes", {"title": "x" * 200_000})
    with app.app_context():
        database.execute_sql("PRAGMA max_page_count = 1073741823")
        count = Document.select().count()
    assert answer.status_code == 507, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["type"] == PROBLEM + "storage-full" and "disk is full" in body["detail"]
    assert count == 1
    assert api.read("notes", "does-not-matter").status_code == 404  # reads still answer


def test_a_broken_query_is_a_500_logged_with_its_request_id_not_a_retry(api, monkeypatch, caplog):
    def broken(*args, **kwargs):
        database.execute_sql("SELECT * FROM no_such_table")

    monkeypatch.setattr(storage_blueprint.storage, "create_document", broken)
    with caplog.at_level(logging.ERROR, logger="extframework.errors"):
        answer = api.create("notes", {"title": "x"})
    assert answer.status_code == 500 and "Retry-After" not in answer.headers
    body = answer.get_json()
    request_id = answer.headers["X-Request-ID"]
    assert body["type"] == PROBLEM + "internal-error" and body["request_id"] == request_id
    assert request_id in body["detail"]
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback is in the log


def test_a_locked_database_is_still_a_503_with_retry_after(api, monkeypatch):
    def locked(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(storage_blueprint.storage, "create_document", locked)
    answer = api.create("notes", {"title": "x"})
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    assert answer.get_json()["type"] == PROBLEM + "unavailable"
