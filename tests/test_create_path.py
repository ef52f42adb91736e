"""The single-document create's hot path (issue 14's create ÷ no-op figure): cheaper, not looser.

A create's INSERT runs as a one-statement transaction in autocommit under the write queue
(``db.write_statement``) instead of ``BEGIN IMMEDIATE`` / ``INSERT`` / ``COMMIT``. These tests
hold what that must keep: the create waits for another writer instead of failing, it is
committed when the answer leaves, and a refused document leaves nothing behind.
"""

import json
import re
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


def test_a_created_document_reads_back_as_it_was_answered(make_storage_plugin, plugin_api):
    """The answer's id and timestamps (formatted on the create path without ``render``) are
    what a read of the stored row gives."""
    _, token = make_storage_plugin()
    api = plugin_api(token)
    created = api.create("notes", DOC).get_json()
    assert re.fullmatch(r"[0-9a-f]{32}", created["id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", created["created_at"])
    assert created["updated_at"] == created["created_at"]
    assert api.read("notes", created["id"]).get_json() == created


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


# --- the subschema validators made once (schema_validation._descend) ----------------------

NESTED = {
    "$defs": {
        "owner": {"type": "object", "properties": {"name": {"type": "string"}}},
        "node": {
            "$dynamicAnchor": "node",
            "type": "object",
            "properties": {"children": {"type": "array", "items": {"$dynamicRef": "#node"}}},
        },
    },
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 2, "maxLength": 5},
        "n": {"type": "integer", "minimum": 0},
        "owner": {"$ref": "#/$defs/owner"},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
        "tree": {"$ref": "#/$defs/node"},
        "kind": {"enum": ["x", "y"]},
        "with_id": {
            "$id": "https://example.com/inner",
            "type": "object",
            "properties": {"v": {"type": "number"}},
            "additionalProperties": False,
        },
        "meta": {
            "type": "object",
            "properties": {"score": {"type": "number", "maximum": 10}},
            "unevaluatedProperties": False,
        },
    },
    "required": ["title"],
    "if": {"properties": {"kind": {"const": "x"}}, "required": ["kind"]},
    "then": {"required": ["n"]},
    "else": {"properties": {"n": {"maximum": 5}}},
    "additionalProperties": False,
}
DOCUMENTS = [
    {"title": "ok", "n": 1},
    {"title": "x", "n": -1, "owner": {"name": 3}, "tags": ["a", "c", "b", "a"], "extra": 1},
    {"title": "fine", "kind": "x"},
    {"title": "fine", "n": 9},
    {"title": 5, "tree": {"children": [{"children": [{"children": 1}]}]}},
    {"title": "tt", "with_id": {"v": "no", "w": 1}, "meta": {"score": 11, "other": 1}},
    {"title": "tt", "meta": {"score": 1}, "with_id": {"v": 1.5}},
]


def described(errors) -> list[tuple]:
    return sorted(
        (list(e.absolute_path), list(e.absolute_schema_path), e.validator, e.message)
        for e in errors
    )


def test_validation_with_subschema_validators_made_once_finds_what_jsonschema_finds():
    """The same errors (where, which keyword, which message) as jsonschema's own validator,
    on the first validation and on the later ones that reuse the subschema validators."""
    from jsonschema import Draft202012Validator

    from extframework.services.schema_validation import FORMAT_CHECKER, BudgetedValidator

    ours = BudgetedValidator(NESTED, format_checker=FORMAT_CHECKER)
    theirs = Draft202012Validator(NESTED, format_checker=FORMAT_CHECKER)
    for _ in range(3):
        for document in DOCUMENTS:
            expected = described(theirs.iter_errors(document))
            assert described(ours.iter_errors(document)) == expected, document
    assert described(ours.iter_errors(DOCUMENTS[0])) == []
    assert len(described(ours.iter_errors(DOCUMENTS[1]))) >= 5


def test_a_new_schema_never_gets_the_subschema_validator_of_an_earlier_one():
    """Schemas made and dropped one after another (CPython reuses their ids): each is
    checked against its own bounds, not against a validator cached for an earlier object."""
    from extframework.services.schema_validation import FORMAT_CHECKER, BudgetedValidator

    for bound in range(60):
        schema = {"type": "object", "properties": {"n": {"type": "integer", "maximum": bound}}}
        validator = BudgetedValidator(schema, format_checker=FORMAT_CHECKER)
        assert validator.is_valid({"n": bound}), bound
        assert not validator.is_valid({"n": bound + 1}), bound
        del schema, validator


# --- the serving plugin, shared while the registry version holds -------------------------


def change(app, sql: str) -> None:
    """Change the registry as another process would: its own connection, its own commit."""
    with sqlite3.connect(app.config["DATABASE"], isolation_level=None) as other:
        other.execute(sql)


def test_a_state_or_token_change_by_another_process_is_seen_by_the_next_create(
    app, make_storage_plugin, plugin_api
):
    _, token = make_storage_plugin()
    api = plugin_api(token)
    assert api.create("notes", DOC).status_code == 201
    change(app, "UPDATE plugin SET state = 'disabled'")
    refused = api.create("notes", DOC)
    assert refused.status_code == 403
    assert refused.get_json()["type"].endswith("storage-closed"), refused.get_json()
    change(app, "UPDATE plugin SET state = 'active'")
    assert api.create("notes", DOC).status_code == 201
    change(app, "UPDATE plugin_token SET revoked_at = '2000-01-01 00:00:00'")
    assert api.create("notes", DOC).status_code == 401
    assert len(stored(app)) == 2
