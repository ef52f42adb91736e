"""Export at scale (issue 14): memory that does not grow with the namespace, lines as the API."""

import json
import tracemalloc
import uuid

import pytest

from extframework import db, dialect
from extframework.db import database
from extframework.models import Plugin
from extframework.services import export, storage

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_engines

SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}}


def _seed(plugin_id: str, count: int) -> None:
    rows = [
        (
            "default",
            plugin_id,
            "notes",
            uuid.uuid4().hex,
            "2026-12-01 10:00:00.000001",
            "2026-12-01 10:00:00.000001",
            json.dumps({"title": f"note {n}"}),
        )
        for n in range(count)
    ]
    engine = dialect.current()
    with db.write_transaction():
        database.cursor().executemany(
            engine.sql(
                "INSERT INTO document (tenant, plugin_id, collection, doc_id, version, "
                f"created_at, updated_at, data) VALUES (?, ?, ?, ?, 1, ?, ?, {engine.json_param()})"
            ),
            rows,
        )


def _export_peak(plugin_id: str) -> tuple[int, int]:
    """Export the plugin, discarding each chunk; return (lines, peak bytes Python allocated)."""
    lines = 0
    tracemalloc.start()
    try:
        for chunk in export.export_plugin(plugin_id, actor="test"):
            lines += chunk.count("\n")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return lines, peak


def test_export_peak_memory_does_not_grow_with_the_namespace(app, make_storage_plugin):
    collections = [{"collection": "notes", "schema": SCHEMA, "indexes": []}]
    make_storage_plugin("small-export", collections)
    make_storage_plugin("large-export", collections)
    with app.app_context(), database.connection_context():
        _seed("small-export", 2_000)
        _seed("large-export", 20_000)
        _export_peak("small-export")  # first use fills caches that would count as growth
        small_lines, small_peak = _export_peak("small-export")
        large_lines, large_peak = _export_peak("large-export")
    assert (small_lines, large_lines) == (2_000, 20_000)
    # Reading the whole namespace at once would make the peak about 10x; a stream keeps it flat.
    assert large_peak < 3 * small_peak, (small_peak, large_peak)


def test_export_lines_are_the_documents_as_the_api_renders_them(app, make_storage_plugin):
    make_storage_plugin("lines-export", [{"collection": "notes", "schema": {}, "indexes": []}])
    with app.app_context(), database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == "lines-export")
        ns = storage.open_collection(plugin, None, "notes", write=True)
        made = [
            storage.create_document(ns, {"title": "naïve “quotes” \\ 🎉", "n": 1.5}),
            storage.create_document(ns, {"nested": {"a": [1, None, True]}}),
        ]
        # a time stored without microseconds (as Peewee writes a whole second) still renders
        database.execute_sql(
            "UPDATE document SET created_at = '2026-12-01 10:00:00' WHERE doc_id = ?",
            [made[1]["id"]],
        )
        made[1]["created_at"] = "2026-12-01T10:00:00.000000Z"
        text = "".join(export.export_plugin("lines-export", actor="test"))
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines == [{"tenant": "default", "collection": "notes", **doc} for doc in made]


def test_export_walks_every_tenant_and_collection_in_order_and_nothing_else(
    app, make_storage_plugin
):
    collections = [
        {"collection": name, "schema": SCHEMA, "indexes": []} for name in ("b_notes", "a_notes")
    ]
    make_storage_plugin("walked", collections)
    make_storage_plugin("walked-neighbour", collections)
    rows, made = [], []
    for tenant in ("zeta", "default", "acme"):
        for plugin_id in ("walked", "walked-neighbour"):
            for collection in ("b_notes", "a_notes"):
                for _ in range(3):
                    doc_id = uuid.uuid4().hex
                    rows.append((tenant, plugin_id, collection, doc_id))
                    if plugin_id == "walked":
                        made.append((tenant, collection, doc_id))
    engine = dialect.current()
    with app.app_context(), database.connection_context():
        with db.write_transaction():
            database.cursor().executemany(
                engine.sql(
                    "INSERT INTO document (tenant, plugin_id, collection, doc_id, version, "
                    "created_at, updated_at, data) VALUES (?, ?, ?, ?, 1, "
                    f"'2026-12-01 10:00:00.000001', '2026-12-01 10:00:00', {engine.json_param()})"
                ),
                [(*row, "{}") for row in rows],
            )
        text = "".join(export.export_plugin("walked", actor="test"))
    lines = [json.loads(line) for line in text.splitlines()]
    # by tenant, then collection, then creation; none of the neighbour's documents
    assert [(d["tenant"], d["collection"], d["id"]) for d in lines] == sorted(
        made, key=lambda key: (key[0], key[1], made.index(key))
    )
    assert {(d["created_at"], d["updated_at"]) for d in lines} == {
        ("2026-12-01T10:00:00.000001Z", "2026-12-01T10:00:00.000000Z")
    }
