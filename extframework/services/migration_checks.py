"""The end of a migration attempt (SPEC §7): check every document, then swap, or record why not.

After the handler's ``200`` every document of the plugin, in every tenant, is validated
against the new schemas in one snapshot; the new version is recorded only if the documents are
unchanged since, in the same transaction that returns the plugin to ``active``. A retry that
took over the run makes an older attempt's outcome void. See docs/migrations.md.
"""

import json
import logging
import threading
from contextlib import contextmanager
from datetime import timedelta

from extframework import dialect
from extframework.db import database, database_now, read_transaction, write_transaction
from extframework.errors import field_error
from extframework.models import AuditEvent, MigrationRun, Plugin, utcnow
from extframework.services import lifecycle, schema_limits, storage
from extframework.services import manifest_records as records

log = logging.getLogger(__name__)

MIGRATION_ACTOR = "migration"
VALIDATION_LEASE_S = 600  # how long checking the documents may take before a retry may start
REPORT_LIMIT = 100  # invalid documents listed in a report (the count is always complete)
ERROR_CHARS = 2000
CHECK_ROUNDS = 3
BATCH = 500
KEEPER_INTERVAL_S = 5.0  # how often a running check records its progress and renews its lease


def check_and_finish(run: MigrationRun) -> MigrationRun:
    """Check every document against the new schemas; all pass: record the version, ``active``.

    The check reads one snapshot; the swap then happens only if the plugin's documents are
    unchanged since (same count, version sum and highest row), so nothing slips in between.
    """
    plugin = run.plugin
    MigrationRun.update(
        lease_expires_at=database_now() + timedelta(seconds=VALIDATION_LEASE_S)
    ).where(MigrationRun.id == run.id).execute()
    schemas = {entry["collection"]: entry["schema"] for entry in run.manifest["data_schemas"]}
    for _ in range(CHECK_ROUNDS):
        checked, invalid, invalid_count, seen = check_documents(
            plugin.plugin_id, schemas, run.to_version, run_id=run.id
        )
        report = {
            "checked": checked,
            "invalid_count": invalid_count,
            "invalid": invalid,
            "renamed": run.report.get("renamed", []),
        }
        if invalid_count:
            return fail(
                run,
                "validation",
                f"{invalid_count} of {checked} document(s) do not match the schemas of version "
                f"{run.to_version}",
                report,
            )
        with write_transaction():
            if not _still_ours(run):
                log.warning("migration %d: attempt %d was superseded", run.id, run.attempts)
                return MigrationRun.get_by_id(run.id)
            if _fingerprint(plugin.plugin_id) != seen:
                continue
            _record_new_version(plugin, run)
            MigrationRun.update(
                state="succeeded", report=report, finished_at=utcnow(), last_error=""
            ).where(MigrationRun.id == run.id).execute()
            lifecycle.transition(
                plugin,
                "active",
                cause=f"migration to {run.to_version} succeeded ({checked} documents checked)",
                actor=MIGRATION_ACTOR,
            )
            AuditEvent.create(
                actor=MIGRATION_ACTOR,
                action="plugin.migration.succeed",
                target=plugin.plugin_id,
                detail={"run": run.id, "attempt": run.attempts, "checked": checked},
            )
        log.info("migration %d of %s succeeded", run.id, plugin.plugin_id)
        return MigrationRun.get_by_id(run.id)
    return fail(run, "validation", "the documents kept changing while they were checked", {})


def check_documents(
    plugin_id: str, schemas: dict[str, dict], version: str, *, run_id: int | None = None
) -> tuple[int, list[dict], int, tuple]:
    """Validate every document of a plugin (all tenants) in one snapshot.

    Return how many were checked, the first REPORT_LIMIT invalid ones (tenant, collection, id,
    errors), how many are invalid, and the snapshot's fingerprint. With ``run_id``, a thread
    records progress (``report.progress``) and renews the run's lease meanwhile.
    """
    checked, invalid_count, invalid = 0, 0, []
    limits = schema_limits.current()  # read once: the settings do not change during a check
    with read_transaction():
        seen = _fingerprint(plugin_id)
        sql = (
            "SELECT tenant, collection, doc_id, data FROM document WHERE plugin_id = ? "
            "ORDER BY tenant, collection, pk"
        )
        stream = dialect.current().stream(database, sql, [plugin_id])  # server-side on PG
        with stream as cursor, _kept_alive(run_id, total=seen[0]) as progress:
            while rows := cursor.fetchmany(BATCH):
                progress.checked = checked
                for tenant, collection, doc_id, data in rows:
                    checked += 1
                    schema = schemas.get(collection)
                    if schema is None:
                        errors = [
                            field_error(
                                [],
                                "collection",
                                f"collection {collection!r} is not declared by version {version}; "
                                "the handler must move or delete this document",
                            )
                        ]
                    else:
                        validator = storage.validator_for(plugin_id, collection, schema)
                        errors = storage.validation_errors(validator, json.loads(data), limits)
                    if errors:
                        invalid_count += 1
                        if len(invalid) < REPORT_LIMIT:
                            invalid.append(
                                {
                                    "tenant": tenant,
                                    "collection": collection,
                                    "id": doc_id,
                                    "errors": errors,
                                }
                            )
    return checked, invalid, invalid_count, seen


class _Progress:
    checked = 0


@contextmanager
def _kept_alive(run_id: int | None, *, total: int):
    """While the check runs, renew the run's lease and record ``checked`` of ``total``.

    The check holds a read snapshot on this thread's connection, which may not write; a second
    thread, with its own pooled connection, does, every KEEPER_INTERVAL_S. A check of millions
    of documents then neither outlives its lease (a retry would start beside it) nor leaves the
    console without news.
    """
    progress = _Progress()
    if run_id is None:
        yield progress
        return
    stopping = threading.Event()

    def keep() -> None:
        while not stopping.wait(KEEPER_INTERVAL_S):
            try:
                with database.connection_context():
                    _record_progress(run_id, progress.checked, total)
            except Exception:  # a busy database: the next round tries again
                log.exception("migration %d: could not record progress", run_id)

    keeper = threading.Thread(target=keep, name=f"migration-check-{run_id}", daemon=True)
    keeper.start()
    try:
        yield progress
    finally:
        stopping.set()
        keeper.join()


def _record_progress(run_id: int, checked: int, total: int) -> None:
    with write_transaction():
        run = MigrationRun.get_or_none(MigrationRun.id == run_id)
        if run is None or run.state != "running":
            return
        report = {**run.report, "progress": {"checked": checked, "total": total}}
        MigrationRun.update(
            report=report, lease_expires_at=database_now() + timedelta(seconds=VALIDATION_LEASE_S)
        ).where((MigrationRun.id == run_id) & (MigrationRun.state == "running")).execute()


def _fingerprint(plugin_id: str) -> tuple:
    return tuple(
        database.execute_sql(
            f"SELECT count(*), {dialect.current().total('version')}, max(pk) FROM document "
            "WHERE plugin_id = ?",
            [plugin_id],
        ).fetchone()
    )


def _record_new_version(plugin: Plugin, run: MigrationRun) -> None:
    records.drop_undeclared_collections(plugin, run.manifest)
    records.record_manifest(plugin, run.manifest)


def _still_ours(run: MigrationRun) -> bool:
    """Tell whether this attempt is still the run's current one (no retry took over)."""
    return (
        MigrationRun.select()
        .where(
            (MigrationRun.id == run.id)
            & (MigrationRun.attempts == run.attempts)
            & (MigrationRun.state == "running")
        )
        .exists()
    )


def fail(run: MigrationRun, stage: str, error: str, report: dict) -> MigrationRun:
    """Record that this attempt failed at ``stage`` (unless a retry took over the run)."""
    with write_transaction():
        if not _still_ours(run):
            log.warning("migration %d: attempt %d was superseded", run.id, run.attempts)
            return MigrationRun.get_by_id(run.id)
        MigrationRun.update(
            state="failed",
            last_error=error[:ERROR_CHARS],
            report={**report, "stage": stage, "renamed": run.report.get("renamed", [])},
            finished_at=utcnow(),
            credential_hash=None,
            credential_expires_at=None,
        ).where(MigrationRun.id == run.id).execute()
        AuditEvent.create(
            actor=MIGRATION_ACTOR,
            action="plugin.migration.fail",
            target=run.plugin.plugin_id,
            detail={"run": run.id, "attempt": run.attempts, "stage": stage, "error": error[:500]},
        )
    log.warning(
        "migration %d of %s failed (attempt %d, %s): %s",
        run.id,
        run.plugin.plugin_id,
        run.attempts,
        stage,
        error,
    )
    return MigrationRun.get_by_id(run.id)
