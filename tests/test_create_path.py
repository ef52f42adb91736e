"""The single-document create's hot path (issue 14's create ÷ no-op figure): cheaper, not looser.

A create's INSERT runs as a one-statement transaction in autocommit under the write queue
(``db.write_statement``) instead of ``BEGIN IMMEDIATE`` / ``INSERT`` / ``COMMIT``. These tests
hold what that must keep: the create waits for another writer instead of failing, it is
committed when the answer leaves, and a refused document leaves nothing behind.
"""

import json
import sqlite3
import threading

from extframework.db import database, write_statement, writes_committed

DOC = {"title": "first", "count": 1}


def stored(app) -> list[tuple]:
    """The documents, read through a connection of their own (what other processes see)."""
    with sqlite3.connect(app.config["DATABASE"]) as other:
        return other.execute("SELECT doc_id, version, data FROM document ORDER BY pk").fetchall()


def test_a_create_is_committed_when_its_answer_leaves(app, make_storage_plugin, plugin_api):
    _, token = make_storage_plugin()
    response = plugin_api(token).create("notes", DOC)
    assert response.status_code == 201, response.get_json()
    [(doc_id, version, data)] = stored(app)
    assert (doc_id, version, json.loads(data)) == (response.get_json()["id"], 1, DOC)


def test_a_create_waits_for_another_writer_then_lands(app, make_storage_plugin, plugin_api):
    """Another connection holds SQLite's write lock and commits a write while the create waits:
    the create is neither refused (503) nor lost, whatever the order the two meet in."""
    _, token = make_storage_plugin()
    api = plugin_api(token)
    assert api.create("notes", DOC).status_code == 201  # warm: the caches are filled
    other = sqlite3.connect(app.config["DATABASE"], isolation_level=None, timeout=30)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE document SET version = version + 1")
    answers = []
    creator = threading.Thread(target=lambda: answers.append(api.create("notes", DOC)))
    creator.start()
    other.execute("COMMIT")
    other.close()
    creator.join(timeout=60)
    assert not creator.is_alive(), "the create did not answer within 60 s"
    assert [a.status_code for a in answers] == [201], [a.get_json() for a in answers]
    assert sorted(row[1] for row in stored(app)) == [1, 2]


def test_a_refused_document_leaves_nothing(app, make_storage_plugin, plugin_api):
    _, token = make_storage_plugin()
    api = plugin_api(token)
    response = api.create("notes", {"title": "", "count": -1})
    assert response.status_code == 422
    assert stored(app) == []


def test_a_statement_outside_a_transaction_commits_and_is_counted(app):
    with app.app_context(), database.connection_context():
        before = writes_committed()
        count = write_statement("UPDATE registry_version SET version = version WHERE id = ?", [1])
        assert count == 1
        assert not database.in_transaction()
        assert writes_committed() == before + 1


def test_a_statement_inside_a_transaction_is_part_of_it(app):
    """Nested in a caller's transaction, the statement is rolled back with it."""
    with app.app_context(), database.connection_context():
        version = database.execute_sql("SELECT version FROM registry_version").fetchone()[0]
        try:
            with database.atomic():
                write_statement("UPDATE registry_version SET version = version + 1", [])
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        after = database.execute_sql("SELECT version FROM registry_version").fetchone()[0]
        assert after == version
