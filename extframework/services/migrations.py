"""Schema migrations (SPEC §7): freeze a plugin, call its handler, check every document, swap.

A breaking update that declares a ``migration`` handler moves the plugin to ``migrating`` and
stages the new collections (renamed collections take their documents along) in one
transaction. Then, in a background thread or a CLI command, one *attempt* runs: the core
POSTs the migration context to the handler with a request JWT and a short-lived ``efmc_``
credential; after a ``200`` it checks every document of the plugin against the new schemas
and, when all pass, records the new version and returns the plugin to ``active``
(``migration_checks``). Anything else leaves it ``migrating`` with the error on its
``MigrationRun``; an operator retries.
See docs/migrations.md.
"""

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta

from flask import Flask

from extframework.db import database, database_now, read_transaction, write_transaction
from extframework.errors import Conflict, NotFound
from extframework.models import (
    AuditEvent,
    Collection,
    Document,
    MigrationRun,
    Plugin,
    iso_utc,
    utcnow,
)
from extframework.services import indexes, lifecycle, migration_checks, plugin_http, tokens
from extframework.services import manifest_records as records
from extframework.services.manifest import base_url as manifest_base_url
from extframework.services.secrets import MIGRATION_TOKEN_PREFIX, hash_secret, new_secret

log = logging.getLogger(__name__)

# The request JWT of a handler call: no person is behind it.
HANDLER_SUBJECT = "system:migration"
HANDLER_NAME = "Schema migration"
HANDLER_ROLE = "admin"
HANDLER_SCOPES = ["migrate"]
HANDLER_TENANT = "*"  # every tenant: a migration rewrites the plugin's data in all of them

CREDENTIAL_SLACK_S = 60  # the credential outlives the handler's timeout by this much
BODY_EXCERPT_CHARS = 500
MAX_RESPONSE_BYTES = 64 * 1024

_owner: tuple[int, str] | None = None
_active: set[int] = set()  # runs with an attempt in progress in this process
_active_lock = threading.Lock()
_threads: dict[int, threading.Thread] = {}


def owner_id() -> str:
    """Name this process as ``host:pid:nonce``; the nonce tells a reused pid apart."""
    global _owner
    pid = os.getpid()
    if _owner is None or _owner[0] != pid:
        _owner = (pid, f"{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:8]}")
    return _owner[1]


def handler_timeout(manifest: dict, config: Mapping) -> float:
    return float(manifest["migration"].get("timeout_s") or config["MIGRATION_TIMEOUT_S"])


def handler_url(manifest: dict) -> str:
    return manifest_base_url(manifest) + manifest["migration"]["path"]


# --- starting -------------------------------------------------------------------------------


def begin(
    plugin: Plugin,
    manifest: dict,
    diff: list[dict],
    renames: dict[str, str],
    *,
    actor: str,
    config: Mapping,
) -> tuple[MigrationRun, str]:
    """Enter ``migrating``, stage the new collections and record the run; return it and the
    plaintext credential of its first attempt (launch() it after this commits)."""
    credential = new_secret(MIGRATION_TOKEN_PREFIX)
    attempt = _attempt(credential, handler_timeout(manifest, config))
    with write_transaction():
        lifecycle.transition(
            plugin,
            "migrating",
            cause=f"breaking update {plugin.version} -> {manifest['version']} with a migration "
            "handler",
            actor=actor,
        )
        moved = stage_collections(plugin, manifest, renames)
        run = MigrationRun.create(
            plugin=plugin,
            from_version=plugin.version,
            to_version=manifest["version"],
            manifest=manifest,
            diff=diff,
            created_by=actor,
            report={"renamed": moved},
            **attempt,
        )
        AuditEvent.create(
            actor=actor,
            action="plugin.migration.start",
            target=plugin.plugin_id,
            detail={"run": run.id, "from": run.from_version, "to": run.to_version},
        )
    log.info(
        "migration %d of %s to %s started by %s", run.id, plugin.plugin_id, run.to_version, actor
    )
    return run, credential


def stage_collections(plugin: Plugin, manifest: dict, renames: dict[str, str]) -> list[dict]:
    """Give the collections the new version's names, schemas and indexes; return the moves.

    A renamed collection takes its documents along (every tenant). A collection the new
    version drops keeps its old schema until the migration succeeds, so the handler can still
    read and empty it.
    """
    existing = {c.name: c for c in Collection.select().where(Collection.plugin == plugin)}
    moved = []
    for entry in manifest["data_schemas"]:
        name, source = entry["collection"], renames.get(entry["collection"])
        row = existing.pop(source or name, None)
        if row is None:
            records.create_collection(plugin, entry)
            continue
        if source:
            indexes.drop_indexes(plugin.plugin_id, source, row.indexes)
            count = (
                Document.update(collection=name)
                .where((Document.plugin_id == plugin.plugin_id) & (Document.collection == source))
                .execute()
            )
            moved.append({"from": source, "to": name, "documents": count})
            indexes.create_indexes(plugin.plugin_id, name, entry["indexes"])
        else:
            records.replace_indexes(plugin.plugin_id, name, row.indexes, entry["indexes"])
        row.name, row.schema, row.indexes = name, entry["schema"], entry["indexes"]
        row.save()
    return moved


def _attempt(credential: str, timeout_s: float) -> dict:
    """Return the run's columns that hand one attempt, with this credential, to this process.

    The handler's whole answer must arrive within the timeout (``plugin_http`` gives the call
    a real deadline); the lease, after which a retry may start elsewhere, is kept at twice the
    timeout so that it still outlasts the credential and the document checks that follow.
    """
    now = database_now()  # the lease is read by other hosts: one clock for all of them
    return {
        "credential_hash": hash_secret(credential),
        "credential_expires_at": now + timedelta(seconds=timeout_s + CREDENTIAL_SLACK_S),
        "owner": owner_id(),
        "lease_expires_at": now + timedelta(seconds=2 * timeout_s + CREDENTIAL_SLACK_S),
    }


def launch(app: Flask, run_id: int, credential: str) -> threading.Thread:
    """Run one attempt in a daemon thread of this process, outside any request."""
    with _active_lock:
        _active.add(run_id)

    def work() -> None:
        try:
            with app.app_context(), database.connection_context():
                run_attempt(run_id, credential, app=app)
        except Exception:  # the run stays `running`; is_abandoned() then lets a retry start
            log.exception("migration run %d failed unexpectedly", run_id)
        finally:
            with _active_lock:
                _active.discard(run_id)

    thread = threading.Thread(target=work, name=f"migration-{run_id}", daemon=True)
    with _active_lock:
        _threads[run_id] = thread
    thread.start()
    return thread


def wait_for_attempts(timeout_s: float) -> bool:
    """Wait for this process's background attempts to end (tests, shutdown); True if they did."""
    deadline = time.monotonic() + timeout_s
    with _active_lock:
        threads = list(_threads.values())
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with _active_lock:
        for run_id, thread in list(_threads.items()):
            if not thread.is_alive():
                del _threads[run_id]
        return not _threads


def retry(plugin: Plugin, *, actor: str, app: Flask, background: bool = True) -> MigrationRun:
    """Start another attempt of a migrating plugin's migration; in the foreground if asked."""
    credential = new_secret(MIGRATION_TOKEN_PREFIX)
    with write_transaction():
        state = Plugin.select(Plugin.state).where(Plugin.id == plugin.id).scalar()
        if state is None or "retry" not in lifecycle.rules(state).verbs:
            raise Conflict(
                f"Plugin {plugin.plugin_id!r} is {state}; only a migrating plugin has a "
                "migration to retry.",
                state=state,
                kind="wrong-state",
            )
        run = latest_run(plugin)
        if run is None:
            raise Conflict(f"Plugin {plugin.plugin_id!r} has no recorded migration to retry.")
        if run.state == "running" and not is_abandoned(run):
            raise Conflict(
                f"Attempt {run.attempts} of this migration is still running (process "
                f"{run.owner}, since {iso_utc(run.started_at)}); wait for it to finish.",
                attempt=run.attempts,
                kind="migration-running",
            )
        last_error = run.last_error
        if run.state == "running":
            last_error = (
                f"attempt {run.attempts} was interrupted: the process running it "
                f"({run.owner}) stopped before it finished"
            )
        now = utcnow()
        MigrationRun.update(
            state="running",
            attempts=run.attempts + 1,
            last_error=last_error,
            started_at=now,
            finished_at=None,
            **_attempt(credential, handler_timeout(run.manifest, app.config)),
        ).where(MigrationRun.id == run.id).execute()
        AuditEvent.create(
            actor=actor,
            action="plugin.migration.retry",
            target=plugin.plugin_id,
            detail={"run": run.id, "attempt": run.attempts + 1},
        )
    log.info("migration %d of %s retried by %s", run.id, plugin.plugin_id, actor)
    if background:
        launch(app, run.id, credential)
    else:
        with _active_lock:
            _active.add(run.id)
        try:
            run_attempt(run.id, credential, app=app)
        finally:
            with _active_lock:
                _active.discard(run.id)
    return MigrationRun.get_by_id(run.id)


# --- one attempt ----------------------------------------------------------------------------


def run_attempt(run_id: int, credential: str, *, app: Flask) -> MigrationRun:
    """Call the handler, then check the documents and finish; every outcome is recorded."""
    run = MigrationRun.get_by_id(run_id)
    plugin = run.plugin
    config = app.config
    timeout_s = handler_timeout(run.manifest, config)
    url = handler_url(run.manifest)
    request_jwt = tokens.mint_request_jwt(
        app.extensions["extframework.keys"],
        issuer=config["BASE_URL"],
        plugin_id=plugin.plugin_id,
        user_id=HANDLER_SUBJECT,
        name=HANDLER_NAME,
        email="",
        tenant=HANDLER_TENANT,
        role=HANDLER_ROLE,
        scopes=HANDLER_SCOPES,
        ttl_s=int(config["REQUEST_JWT_TTL_S"]),
    )
    body = context(run, plugin, credential, config)
    ok, status_code, detail = call_handler(url, request_jwt, credential, body, timeout_s)
    _revoke(run)
    if not ok:
        return migration_checks.fail(
            run, "handler", detail, {"url": url, "status_code": status_code}
        )
    log.info("migration %d: handler of %s answered 200", run.id, plugin.plugin_id)
    return migration_checks.check_and_finish(run)


def context(run: MigrationRun, plugin: Plugin, credential: str, config: Mapping) -> dict:
    """Build the JSON body the handler receives: what changes and how to reach the data."""
    tenants = [
        row[0]
        for row in database.execute_sql(
            "SELECT DISTINCT tenant FROM document WHERE plugin_id = ? ORDER BY tenant",
            [plugin.plugin_id],
        )
    ]
    return {
        "plugin_id": plugin.plugin_id,
        "run_id": run.id,
        "attempt": run.attempts,
        "from_version": run.from_version,
        "to_version": run.to_version,
        "collections": run.manifest["data_schemas"],
        "renamed": run.report.get("renamed", []),
        "diff": run.diff,
        "tenants": tenants,
        "storage_url": f"{config['BASE_URL']}/api/storage",
        "credential": credential,
        "credential_expires_at": iso_utc(run.credential_expires_at),
        "timeout_s": handler_timeout(run.manifest, config),
    }


def call_handler(
    url: str, request_jwt: str, credential: str, body: dict, timeout_s: float
) -> tuple[bool, int | None, str]:
    """POST the context to the handler; only a 200 within the timeout is a success."""
    answer = plugin_http.call(
        "POST",
        url,
        timeout_s=timeout_s,
        connect_timeout_s=min(timeout_s, 10.0),
        max_body=MAX_RESPONSE_BYTES,
        json=body,
        headers={
            "Authorization": f"Bearer {request_jwt}",
            "X-Migration-Token": credential,
            "User-Agent": "extframework-migration/1",
        },
    )
    if answer.failure:
        return False, answer.status_code, answer.failure
    if answer.status_code == 200:
        return True, 200, "HTTP 200"
    excerpt = answer.body[:BODY_EXCERPT_CHARS].decode("utf-8", "replace").strip()
    detail = f"{url} answered {answer.status}" + (f": {excerpt}" if excerpt else "")
    return False, answer.status_code, detail


def _revoke(run: MigrationRun) -> None:
    MigrationRun.update(credential_hash=None, credential_expires_at=None).where(
        (MigrationRun.id == run.id) & (MigrationRun.attempts == run.attempts)
    ).execute()


# --- who is running what ------------------------------------------------------------------


def is_abandoned(run: MigrationRun, *, now: datetime | None = None) -> bool:
    """Tell whether a ``running`` attempt has no live process behind it any more.

    Abandoned when its lease has passed, or when its owner ran on this host and is gone: this
    process without the attempt in progress, or another process whose pid no longer runs
    (or is a zombie). An owner on another host is trusted until its lease passes.
    """
    if run.state != "running":
        return False
    now = now or database_now()
    if run.lease_expires_at is not None and run.lease_expires_at <= now:
        return True
    host, _, rest = run.owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    if run.owner == owner_id():
        with _active_lock:
            return run.id not in _active
    pid = int(pid_text)
    return pid == os.getpid() or not _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# --- the credential -------------------------------------------------------------------------


def plugin_for_credential(token: str) -> Plugin | None:
    """Return the migrating plugin whose running attempt holds this unexpired credential."""
    if not token.startswith(MIGRATION_TOKEN_PREFIX):
        return None
    run = (
        MigrationRun.select(MigrationRun, Plugin)
        .join(Plugin)
        .where(
            (MigrationRun.credential_hash == hash_secret(token))
            & (MigrationRun.state == "running")
            & (MigrationRun.credential_expires_at > database_now())
            & (Plugin.state == "migrating")
        )
        .first()
    )
    return run.plugin if run else None


# --- reading --------------------------------------------------------------------------------


def latest_run(plugin: Plugin) -> MigrationRun | None:
    return (
        MigrationRun.select()
        .where(MigrationRun.plugin == plugin)
        .order_by(MigrationRun.id.desc())
        .first()
    )


def get_run(plugin: Plugin) -> MigrationRun:
    run = latest_run(plugin)
    if run is None:
        raise NotFound(f"Plugin {plugin.plugin_id!r} has never been migrated.")
    return run


def run_summary(run: MigrationRun) -> dict:
    """Describe a migration run as the API, the CLI and the console show it."""
    return {
        "id": run.id,
        "from_version": run.from_version,
        "to_version": run.to_version,
        "state": run.state,
        "interrupted": is_abandoned(run),
        "attempts": run.attempts,
        "last_error": run.last_error,
        "report": run.report,
        "diff": run.diff,
        "handler": {
            "url": handler_url(run.manifest),
            "timeout_s": run.manifest["migration"].get("timeout_s"),
        },
        "created_by": run.created_by,
        "created_at": iso_utc(run.created_at),
        "started_at": iso_utc(run.started_at),
        "finished_at": iso_utc(run.finished_at),
    }


def status(plugin: Plugin) -> dict:
    """Return the plugin's state, its latest migration and the earlier ones.

    The state and the runs are read in one snapshot: a ``plugin`` loaded earlier in the request
    could still say ``migrating`` beside a run that has since succeeded.
    """
    with read_transaction():
        state, version = (
            Plugin.select(Plugin.state, Plugin.version).where(Plugin.id == plugin.id).tuples().get()
        )
        runs = list(
            MigrationRun.select()
            .where(MigrationRun.plugin == plugin)
            .order_by(MigrationRun.id.desc())
        )
    return {
        "plugin_id": plugin.plugin_id,
        "state": state,
        "version": version,
        "migration": run_summary(runs[0]) if runs else None,
        "earlier": [
            {k: v for k, v in run_summary(run).items() if k not in ("report", "diff")}
            for run in runs[1:]
        ],
    }
