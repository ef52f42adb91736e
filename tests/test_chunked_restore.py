"""Restore and purge in short transactions (issue 14): interrupted runs finish on a re-run,
other plugins' writes flow between batches, no transaction holds more than a batch."""

import contextlib
import threading

import pytest

from extframework.db import database, write_transaction
from extframework.errors import Conflict
from extframework.models import Archive, AuditEvent, Plugin
from extframework.services import archives, uninstall
from tests.support.engines import raw_connection
from tests.support.migration_fixtures import wait_for

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_engines

COLUMNS = "tenant, plugin_id, collection, doc_id, version, created_at, updated_at, data"
WAIT_S = 60.0


def raw_rows(app, plugin_id="test-plugin") -> list[tuple]:
    with raw_connection(app) as conn:
        return sorted(
            conn.execute(f"SELECT {COLUMNS} FROM document WHERE plugin_id = ?", [plugin_id])
        )


def stock(app, count: int, plugin_id="test-plugin", tenant="default") -> None:
    """Insert ``count`` documents straight into the table (in two collections)."""
    with raw_connection(app) as conn:
        conn.executemany(
            f"INSERT INTO document ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    tenant,
                    plugin_id,
                    "items" if n % 3 else "notes",
                    f"doc-{n:06d}",
                    1 + n % 4,
                    f"2026-01-01 00:00:{n % 60:02d}.000001+00:00",
                    f"2026-01-02 00:00:{n % 60:02d}.000002+00:00",
                    f'{{"title": "Zoë {n}", "n": {n}, "price": {n}.50}}',
                )
                for n in range(count)
            ],
        )


@pytest.fixture
def archived(app, make_plugin):
    """Archive ``count`` documents of test-plugin in default, record it, delete the rows."""

    def make(count: int):
        make_plugin()
        stock(app, count)
        before = raw_rows(app)
        root = archives.archive_root(app)
        with app.app_context(), database.connection_context():
            plugin = Plugin.get(Plugin.plugin_id == "test-plugin")
            written = archives.write_archive(plugin, "default", root)
            with write_transaction():
                row = Archive.create(
                    plugin_id="test-plugin",
                    tenant="default",
                    path=written["relative"],
                    sha256=written["sha256"],
                    documents=written["documents"],
                    size_bytes=written["size_bytes"],
                    created_by="test",
                )
                database.execute_sql("DELETE FROM document WHERE plugin_id = 'test-plugin'")
        assert written["documents"] == count and raw_rows(app) == []
        return before, str(row.id)

    return make


def restore_events(app) -> int:
    with app.app_context(), database.connection_context():
        return AuditEvent.select().where(AuditEvent.action == "plugin.archive.restore").count()


def marker(app):
    with app.app_context(), database.connection_context():
        row = Archive.get()
        return row.restored_at, row.restored_by


def test_a_restore_interrupted_after_a_batch_finishes_on_a_rerun_without_duplicates(
    app, archived, runner, monkeypatch
):
    monkeypatch.setattr(archives, "RESTORE_BATCH", 10)
    before, archive_id = archived(35)

    def crash(done):
        raise RuntimeError(f"killed after {done} documents")

    monkeypatch.setattr(archives, "_batch_committed", crash)
    interrupted = runner.invoke(args=["plugins", "restore", archive_id])
    assert interrupted.exit_code != 0
    assert len(raw_rows(app)) == 10  # the first batch committed, then the "crash"
    assert marker(app) == (None, None) and restore_events(app) == 0

    monkeypatch.setattr(archives, "_batch_committed", lambda done: None)
    finished = runner.invoke(args=["plugins", "restore", archive_id])
    assert finished.exit_code == 0, finished.output
    assert raw_rows(app) == before  # exactly the archive's rows: none twice, none missing
    assert marker(app)[1] == "cli" and restore_events(app) == 1

    again = runner.invoke(args=["plugins", "restore", archive_id])
    assert again.exit_code != 0 and "exist in the live database already" in again.output
    assert raw_rows(app) == before and restore_events(app) == 1


def test_a_rerun_refuses_when_a_live_document_differs_from_its_line(
    app, archived, runner, monkeypatch
):
    monkeypatch.setattr(archives, "RESTORE_BATCH", 10)
    _, archive_id = archived(25)

    def crash(done):
        raise RuntimeError("killed")

    monkeypatch.setattr(archives, "_batch_committed", crash)
    assert runner.invoke(args=["plugins", "restore", archive_id]).exit_code != 0
    with raw_connection(app) as conn:
        conn.execute("UPDATE document SET data = '{\"changed\": true}' WHERE doc_id = 'doc-000004'")
    partial = raw_rows(app)
    monkeypatch.setattr(archives, "_batch_committed", lambda done: None)
    refused = runner.invoke(args=["plugins", "restore", archive_id])
    assert refused.exit_code != 0
    assert "'doc-000004'" in refused.output and "other content" in refused.output
    assert raw_rows(app) == partial and marker(app) == (None, None)


def test_each_restore_transaction_holds_at_most_a_batch(app, archived, monkeypatch, engine):
    if engine == "postgresql":
        pytest.skip("counts rows through SQLite's total_changes; no PostgreSQL twin yet")
    before, archive_id = archived(2500)
    changes = []
    original = archives.write_transaction

    @contextlib.contextmanager
    def counting():
        conn = database.connection()
        start = conn.total_changes
        with original():
            yield
        changes.append(conn.total_changes - start)

    monkeypatch.setattr(archives, "write_transaction", counting)
    with app.app_context(), database.connection_context():
        result = archives.restore(archive_id, actor="test", root=archives.archive_root(app))
    assert result["documents"] == result["inserted"] == 2500
    assert raw_rows(app) == before
    assert len(changes) == 3  # 1000 + 1000 + 500 (with the marker and the event)
    assert max(changes) <= archives.RESTORE_BATCH + 2


def test_other_plugins_writes_flow_while_a_large_restore_runs(
    app, archived, make_plugin, plugin_api, monkeypatch
):
    before, archive_id = archived(20_000)
    _, other_token = make_plugin()  # test-plugin-2
    other = plugin_api(other_token, "default")
    midway, go = threading.Event(), threading.Event()
    batches, failures = [], []

    def between_batches(done):
        batches.append(done)
        if len(batches) == 1:
            midway.set()
            if not go.wait(WAIT_S):
                raise RuntimeError("the other plugin's writes never came")

    monkeypatch.setattr(archives, "_batch_committed", between_batches)

    def run():
        try:
            with app.app_context(), database.connection_context():
                archives.restore(archive_id, actor="test", root=archives.archive_root(app))
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    statuses = []
    try:
        wait_for(lambda: midway.is_set() or not thread.is_alive(), timeout_s=WAIT_S)
        assert midway.is_set(), f"the restore never paused between batches: {failures}"
        # Between two batches of the restore the write lock is free: these land at once.
        for n in range(5):
            statuses.append(other.create("items", {"title": f"during {n}"}).status_code)
        go.set()
        while thread.is_alive():  # and more while the rest of the restore runs
            statuses.append(other.create("items", {"title": "later"}).status_code)
    finally:
        go.set()
        thread.join(WAIT_S)
    assert not thread.is_alive() and failures == []
    assert statuses[:5] == [201] * 5
    assert [s for s in statuses if s != 201] == []  # none refused
    assert len(raw_rows(app, "test-plugin-2")) == len(statuses)  # all landed
    assert raw_rows(app) == before and len(batches) == 20


def test_purge_deletes_in_batches_and_a_rerun_after_an_interruption_finishes(
    app, client, make_plugin, make_user, login, monkeypatch
):
    make_user("ops@example.com", role="admin", operator=True)
    login("ops@example.com")
    make_plugin()
    stock(app, 45)
    stock(app, 3, tenant="acme")  # another namespace of the plugin, retained
    assert (
        client.put(
            "/api/registry/plugins/test-plugin/tenants/default/uninstall-policy",
            json={"policy": "purge"},
        ).status_code
        == 200
    )
    assert client.post("/api/registry/plugins/test-plugin/disable").status_code == 200
    monkeypatch.setattr(uninstall, "PURGE_BATCH", 10)
    deleted = []

    def crash(plugin_id, tenant, count):
        deleted.append(count)
        raise RuntimeError("killed")

    monkeypatch.setattr(uninstall, "_purge_batch_committed", crash)
    body = {"confirm": "test-plugin"}
    with pytest.raises(RuntimeError):
        client.post("/api/registry/plugins/test-plugin/deregister", json=body)
    assert deleted == [10] and len(raw_rows(app)) == 38  # 35 left in default, 3 in acme
    assert client.get("/api/registry/plugins/test-plugin").get_json()["state"] == "disabled"

    batches = []
    monkeypatch.setattr(
        uninstall, "_purge_batch_committed", lambda plugin_id, tenant, count: batches.append(count)
    )
    done = client.post("/api/registry/plugins/test-plugin/deregister", json=body)
    assert done.status_code == 200, done.get_json()
    assert batches == [10, 20, 30, 35]
    assert [r[0] for r in raw_rows(app)] == ["acme"] * 3
    assert client.get("/api/registry/plugins/test-plugin").get_json()["state"] == "deregistered"


def test_the_restore_lookups_and_the_purge_seek_instead_of_scanning(
    app, archived, monkeypatch, engine
):
    if engine == "postgresql":
        pytest.skip("reads SQLite's EXPLAIN QUERY PLAN; no PostgreSQL twin yet")
    """Each batch costs its own documents, not the namespace (else a restore is quadratic)."""
    _, archive_id = archived(30)
    seen = []
    original = database.obj.execute_sql  # the proxy's database: the proxy takes no attributes

    def recording(sql, params=None, *args, **kwargs):
        seen.append((sql, list(params or [])))
        return original(sql, params, *args, **kwargs)

    monkeypatch.setattr(database.obj, "execute_sql", recording)
    with app.app_context(), database.connection_context():
        archives.restore(archive_id, actor="test", root=archives.archive_root(app))
        assert uninstall._purge("test-plugin", "default") == 30
        monkeypatch.undo()
        checked = [(sql, params) for sql, params in seen if "FROM document" in sql]
        assert len(checked) >= 3  # the verify lookups, the insert-pass lookups, the delete
        for sql, params in checked:
            rows = database.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()
            plan = " | ".join(row[3] for row in rows)
            assert "SCAN document" not in plan and "SEARCH document USING" in plan, (sql, plan)
            if "doc_id IN" in sql:
                assert "doc_id=?" in plan, (sql, plan)


def _archive_policy(client, make_user, login, make_plugin, tenant="default"):
    make_user("ops@example.com", role="admin", operator=True)
    login("ops@example.com")
    make_plugin()
    policy = {"policy": "archive"}
    url = f"/api/registry/plugins/test-plugin/tenants/{tenant}/uninstall-policy"
    assert client.put(url, json=policy).status_code == 200


def test_archived_documents_are_deleted_in_batches_and_a_rerun_after_a_crash_finishes(
    app, client, make_plugin, make_user, login, monkeypatch
):
    _archive_policy(client, make_user, login, make_plugin)
    stock(app, 45)
    before = raw_rows(app)
    assert client.post("/api/registry/plugins/test-plugin/disable").status_code == 200
    monkeypatch.setattr(archives, "RESTORE_BATCH", 10)
    deleted = []

    def crash(plugin_id, tenant, count):
        deleted.append(count)
        if count == 20:
            raise RuntimeError("killed")

    monkeypatch.setattr(uninstall, "_purge_batch_committed", crash)
    with pytest.raises(RuntimeError):
        client.post("/api/registry/plugins/test-plugin/deregister", json={})
    # Two batches committed, each its own transaction; the archive they went into is recorded.
    assert deleted == [10, 20] and len(raw_rows(app)) == 25
    assert client.get("/api/registry/plugins/test-plugin").get_json()["state"] == "disabled"
    with app.app_context(), database.connection_context():
        first = Archive.get(Archive.plugin_id == "test-plugin")
        assert (archives.archive_root(app) / first.path).is_file()

    batches = []
    monkeypatch.setattr(
        uninstall, "_purge_batch_committed", lambda plugin_id, tenant, count: batches.append(count)
    )
    done = client.post("/api/registry/plugins/test-plugin/deregister", json={})
    assert done.status_code == 200, done.get_json()
    assert batches == [10, 20, 25] and raw_rows(app) == []
    assert client.get("/api/registry/plugins/test-plugin").get_json()["state"] == "deregistered"
    # The first archive holds all 45 (its snapshot preceded the crash), the second the 25 left:
    # the first brings every document back byte for byte, the second then finds them present.
    with app.app_context(), database.connection_context():
        root = archives.archive_root(app)
        rows = Archive.select().where(Archive.plugin_id == "test-plugin").order_by(Archive.id)
        assert [row.documents for row in rows] == [45, 25]
        archives.restore(str(rows[0].id), actor="test", root=root)
        assert raw_rows(app) == before
        with pytest.raises(Conflict):
            archives.restore(str(rows[1].id), actor="test", root=root)


def test_a_document_changed_after_the_archive_snapshot_stays_live(
    app, client, make_plugin, make_user, login, monkeypatch
):
    _archive_policy(client, make_user, login, make_plugin)
    stock(app, 30)
    assert client.post("/api/registry/plugins/test-plugin/disable").status_code == 200
    write_archive = archives.write_archive

    def then_a_late_write(plugin, tenant, root):
        written = write_archive(plugin, tenant, root)
        with raw_connection(app) as conn:  # an in-flight write lands now
            conn.execute(
                'UPDATE document SET version = version + 1, data = \'{"title": "late"}\' '
                "WHERE doc_id = 'doc-000007'"
            )
        return written

    monkeypatch.setattr(archives, "write_archive", then_a_late_write)
    refused = client.post("/api/registry/plugins/test-plugin/deregister", json={})
    assert refused.status_code == 409, refused.get_json()
    assert "1 document(s)" in refused.get_json()["detail"]
    assert [(r[3], r[7]) for r in raw_rows(app)] == [("doc-000007", '{"title": "late"}')]
    assert client.get("/api/registry/plugins/test-plugin").get_json()["state"] == "disabled"

    monkeypatch.setattr(archives, "write_archive", write_archive)
    done = client.post("/api/registry/plugins/test-plugin/deregister", json={})
    assert done.status_code == 200, done.get_json()
    with app.app_context(), database.connection_context():
        assert Archive.select().where(Archive.plugin_id == "test-plugin").count() == 2


def test_other_plugins_write_between_archive_delete_batches(
    app, client, make_plugin, make_user, login, monkeypatch
):
    _archive_policy(client, make_user, login, make_plugin)
    stock(app, 30)
    assert client.post("/api/registry/plugins/test-plugin/disable").status_code == 200
    monkeypatch.setattr(archives, "RESTORE_BATCH", 10)
    landed = []

    def another_plugin_writes(plugin_id, tenant, count):
        # A second connection, as another worker, writes between two batches (each batch
        # committed before this hook runs; the old code deleted in one transaction, no hook).
        with raw_connection(app) as conn:
            conn.execute(
                f"INSERT INTO document ({COLUMNS}) VALUES ('default', 'other', 'items', ?, 1, "
                "'2026-01-01 00:00:00.000001', '2026-01-01 00:00:00.000001', '{}')",
                [f"other-{count}"],
            )
        landed.append(count)

    monkeypatch.setattr(uninstall, "_purge_batch_committed", another_plugin_writes)
    done = client.post("/api/registry/plugins/test-plugin/deregister", json={})
    assert done.status_code == 200, done.get_json()
    assert landed == [10, 20, 30] and len(raw_rows(app, "other")) == 3
