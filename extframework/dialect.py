"""Everything that differs between SQLite and PostgreSQL, in one place (docs/scaling.md).

Services write SQL once, with ``?`` placeholders, and ask ``current()`` for the few pieces
that differ: JSON paths and their typing, index DDL, plan inspection, null ordering, lock
clauses and transactions. They never ask which engine they run on.

What each engine returns is made alike here too: on PostgreSQL, ``json``/``jsonb`` and
``timestamp`` columns come back as the text SQLite would return (``python_value`` of the
fields parses them, as on SQLite) and ``numeric`` as ``int`` or ``float``.
"""

import functools
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager

import psycopg
from peewee import (
    SQL,
    AutoField,
    Cast,
    CharField,
    Expression,
    Field,
    Node,
    NodeList,
    Value,
    fn,
)
from playhouse.migrate import SchemaMigrator
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase
from psycopg.adapt import Loader
from psycopg.types.string import TextLoader

# The advisory lock key of the core's schema upgrade ("extfw" in ASCII).
UPGRADE_LOCK = 0x6578746677


# --- fields -------------------------------------------------------------------------


class JSONField(Field):
    """A JSON value stored as its text: SQLite ``TEXT``, PostgreSQL ``json``.

    PostgreSQL's ``json`` (unlike ``jsonb``) keeps the text as written, so a document comes
    back with its keys in the order they were written, byte for byte, on both engines.
    """

    field_type = "JSONTEXT"

    def db_value(self, value):
        if value is None or isinstance(value, Node):
            return value
        return current().json_value(json.dumps(value, separators=(",", ":")))

    def python_value(self, value):
        if isinstance(value, str):
            return json.loads(value)
        return value

    def __getitem__(self, key: str) -> Node:
        """A top-level member, for a Peewee ``where`` (on PostgreSQL: as text)."""
        return current().json_member(self, key)


class ByteOrderCharField(CharField):
    """Text that compares and sorts by its bytes on both engines (``COLLATE "C"`` on
    PostgreSQL, whose default follows the database's locale)."""

    def ddl_datatype(self, ctx):
        data_type = super().ddl_datatype(ctx)
        collation = current().byte_collation
        return NodeList((data_type, SQL(f"COLLATE {collation}"))) if collation else data_type


class AutoIncrementField(AutoField):
    """An id never handed out twice, even after the newest row is deleted."""

    def ddl(self, ctx):
        node_list = super().ddl(ctx)
        return current().autoincrement(node_list)


# --- PostgreSQL's database class ------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (and a literal ``%`` doubled), once per text."""
    return sql.replace("%", "%%").replace("?", "%s")


class _NumberLoader(Loader):
    """``numeric`` as the int or float SQLite would return (sums, JSON numbers)."""

    def load(self, data):
        text = bytes(data).decode()
        try:
            return int(text)
        except ValueError:
            return float(text)


def adapters() -> psycopg.adapt.AdaptersMap:
    """psycopg adapters that read values as SQLite returns them (see the module docstring)."""
    adapters = psycopg.adapt.AdaptersMap(psycopg.adapters)
    for name in ("json", "jsonb", "timestamp"):
        adapters.register_loader(name, TextLoader)
    adapters.register_loader("numeric", _NumberLoader)
    return adapters


class PostgresDatabase(PooledPostgresqlDatabase):
    """Peewee's pooled PostgreSQL, taking the services' ``?`` SQL as SQLite does."""

    def execute_sql(self, sql, params=None):
        if "?" in sql:
            sql = translate(sql)
        return super().execute_sql(sql, params)


# --- the engines ------------------------------------------------------------------------


class Sqlite:
    name = "sqlite"
    write_queue = True  # writers queue on a lock file first (db.write_transaction)
    byte_collation = ""  # BINARY, SQLite's default
    # Why `flask backup create|restore` (a copy of the database file) cannot serve, or "".
    file_backup_refusal = ""
    field_types = {"JSONTEXT": "TEXT"}

    def open(self, path: str, *, busy_timeout_ms: int, pool_size: int) -> PooledSqliteDatabase:
        # Pooled: a request's close() hands the connection back instead of closing the file,
        # which would run a WAL checkpoint (and an fsync) after every write and redo the
        # pragmas each time.
        return PooledSqliteDatabase(
            path,
            max_connections=64,
            stale_timeout=300,
            field_types=self.field_types,
            pragmas={
                "journal_mode": "wal",
                "foreign_keys": 1,
                "busy_timeout": busy_timeout_ms,
                "synchronous": "normal",
            },
            check_same_thread=False,  # the pool hands a connection to one thread at a time
        )

    # -- SQL pieces --
    def sql(self, text: str) -> str:
        return text

    def json_param(self) -> str:
        """The placeholder of a JSON text value (SQLite minifies and checks it)."""
        return "json(?)"

    def json_value(self, text: str) -> Node:
        return fn.json(text)

    def autoincrement(self, node_list: NodeList) -> NodeList:
        return NodeList((node_list, SQL("AUTOINCREMENT")))

    def json_member(self, field: Field, key: str) -> Node:
        return fn.json_extract(field, f"$.{key}")

    def sort_key(self, dotted: str) -> list[tuple[str, str]]:
        """The (expression, placeholder) parts one field sorts by, in order."""
        return [(f"json_extract(data, '$.{dotted}')", "?")]

    def field_condition(self, dotted: str, op: str, value: object) -> tuple[str, list]:
        """``op`` is = != < <= > >= (None: a JSON null), or ``in`` with a tuple."""
        expr = f"json_extract(data, '$.{dotted}')"
        kind = f"json_type(data, '$.{dotted}')"
        if op == "exists":
            return f"{kind} IS {'NOT ' if value else ''}NULL", []
        if value is None:
            return (f"{kind} = 'null'", []) if op == "=" else (f"{kind} IS NOT 'null'", [])
        if op == "!=":
            return f"{expr} IS NOT ?", [value]  # missing fields count as "not equal"
        if op == "in":
            return f"{expr} IN ({', '.join('?' * len(value))})", list(value)
        return f"{expr} {op} ?", [value]

    def same(self, expr: str, placeholder: str) -> str:
        return f"{expr} IS {placeholder}"

    def order(self, expr: str, descending: bool) -> str:
        """SQLite sorts NULL first ascending and last descending; PostgreSQL is told so."""
        return f"{expr} {'DESC' if descending else 'ASC'}"

    def indexed_by(self, name: str | None) -> str:
        return f' INDEXED BY "{name}"' if name else ""

    def index_ddl(self, name: str, fields: list[str], where: str) -> str:
        columns = ", ".join(["tenant", *(e for f in fields for e, _ in self.sort_key(f))])
        return f'CREATE INDEX IF NOT EXISTS "{name}" ON document ({columns}) WHERE {where}'

    def plan(self, database, sql: str, params: list) -> list[str]:
        return [row[3] for row in database.execute_sql("EXPLAIN QUERY PLAN " + sql, params)]

    def for_update(self) -> str:
        return ""

    def text_length(self, field: Field) -> Node:
        """Characters of a JSON column's text."""
        return fn.LENGTH(field)

    def database_bytes(self, database, path: str) -> int:
        """The database's size: SQLite's file and its WAL."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(path + suffix)
            except OSError:
                pass
        return total

    def stream(self, database, sql: str, params: list):
        """A cursor to ``fetchmany`` from that does not hold the whole result in memory, as
        a context manager that closes it. Use inside a transaction.

        SQLite steps through the result as rows are fetched.
        """
        return closing(database.execute_sql(sql, params))

    def locked(self, query):
        """A Peewee select that locks the rows it reads until the transaction ends.

        SQLite's write transaction already holds the whole database.
        """
        return query

    def total(self, expr: str) -> str:
        return f"total({expr})"

    def epoch_now(self) -> str:
        """The database's clock as Unix time, in seconds with a fraction."""
        return "(julianday('now') - 2440587.5) * 86400.0"

    def registry_version_ddl(self, triggers: dict[str, tuple[str, ...]]) -> list[str]:
        """The ``registry_version`` row and the triggers that bump it (db.REGISTRY_TRIGGERS)."""
        statements = [
            'CREATE TABLE IF NOT EXISTS "registry_version" ("id" INTEGER NOT NULL PRIMARY KEY '
            'CHECK ("id" = 1), "epoch" TEXT NOT NULL, "version" INTEGER NOT NULL)',
            'INSERT OR IGNORE INTO "registry_version" VALUES (1, lower(hex(randomblob(8))), 0)',
        ]
        for table, events in triggers.items():
            for event in events:
                statements.append(
                    f'CREATE TRIGGER IF NOT EXISTS "{table}_{event.split()[0].lower()}'
                    f'_bumps_registry" AFTER {event} ON "{table}" BEGIN UPDATE '
                    '"registry_version" SET "version" = "version" + 1 WHERE "id" = 1; END'
                )
        return statements

    def is_missing_table(self, exc: Exception) -> bool:
        return "no such table" in str(exc)

    def migrator(self, database) -> SchemaMigrator:
        return SchemaMigrator.from_database(database)

    # -- transactions --
    @contextmanager
    def write_transaction(self, database) -> Iterator[None]:
        """Holds SQLite's write lock before its first read (db.write_transaction says why)."""
        with database.atomic("IMMEDIATE"):
            yield

    @contextmanager
    def read_transaction(self, database) -> Iterator[None]:
        database.execute_sql("PRAGMA query_only = 1")
        try:
            with database.atomic():
                yield
        finally:
            database.execute_sql("PRAGMA query_only = 0")

    @contextmanager
    def upgrade_transaction(self, database) -> Iterator[None]:
        with database.atomic("EXCLUSIVE"):
            yield


class Postgres(Sqlite):
    name = "postgresql"
    write_queue = False
    byte_collation = '"C"'
    file_backup_refusal = (
        "The core stores its data in PostgreSQL (DATABASE_URL): 'backup' copies a SQLite file. "
        "Back the database up with pg_dump (docs/scaling.md)."
    )
    # FloatField is Unix times here (leases, signing keys): PostgreSQL's REAL (4 bytes) keeps
    # them to 128 s; DOUBLE PRECISION is SQLite's REAL.
    field_types = {"JSONTEXT": "JSON", "FLOAT": "DOUBLE PRECISION"}

    def open(self, url: str, *, busy_timeout_ms: int, pool_size: int) -> PostgresDatabase:
        # timeout: a thread over the pool's size waits for a connection instead of failing.
        return PostgresDatabase(
            url,
            max_connections=pool_size,
            stale_timeout=300,
            timeout=busy_timeout_ms / 1000,
            field_types=self.field_types,
            prefer_psycopg3=True,
            context=adapters(),
        )

    def sql(self, text: str) -> str:
        return translate(text)

    def json_param(self) -> str:
        return "?::json"

    def json_value(self, text: str) -> Node:
        return Cast(Value(text, converter=False), "json")

    def autoincrement(self, node_list: NodeList) -> NodeList:
        return node_list  # SERIAL: a sequence never hands a value out twice

    def json_member(self, field: Field, key: str) -> Node:
        return Expression(field, "->>", Cast(Value(key, converter=False), "text"))

    # A JSON value sorts as SQLite's json_extract() sorts it: missing and null first, then
    # numbers (true and false as 1 and 0), then strings in byte order (COLLATE "C", whatever
    # the database's collation), objects and arrays as their text. Three parts per field, so
    # an index on them serves equality, ranges and keyset pages.
    @staticmethod
    def _path(dotted: str) -> str:
        return "(data #> '{" + ",".join(dotted.split(".")) + "}')"

    def _rank(self, dotted: str) -> str:
        j = self._path(dotted)
        return (
            f"(CASE json_typeof({j}) WHEN 'number' THEN 1 WHEN 'boolean' THEN 1 "
            f"WHEN 'string' THEN 2 WHEN 'object' THEN 2 WHEN 'array' THEN 2 ELSE 0 END)"
        )

    def _number(self, dotted: str) -> str:
        j = self._path(dotted)
        return (
            f"(CASE json_typeof({j}) WHEN 'number' THEN ({j} #>> '{{}}')::numeric "
            f"WHEN 'boolean' THEN (CASE WHEN ({j} #>> '{{}}') = 'true' THEN 1 ELSE 0 END)"
            "::numeric END)"
        )

    def _text(self, dotted: str) -> str:
        j = self._path(dotted)
        return (
            f"(CASE WHEN json_typeof({j}) IN ('string', 'object', 'array') "
            f"THEN ({j} #>> '{{}}') END COLLATE \"C\")"
        )

    def sort_key(self, dotted: str) -> list[tuple[str, str]]:
        return [
            (self._rank(dotted), "?"),
            (self._number(dotted), "?::numeric"),
            (self._text(dotted), "?"),
        ]

    def field_condition(self, dotted: str, op: str, value: object) -> tuple[str, list]:
        if op == "exists":
            return f"{self._path(dotted)} IS {'NOT ' if value else ''}NULL", []
        if value is None:
            kind = f"json_typeof({self._path(dotted)})"
            if op == "=":
                return f"{kind} = 'null'", []
            return f"{kind} IS DISTINCT FROM 'null'", []
        if op == "in":
            numbers = [
                int(v) if isinstance(v, bool) else v for v in value if not isinstance(v, str)
            ]
            texts = [v for v in value if isinstance(v, str)]
            terms, params = [], []
            if numbers:
                terms.append(self._numbers_in(dotted, len(numbers)))
                params += numbers
            if texts:
                terms.append(self._texts_in(dotted, len(texts)))
                params += texts
            return "(" + " OR ".join(terms) + ")", params
        if isinstance(value, str):
            expr, rank, placeholder = self._text(dotted), 2, "?"
            guard = f"{self._number(dotted)} IS NULL AND "
        else:
            value = int(value) if isinstance(value, bool) else value
            expr, rank, placeholder, guard = self._number(dotted), 1, "?::numeric", ""
        if op == "!=":  # missing fields and other kinds count as "not equal"
            return f"{expr} IS DISTINCT FROM {placeholder}", [value]
        # The rank (and for strings the empty number part) first: an index seeks on them.
        return (
            f"({self._rank(dotted)} = {rank} AND {guard}{expr} {op} {placeholder})",
            [value],
        )

    def _numbers_in(self, dotted: str, count: int) -> str:
        marks = ", ".join(["?::numeric"] * count)
        return f"({self._rank(dotted)} = 1 AND {self._number(dotted)} IN ({marks}))"

    def _texts_in(self, dotted: str, count: int) -> str:
        marks = ", ".join("?" * count)
        return (
            f"({self._rank(dotted)} = 2 AND {self._number(dotted)} IS NULL AND "
            f"{self._text(dotted)} IN ({marks}))"
        )

    def same(self, expr: str, placeholder: str) -> str:
        return f"{expr} IS NOT DISTINCT FROM {placeholder}"

    def order(self, expr: str, descending: bool) -> str:
        return f"{expr} {'DESC NULLS LAST' if descending else 'ASC NULLS FIRST'}"

    def indexed_by(self, name: str | None) -> str:
        return ""  # PostgreSQL's planner picks the index; the query repeats its expressions

    def index_ddl(self, name: str, fields: list[str], where: str) -> str:
        parts = [e for f in fields for e, _ in self.sort_key(f)]
        columns = ", ".join(["tenant", *(f"{e} NULLS FIRST" for e in parts), "pk"])
        return f'CREATE INDEX IF NOT EXISTS "{name}" ON document ({columns}) WHERE {where}'

    def plan(self, database, sql: str, params: list) -> list[str]:
        row = database.execute_sql("EXPLAIN (FORMAT JSON) " + sql, params).fetchone()
        plan = row[0] if not isinstance(row[0], str) else json.loads(row[0])
        lines: list[str] = []

        def walk(node: dict) -> None:
            index = ""
            if "Index Name" in node:
                index = f" USING INDEX {node['Index Name']} ({node.get('Index Cond', '')})"
            lines.append(f"{node['Node Type']}{index}")
            for child in node.get("Plans", []):
                walk(child)

        walk(plan[0]["Plan"])
        return lines

    def for_update(self) -> str:
        return " FOR UPDATE"

    def text_length(self, field: Field) -> Node:
        return fn.LENGTH(Cast(field, "text"))

    def database_bytes(self, database, path: str) -> int:
        return database.execute_sql("SELECT pg_database_size(current_database())").fetchone()[0]

    def stream(self, database, sql: str, params: list):
        # psycopg's ordinary cursor receives the whole result at execute(); a named (server-
        # side) cursor fetches it in itersize batches, inside the caller's transaction.
        if not database.in_transaction():
            raise RuntimeError("stream() needs a transaction (db.read_transaction)")
        cursor = database.connection().cursor(name=f"extfw_stream_{uuid.uuid4().hex}")
        cursor.execute(translate(sql), params)
        return closing(cursor)

    def locked(self, query):
        return query.for_update()

    def total(self, expr: str) -> str:
        return f"COALESCE(SUM({expr}), 0)"

    def epoch_now(self) -> str:
        return "extract(epoch from clock_timestamp())"

    def registry_version_ddl(self, triggers: dict[str, tuple[str, ...]]) -> list[str]:
        statements = [
            'CREATE TABLE IF NOT EXISTS "registry_version" ("id" INTEGER NOT NULL PRIMARY KEY '
            'CHECK ("id" = 1), "epoch" TEXT NOT NULL, "version" BIGINT NOT NULL)',
            'INSERT INTO "registry_version" VALUES (1, substr(md5(random()::text), 1, 16), 0) '
            "ON CONFLICT DO NOTHING",
            "CREATE OR REPLACE FUNCTION extfw_bump_registry() RETURNS trigger LANGUAGE plpgsql "
            'AS $$ BEGIN UPDATE "registry_version" SET "version" = "version" + 1 '
            'WHERE "id" = 1; RETURN NULL; END $$',
        ]
        for table, events in triggers.items():
            for event in events:  # once per statement: a bulk change bumps it once
                statements.append(
                    f'CREATE OR REPLACE TRIGGER "{table}_{event.split()[0].lower()}'
                    f'_bumps_registry" AFTER {event} ON "{table}" FOR EACH STATEMENT '
                    "EXECUTE FUNCTION extfw_bump_registry()"
                )
        return statements

    def is_missing_table(self, exc: Exception) -> bool:
        return "does not exist" in str(exc)

    @contextmanager
    def write_transaction(self, database) -> Iterator[None]:
        # No engine-wide write lock: what SQLite's lock gave, a writer that re-reads rows
        # gets by locking them (for_update()).
        with database.atomic():
            yield

    @contextmanager
    def read_transaction(self, database) -> Iterator[None]:
        with database.atomic():
            database.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield

    @contextmanager
    def upgrade_transaction(self, database) -> Iterator[None]:
        with database.atomic():
            database.execute_sql("SELECT pg_advisory_xact_lock(?)", [UPGRADE_LOCK])
            yield


SQLITE = Sqlite()
POSTGRES = Postgres()
_current: Sqlite = SQLITE


def for_url(url: str | None) -> Sqlite:
    """The engine a ``DATABASE_URL`` names (None: SQLite)."""
    return POSTGRES if url else SQLITE


def use(engine: Sqlite) -> None:
    global _current
    _current = engine


def current() -> Sqlite:
    """The engine the database is bound to."""
    return _current
