"""Namespace-scoped scans read their own namespace in key order (issue 14): query plans.

Each test runs a real code path with every statement it sends to SQLite recorded, then asks
SQLite for the plan of each statement that reads the ``document`` table: it must seek
through the namespace index (or the unique one), never scan the table nor sort. Without
ANALYZE statistics SQLite plans the same at ten rows as at a million, so a small database
shows the plan a large one gets.
"""

import re
from contextlib import contextmanager

import pytest

from extframework import db
from extframework.db import database
from extframework.models import Plugin
from extframework.services import archives, export, migration_checks, registry, storage, uninstall
from tests.support.storage_fixtures import NOTES_SCHEMA

READS_DOCUMENTS = re.compile(r'\b(FROM|UPDATE)\s+"?document"?(\s|$)', re.IGNORECASE)
SERVING = (db.NAMESPACE_INDEX, "document_tenant_plugin_id_collection_doc_id")


@contextmanager
def recorded_statements():
    """Record every (sql, params) the code sends through the database handle."""
    seen: list[tuple[str, list]] = []
    bound = database.obj  # the proxy's database: an attribute cannot be set on the proxy
    original = bound.execute_sql

    def execute_sql(sql, params=None, *args, **kwargs):
        seen.append((sql, list(params or [])))
        return original(sql, params, *args, **kwargs)

    bound.execute_sql = execute_sql
    try:
        yield seen
    finally:
        del bound.execute_sql  # the instance attribute goes; the method shows again


def plans(seen: list[tuple[str, list]]) -> list[tuple[str, str]]:
    """Return (sql, plan) for each recorded statement that reads the document table."""
    found = []
    for sql, params in seen:
        if not READS_DOCUMENTS.search(sql) or sql.startswith("INSERT"):
            continue
        rows = database.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        found.append((sql, " | ".join(row[3] for row in rows)))
    assert found, "the code path sent no statement that reads the document table"
    return found


def assert_served_in_key_order(seen: list[tuple[str, list]]) -> None:
    for sql, plan in plans(seen):
        assert "SCAN document" not in plan, (sql, plan)
        assert "TEMP B-TREE FOR ORDER BY" not in plan, (sql, plan)
        assert "TEMP B-TREE FOR RIGHT PART OF ORDER BY" not in plan, (sql, plan)
        assert any(f"INDEX {name} (" in plan for name in SERVING), (sql, plan)


@pytest.fixture
def notes(app, make_storage_plugin, make_user):
    """acme-notes with a few documents in two tenants, beside a neighbour holding its own."""
    make_user("other@example.com", tenant="other")
    schemas = [{"collection": "notes", "schema": NOTES_SCHEMA, "indexes": []}]
    for plugin_id in ("acme-notes", "big-neighbour"):
        make_storage_plugin(plugin_id, schemas)
        with app.app_context(), database.connection_context():
            plugin = Plugin.get(Plugin.plugin_id == plugin_id)
            for tenant in (None, "other"):
                ns = storage.open_collection(plugin, tenant, "notes", write=True)
                for i in range(5):
                    storage.create_document(ns, {"title": f"{plugin_id} {i}"})
    with app.app_context(), database.connection_context():
        return Plugin.get(Plugin.plugin_id == "acme-notes")


def test_unfiltered_first_page_in_default_order_uses_the_namespace_index(app, notes):
    with app.app_context(), database.connection_context():
        ns = storage.open_collection(notes, None, "notes", write=False)
        with recorded_statements() as seen:
            page = storage.query_documents(ns, [("limit", "2")], secret_key=b"k")
        assert len(page["items"]) == 2
        assert_served_in_key_order(seen)


def test_the_next_page_by_cursor_seeks_inside_the_namespace_index(app, notes):
    with app.app_context(), database.connection_context():
        ns = storage.open_collection(notes, None, "notes", write=False)
        first = storage.query_documents(ns, [("limit", "2")], secret_key=b"k")
        with recorded_statements() as seen:
            storage.query_documents(
                ns, [("limit", "2"), ("cursor", first["next_cursor"])], secret_key=b"k"
            )
        assert_served_in_key_order(seen)
        assert any("rowid>?" in plan for _, plan in plans(seen))


def test_export_reads_the_plugin_through_the_namespace_index(app, notes):
    with app.app_context(), database.connection_context():
        with recorded_statements() as seen:
            text = "".join(export.export_plugin("acme-notes", actor="test"))
        assert text.count("\n") == 10
        assert_served_in_key_order(seen)


def test_the_archive_reads_one_tenant_through_the_namespace_index(app, notes, tmp_path):
    with app.app_context(), database.connection_context():
        with recorded_statements() as seen:
            written = archives.write_archive(notes, "other", tmp_path / "archives")
        assert written["documents"] == 5
        assert_served_in_key_order(seen)


def test_the_migration_check_and_its_fingerprint_use_the_namespace_index(app, notes):
    with app.app_context(), database.connection_context():
        with recorded_statements() as seen:
            checked, _, invalid_count, _ = migration_checks.check_documents(
                "acme-notes", {"notes": NOTES_SCHEMA}, "2.0.0"
            )
        assert (checked, invalid_count) == (10, 0)
        assert_served_in_key_order(seen)


def test_namespace_counts_and_the_purge_seek_instead_of_scanning(app, notes):
    with app.app_context(), database.connection_context():
        with recorded_statements() as seen:
            assert uninstall._document_counts("acme-notes") == {"default": 5, "other": 5}
            registry._check_reattachable(notes, notes.manifest)
            with db.write_transaction():
                assert uninstall._delete("acme-notes", "other") == 5
        assert_served_in_key_order(seen)


def test_without_the_namespace_index_the_first_page_sorts_the_namespace(app, notes):
    """The plan check above can fail: a version-5 database's first page needs a sort."""
    with app.app_context(), database.connection_context():
        database.execute_sql(f'DROP INDEX "{db.NAMESPACE_INDEX}"')
        ns = storage.open_collection(notes, None, "notes", write=False)
        with recorded_statements() as seen:
            storage.query_documents(ns, [("limit", "2")], secret_key=b"k")
        with pytest.raises(AssertionError, match="TEMP B-TREE"):
            assert_served_in_key_order(seen)
