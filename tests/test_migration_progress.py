"""A long migration check reports its progress and keeps its lease (issue 14)."""

import json
import time

import pytest

from extframework.db import database
from extframework.models import Document, MigrationRun, Plugin, utcnow
from extframework.services import migration_checks, storage
from tests.support.engines import raw_connection
from tests.support.storage_fixtures import NOTES_SCHEMA

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_engines

DOCUMENTS = 1200


def _row(app, run_id: int) -> tuple[dict, str]:
    """Read the run through a connection of its own: the check's snapshot would hide writes."""
    with raw_connection(app) as con:
        report, lease = con.execute(
            "SELECT report, lease_expires_at FROM migration_run WHERE id = ?", (run_id,)
        ).fetchone()
    return json.loads(report), lease


def test_a_running_check_records_checked_of_total_and_renews_its_lease(
    app, make_storage_plugin, monkeypatch
):
    make_storage_plugin("acme-notes")
    with app.app_context(), database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == "acme-notes")
        Document.insert_many(
            [
                {
                    "tenant": "default",
                    "plugin_id": "acme-notes",
                    "collection": "notes",
                    "doc_id": f"d{n:05d}",
                    "data": {"title": f"note {n}"},
                }
                for n in range(DOCUMENTS)
            ]
        ).execute()
        run = MigrationRun.create(
            plugin=plugin,
            from_version="1.0.0",
            to_version="2.0.0",
            manifest={},
            lease_expires_at=utcnow(),
        )
    _, lease_before = _row(app, run.id)
    monkeypatch.setattr(migration_checks, "KEEPER_INTERVAL_S", 0.01)
    seen_mid_check = []
    validate = storage.validation_errors

    def slow_at_the_middle(validator, data, limits=None):
        if data["title"] == f"note {DOCUMENTS // 2 + 10}":
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # the keeper thread writes meanwhile
                report, lease = _row(app, run.id)
                # Progress is counted per batch of rows read: 500 before this one.
                if report.get("progress", {}).get("checked", 0) >= migration_checks.BATCH:
                    seen_mid_check.append((report["progress"], lease))
                    break
                time.sleep(0.01)
        return validate(validator, data, limits)

    monkeypatch.setattr(storage, "validation_errors", slow_at_the_middle)
    with app.app_context(), database.connection_context():
        checked, _, invalid_count, _ = migration_checks.check_documents(
            "acme-notes", {"notes": NOTES_SCHEMA}, "2.0.0", run_id=run.id
        )
    assert (checked, invalid_count) == (DOCUMENTS, 0)
    assert seen_mid_check, "no progress was recorded while the check ran"
    progress, lease = seen_mid_check[0]
    assert progress == {"checked": migration_checks.BATCH, "total": DOCUMENTS}
    assert lease > lease_before


def test_a_check_without_a_run_writes_nothing(app, make_storage_plugin):
    make_storage_plugin("acme-notes")
    with app.app_context(), database.connection_context():
        assert (
            migration_checks.check_documents("acme-notes", {"notes": NOTES_SCHEMA}, "2.0.0")[0] == 0
        )
        assert MigrationRun.select().count() == 0
