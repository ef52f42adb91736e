"""Move a stopped SQLite installation into an empty PostgreSQL database (issue 15).

``flask --app app db copy --to postgresql://…`` reads the configured SQLite file in one
``IMMEDIATE`` transaction (no write can land in it meanwhile), makes the core's schema in the
target with ``init-db``'s own upgrade, copies every table row for row — ids, the signing keys
sealed under the same ``SECRET_KEY``, documents' JSON text byte for byte — rebuilds each
collection's indexes, moves the id sequences past the copied ids, and then verifies: per table,
the row count and a SHA-256 over the rows in key order, each value read back as the core reads
it, must be the same on both sides. Archive files are copied to ``--archives-to`` if given,
each checked against its checksum file.
"""

import hashlib
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from peewee import AutoField, BooleanField, DateTimeField, Field

from extframework import db, dialect
from extframework.models import ALL_MODELS, Collection, Plugin
from extframework.services import archives, indexes

BATCH = 1000


class CopyError(RuntimeError):
    """The copy cannot start or did not verify; the message says what to do."""


@dataclass(frozen=True)
class TableCopy:
    table: str
    rows: int
    sha256: str


def copy(
    sqlite_path: str,
    url: str,
    config: dict,
    *,
    archives_from: Path,
    archives_to: Path | None = None,
) -> list[TableCopy]:
    """Copy the SQLite file at ``sqlite_path`` into the empty PostgreSQL database at ``url``."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise CopyError(f"--to must be a postgresql:// URL, not {url.split(':', 1)[0]}://…")
    if not Path(sqlite_path).is_file():
        raise CopyError(f"There is no SQLite database at {sqlite_path}.")
    timeout_s = config["SQLITE_BUSY_TIMEOUT_MS"] / 1000
    with db.sqlite_file_locked(sqlite_path, timeout_s) as source:
        version = _source_version(source)
        db.bind(url, sqlite_path, config)
        with db.database.connection_context():
            _refuse_non_empty()
            db.upgrade()
            with db.write_transaction():
                _empty_core_tables()
                for model in ALL_MODELS:
                    _copy_table(source, model)
                _rebuild_collection_indexes()
                _move_sequences()
                db.database.execute_sql("UPDATE schema_version SET version = ?", [version])
            copied = [_verify(source, model) for model in ALL_MODELS]
    if archives_to is not None:
        _copy_archives(archives_from, archives_to)
    return copied


def _source_version(source: sqlite3.Connection) -> int:
    try:
        (version,) = source.execute("SELECT version FROM schema_version").fetchone()
    except (sqlite3.OperationalError, TypeError):
        raise CopyError("The SQLite database has no core tables: nothing to copy.") from None
    if version != len(db.MIGRATIONS):
        raise CopyError(
            f"The SQLite database is at core schema version {version}; this release copies "
            f"version {len(db.MIGRATIONS)}. Run 'flask --app app init-db' on it first."
        )
    return version


def _refuse_non_empty() -> None:
    core = {model._meta.table_name for model in ALL_MODELS} | {"schema_version"}
    held = sorted(name for name in db.database.get_tables() if name in core)
    if held:
        raise CopyError(
            f"The target database is not empty (it has {', '.join(held[:5])}"
            f"{'…' if len(held) > 5 else ''}); copy into a new, empty database."
        )


def _empty_core_tables() -> None:
    """``upgrade`` made the default tenant; the copy brings its own rows, ids and all."""
    names = ", ".join(f'"{model._meta.table_name}"' for model in ALL_MODELS)
    db.database.execute_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


def _columns(model) -> list[Field]:
    return list(model._meta.sorted_fields)


def _names(model) -> str:
    return ", ".join(f'"{f.column_name}"' for f in _columns(model))


def _select(model) -> str:
    """Every column of a table's rows, in key order (the same statement on both sides)."""
    key = model._meta.primary_key.column_name
    return f'SELECT {_names(model)} FROM "{model._meta.table_name}" ORDER BY "{key}"'


def _batches(cursor) -> Iterator[list[tuple]]:
    while rows := cursor.fetchmany(BATCH):
        yield rows


def _copy_table(source: sqlite3.Connection, model) -> None:
    fields = _columns(model)
    marks = ", ".join("?" for _ in fields)
    booleans = {i for i, f in enumerate(fields) if isinstance(f, BooleanField)}
    sql = dialect.current().sql(
        f'INSERT INTO "{model._meta.table_name}" ({_names(model)}) VALUES ({marks})'
    )
    for rows in _batches(source.execute(_select(model))):
        if booleans:  # SQLite keeps booleans as 0 and 1
            rows = [
                tuple(bool(v) if i in booleans and v is not None else v for i, v in enumerate(r))
                for r in rows
            ]
        db.database.cursor().executemany(sql, rows)


def _rebuild_collection_indexes() -> None:
    query = Collection.select(Collection, Plugin.plugin_id).join(Plugin)
    for row in query:
        if row.indexes:
            indexes.create_indexes(row.plugin.plugin_id, row.name, row.indexes)


def _move_sequences() -> None:
    for model in ALL_MODELS:
        key = model._meta.primary_key
        if not isinstance(key, AutoField):
            continue
        table, column = model._meta.table_name, key.column_name
        db.database.execute_sql(
            f"SELECT setval(pg_get_serial_sequence('\"{table}\"', '{column}'), "
            f'COALESCE((SELECT max("{column}") FROM "{table}"), 0) + 1, false)'
        )


def _normalized(fields: list[Field], row: tuple) -> tuple:
    """A row's values as the core reads them: the same on both engines when the copy is right."""
    values = []
    for field, value in zip(fields, row, strict=True):
        if value is None:
            values.append(None)
        elif isinstance(field, BooleanField):
            values.append(bool(value))
        elif isinstance(field, DateTimeField):
            values.append(_utc(value))
        else:  # text, numbers, and JSON as its text (byte for byte)
            values.append(value)
    return tuple(values)


def _utc(value: str | datetime) -> datetime:
    """A stored time as naive UTC: SQLite keeps the text it was given (an offset too)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _digest(rows: Iterator[list[tuple]], fields: list[Field]) -> tuple[int, str]:
    count, digest = 0, hashlib.sha256()
    for batch in rows:
        for row in batch:
            count += 1
            digest.update(repr(_normalized(fields, row)).encode())
    return count, digest.hexdigest()


def _verify(source: sqlite3.Connection, model) -> TableCopy:
    fields = _columns(model)
    table = model._meta.table_name
    expected = _digest(_batches(source.execute(_select(model))), fields)
    # A server-side cursor on PostgreSQL: a million documents are not held in memory at once.
    with db.read_transaction(), dialect.current().stream(db.database, _select(model), []) as rows:
        found = _digest(_batches(rows), fields)
    if found != expected:
        raise CopyError(
            f"Table {table} did not verify: {expected[0]} row(s) in SQLite, {found[0]} in "
            "PostgreSQL, or their contents differ. Drop the target database and copy again."
        )
    return TableCopy(table, expected[0], expected[1])


def _copy_archives(source: Path, target: Path) -> None:
    """Copy the archive folder, each archive checked against its checksum file."""
    if not source.is_dir():
        return
    for path in sorted(source.rglob("*" + archives.ARCHIVE_SUFFIX)):
        sidecar = archives.checksum_path(path)
        expected = sidecar.read_text().split()[0] if sidecar.is_file() else None
        if expected != archives._sha256(path):
            raise CopyError(f"{path} does not match its checksum file; nothing more was copied.")
        relative = path.relative_to(source)
        (target / relative).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        for item in (path, sidecar):
            shutil.copy2(item, target / relative.parent / item.name)
