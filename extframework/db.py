"""The database handle, per-request connections, and the core's own schema upgrades."""

import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from peewee import (
    BooleanField,
    CharField,
    DatabaseProxy,
    IntegerField,
    Model,
    OperationalError,
    ProgrammingError,
)
from playhouse.migrate import migrate

from extframework import dialect

log = logging.getLogger(__name__)

# Bound by init_app to a pooled SQLite file or a pooled PostgreSQL database (dialect.py).
database = DatabaseProxy()


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class SchemaVersion(BaseModel):
    """One row: the version of the core's own tables."""

    version = IntegerField()


def init_app(app: Flask) -> None:
    """Bind the database to the app's file or URL and take a pooled connection per request."""
    bind(app.config.get("DATABASE_URL"), app.config["DATABASE"], app.config)
    try:
        with database.connection_context():
            refuse_newer(current_version())
    except OperationalError as exc:  # unreachable now: /healthz and each request say so
        log.warning("database %s cannot be read at start: %s", describe(), exc)

    @app.before_request
    def _connect() -> None:
        database.connect(reuse_if_open=True)

    @app.teardown_appcontext
    def _close(exc: BaseException | None) -> None:
        if not database.is_closed():
            database.close()

    app.cli.add_command(init_db_command)


def bind(url: str | None, path: str, config: dict) -> None:
    """Point ``database`` at PostgreSQL (``url``) or the SQLite file ``path``."""
    if database.obj is not None:
        database.obj.close_all()  # connections of an earlier init point at another database
    engine = dialect.for_url(url)
    if url is None:
        create_private_database(path)
    dialect.use(engine)
    database.initialize(
        engine.open(
            url or path,
            busy_timeout_ms=config["SQLITE_BUSY_TIMEOUT_MS"],
            pool_size=config["DATABASE_POOL_SIZE"],
        )
    )


def describe() -> str:
    """The database for a log line, without the password a URL may hold."""
    name = database.obj.database if database.obj is not None else ""
    return name.split("@", 1)[-1] if "://" in name else name


def _is_file_path(path: str | None) -> bool:
    return bool(path) and path != ":memory:" and not path.startswith("file:")


def create_private_database(path: str) -> None:
    """Create an empty database file readable by its owner only, before SQLite opens it.

    SQLite creates a missing file with the process umask (0644 under most shells) and gives its
    ``-wal`` and ``-shm`` files the database file's mode, so the first file decides all three.
    An existing file keeps its mode; a warning says when others can read it.
    """
    if not _is_file_path(path):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        if os.stat(path).st_mode & 0o077:
            log.warning("%s is readable by others than its owner: chmod 600 it", path)
    except FileNotFoundError:
        pass  # no such folder: SQLite says so when it opens the file


_write_queue: tuple[int, str, threading.Lock, int | None] | None = None
_write_queue_guard = threading.Lock()


def _write_lock() -> tuple[threading.Lock, int | None]:
    """This process's lock and lock-file descriptor for the current database file."""
    global _write_queue
    current = _write_queue
    path = database.database
    if current is None or current[:2] != (os.getpid(), path):
        with _write_queue_guard:
            current = _write_queue
            if current is None or current[:2] != (os.getpid(), path):
                if current is not None and current[0] == os.getpid() and current[3] is not None:
                    os.close(current[3])  # the app was re-initialised on another file
                fd = None  # a forked worker opens its own descriptor: flock is per descriptor
                if _is_file_path(path):
                    fd = os.open(path + "-writelock", os.O_RDWR | os.O_CREAT, 0o600)
                current = _write_queue = (os.getpid(), path, threading.Lock(), fd)
    return current[2], current[3]


_writes = threading.local()


def writes_committed() -> int:
    """How many write transactions this thread has committed: a cache of what the database
    held earlier in a request compares it to see whether the request changed anything."""
    return getattr(_writes, "count", 0)


@contextmanager
def write_transaction() -> Iterator[None]:
    """One write transaction (``_write_transaction`` says how), counted once it commits."""
    with _write_transaction():
        yield
    _writes.count = writes_committed() + 1


@contextmanager
def _write_transaction() -> Iterator[None]:
    """One write transaction that waits its turn behind the instance's other writers.

    SQLite admits one writer at a time, and a writer that finds the lock taken polls it with
    sleeps of 1, 2, 5… ms (its busy handler): two workers' colliding inserts cost a
    millisecond or more each. Queuing on a thread lock and an ``flock`` shared by every
    process of the instance wakes the next writer as soon as the previous one commits.
    Writers that do not use this stay correct: they fall back to the busy handler.

    Every transaction that writes goes through here (tests/test_write_lock.py holds the rule):
    it begins ``IMMEDIATE``, so it holds SQLite's write lock before its first read. A deferred
    transaction that reads and then writes must upgrade its lock, and when another connection
    committed in between, SQLite refuses the upgrade at once (SQLITE_BUSY_SNAPSHOT) without
    consulting the busy handler: a 503 on a quiet server.
    """
    if database.in_transaction():  # already holds (or waits for) SQLite's lock: just nest
        with database.atomic():
            yield
        return
    engine = dialect.current()
    if not engine.write_queue:  # PostgreSQL: writers do not queue for one lock
        with engine.write_transaction(database):
            yield
        return
    lock, fd = _write_lock()
    with lock:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            with _original_error_kept(), engine.write_transaction(database):
                yield
        finally:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)


def write_statement(sql: str, params: list | tuple) -> int:
    """Run one writing statement as a transaction of its own; return its row count.

    On SQLite, outside a transaction, the statement runs in autocommit, after its turn in the
    write queue (``_write_transaction``): a lone INSERT, UPDATE or DELETE begins SQLite's
    write transaction before it reads a page, as ``BEGIN IMMEDIATE`` does, and SQLite's busy
    handler waits for the lock then (the lock is taken from no transaction, so a commit by
    another connection in between cannot refuse it). It is the same one-statement
    transaction without the ``BEGIN`` and ``COMMIT`` statements (about 0.14 M of a document
    create's 2.75 M instructions; README, performance). Elsewhere it runs in
    ``write_transaction``.
    """
    if not dialect.current().write_queue or database.in_transaction():
        with write_transaction():
            return database.execute_sql(sql, params).rowcount
    lock, fd = _write_lock()
    with lock:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            count = database.execute_sql(sql, params).rowcount
        finally:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
    _writes.count = writes_committed() + 1
    return count


@contextmanager
def _original_error_kept() -> Iterator[None]:
    """Raise the error that ended a transaction, not the failed rollback after it.

    SQLite rolls a transaction back itself on some errors (a full disk: SQLITE_FULL); the
    ``atomic`` block's own rollback then fails with "no transaction is active", which would
    hide what happened.
    """
    try:
        yield
    except OperationalError as exc:
        cause: BaseException | None = exc
        while cause is not None and "no transaction is active" in str(cause):
            cause = cause.__context__  # peewee's wrapper, then sqlite3's own error
        if cause is not None and cause is not exc:
            raise cause from None
        raise


@contextmanager
def read_transaction() -> Iterator[None]:
    """One read-only snapshot (an export, an archive, a validation pass); it cannot write.

    ``PRAGMA query_only`` makes a write inside it fail loudly instead of upgrading the
    deferred transaction's lock (see ``write_transaction``). Inside another transaction it
    just nests.
    """
    if database.in_transaction():
        with database.atomic():
            yield
        return
    with dialect.current().read_transaction(database):
        yield


def _migration_1() -> None:
    from extframework.models import ALL_MODELS

    database.create_tables(ALL_MODELS)


def _migration_2() -> None:
    """``installation.available``: restricting a plugin keeps a dropped tenant's row (its policy).

    Step 1 creates the current tables, so a new database already has the column.
    """
    if "available" not in {column.name for column in database.get_columns("installation")}:
        migrator = dialect.current().migrator(database)
        migrate(migrator.add_column("installation", "available", BooleanField(default=True)))


def _migration_3() -> None:
    """``enrolment_key.plugin_id`` (a key for one plugin_id) and the ``pending_update`` table.

    Existing keys stay unscoped (NULL). Step 1 creates the current tables on a new database.
    """
    from extframework.models import PendingUpdate

    if "plugin_id" not in {column.name for column in database.get_columns("enrolment_key")}:
        migrator = dialect.current().migrator(database)
        migrate(migrator.add_column("enrolment_key", "plugin_id", CharField(null=True)))
    database.create_tables([PendingUpdate])


def _migration_4() -> None:
    """``plugin_token``: several live tokens per plugin (a rotation's grace), with last use.

    Each plugin's token moves there as its current token (no expiry), issued when the plugin's
    ``token_rotated_at`` says; ``plugin.token_hash`` is dropped (its unique index first: SQLite
    cannot drop an indexed column). A deregistered plugin had no token and gets none.
    """
    from extframework.models import PluginToken

    database.create_tables([PluginToken])
    if "token_hash" not in {column.name for column in database.get_columns("plugin")}:
        return  # step 1 created the current tables
    database.execute_sql(
        "INSERT OR IGNORE INTO plugin_token (plugin_id, token_hash, created_by, created_at) "
        "SELECT id, token_hash, 'schema upgrade', token_rotated_at FROM plugin "
        "WHERE token_hash IS NOT NULL"
    )
    for index in database.get_indexes("plugin"):
        if index.columns == ["token_hash"]:
            database.execute_sql(f'DROP INDEX "{index.name}"')
    database.execute_sql('ALTER TABLE "plugin" DROP COLUMN "token_hash"')


def _migration_5() -> None:
    """``user.session_generation``: sessions and user JWTs carry it, so bumping it ends them.

    Existing users start at 0, the value of every session and token issued before this step.
    Independent of the other steps: adds the column only when it is missing.
    """
    if "session_generation" not in {column.name for column in database.get_columns("user")}:
        migrator = dialect.current().migrator(database)
        migrate(migrator.add_column("user", "session_generation", IntegerField(default=0)))


NAMESPACE_INDEX = "document_plugin_id_tenant_collection"


def _migration_6() -> None:
    """``document (plugin_id, tenant, collection)``: namespace scans in key order.

    The implicit trailing rowid makes it (plugin_id, tenant, collection, pk), so a default-order
    page, a keyset page, an export, an archive and a migration check read only their own
    namespace, without a sort. Step 1 creates it (the model declares it) on a new database.
    """
    database.execute_sql(
        f'CREATE INDEX IF NOT EXISTS "{NAMESPACE_INDEX}" '
        'ON "document" ("plugin_id", "tenant", "collection")'
    )


def _migration_7() -> None:
    """``signing_key``: JWT signing keys move from ``<instance>/keys`` into the database.

    The keys themselves are imported at the next start (``signing_keys.KeyStore.ensure_key``),
    which needs the secret that seals them; this step only makes the table.
    """
    from extframework.models import SigningKeyRow

    database.create_tables([SigningKeyRow])


# What the in-process caches of views read (services/registry_cache.py): a change to any of it
# bumps the one-row registry version in the same transaction, whoever writes it (docs/shell.md).
# The signing keys count too: a rotation on one host is used by every host's next request.
REGISTRY_TRIGGERS = {
    "plugin": ("INSERT", "DELETE", "UPDATE OF plugin_id, name, base_url, state, restricted"),
    "route": ("INSERT", "DELETE", "UPDATE"),
    "installation": ("INSERT", "DELETE", "UPDATE"),
    "tenant": ("INSERT", "DELETE", "UPDATE OF slug"),
    "signing_key": ("INSERT", "DELETE", "UPDATE"),
    "collection": ("INSERT", "DELETE", "UPDATE"),
    # A token's last use is written once a minute: that must not empty every cache.
    "plugin_token": ("INSERT", "DELETE", "UPDATE OF plugin_id, token_hash, expires_at, revoked_at"),
}


def _migration_8() -> None:
    """``registry_version``: one row that triggers bump on every registry change.

    ``epoch`` is random per database, so a cache never mistakes another database's version
    for its own. Independent of the other steps: creates only what is missing. The DDL is
    each engine's own (``dialect.registry_version_ddl``).
    """
    for statement in dialect.current().registry_version_ddl(REGISTRY_TRIGGERS):
        database.execute_sql(statement)


def _migration_9() -> None:
    """``installation.installed``: a tenant's admin uninstalls a plugin from their tenant.

    Existing rows start installed (nothing changes for anyone). Independent of the other
    steps: adds the column only when it is missing.
    """
    if "installed" not in {column.name for column in database.get_columns("installation")}:
        migrator = dialect.current().migrator(database)
        migrate(migrator.add_column("installation", "installed", BooleanField(default=True)))


# Append-only: each entry upgrades the previous version's tables without losing rows
# (use playhouse.migrate for columns). Never edit a step that has shipped.
MIGRATIONS: list[Callable[[], None]] = [
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
    _migration_5,
    _migration_6,
    _migration_7,
    _migration_8,
    _migration_9,
]


class SchemaTooNew(RuntimeError):
    """The database was upgraded by a newer release: this code must not touch it."""


def refuse_newer(version: int) -> None:
    if version > len(MIGRATIONS):
        raise SchemaTooNew(
            f"The database is at core schema version {version}, newer than this release's "
            f"version {len(MIGRATIONS)}: a newer release upgraded it. Run that release, or "
            "restore a backup taken before the upgrade."
        )


def schema_problem() -> tuple[str, str] | None:
    """Why this process cannot serve the database's tables as they are, or None.

    Read per call (one row): a newer release may upgrade the file under a running older one.
    """
    version = current_version()
    if version > len(MIGRATIONS):
        return "schema-too-new", (
            f"The database is at core schema version {version}; this release knows version "
            f"{len(MIGRATIONS)}. Run the newer release."
        )
    if version < len(MIGRATIONS):
        return "upgrade-needed", (
            f"The database is at core schema version {version}; this release needs version "
            f"{len(MIGRATIONS)}. Run 'flask --app app init-db' to upgrade it."
        )
    return None


@contextmanager
def sqlite_file_locked(path: str, timeout_s: float) -> Iterator[sqlite3.Connection]:
    """A connection of its own to a SQLite file, holding its write lock until the block ends.

    What it reads is one snapshot, and no other process can write to the file meanwhile (a
    writer waits, then fails): ``db copy`` reads a stopped installation this way.
    """
    connection = sqlite3.connect(path, timeout=timeout_s)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield connection
    finally:
        connection.close()


def database_time() -> float:
    """Unix time by the database's clock, which every app host shares.

    Leases and credential deadlines are set and compared on it, so a host whose clock runs
    ahead cannot take over another's work early (nor one running behind late).
    """
    row = database.execute_sql("SELECT " + dialect.current().epoch_now()).fetchone()
    return float(row[0])


def database_now() -> datetime:
    """``database_time`` as the naive UTC datetime the tables store."""
    return datetime.fromtimestamp(database_time(), UTC).replace(tzinfo=None)


def current_version() -> int:
    """The core schema version the database holds (0 before ``init-db``), in one statement."""
    try:
        row = database.execute_sql("SELECT version FROM schema_version").fetchone()
    except (OperationalError, ProgrammingError) as exc:
        if not dialect.current().is_missing_table(exc):
            raise
        return 0
    return row[0] if row else 0


def upgrade() -> tuple[int, int]:
    """Bring the core's tables to the newest version; return (before, after)."""
    with database.connection_context():
        with dialect.current().upgrade_transaction(database):
            database.create_tables([SchemaVersion])
            before = current_version()
            refuse_newer(before)
            for number, step in enumerate(MIGRATIONS, start=1):
                if number > before:
                    step()
                    log.info("core schema upgraded to version %d", number)
            after = len(MIGRATIONS)
            if after != before:
                SchemaVersion.delete().execute()
                SchemaVersion.create(version=after)
        from extframework.services import accounts

        accounts.ensure_default_tenant()
    return before, after


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create or upgrade the core's tables; safe to run again; refuses a newer database."""
    try:
        before, after = upgrade()
    except SchemaTooNew as exc:
        raise click.ClickException(str(exc)) from None
    # The first signing key, or the import of <instance>/keys (schema step 7), now the table is.
    current_app.extensions["extframework.keys"].ensure_key()
    if before == after:
        click.echo(f"Database is up to date (version {after}).")
    else:
        click.echo(f"Database upgraded from version {before} to {after}.")
