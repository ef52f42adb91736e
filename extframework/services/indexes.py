"""Declared collection indexes as real database indexes, each scoped to its collection.

Each index is a partial expression index on the ``document`` table: ``(tenant, <each
field's sort key>) WHERE plugin_id = '<p>' AND collection = '<c>'`` — on SQLite the key is
``json_extract(data, '$.a')``, on PostgreSQL three parts (dialect.Postgres.sort_key) and a
trailing ``pk``. Queries repeat the same literal WHERE terms and expressions, so the engine
uses the index.
"""

import hashlib
import re

from extframework import dialect
from extframework.db import database

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_-]*$")
FIELD_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _literal(value: str) -> str:
    if not IDENTIFIER.match(value):
        raise ValueError(f"not a safe identifier: {value!r}")
    return f"'{value}'"


def checked_path(dotted: str) -> str:
    """Return a dotted path of plain names, safe to splice into SQL; ValueError otherwise."""
    segments = dotted.split(".")
    if not all(FIELD_SEGMENT.match(s) for s in segments):
        raise ValueError(f"not a plain dotted path: {dotted!r}")
    return dotted


def scope_clause(plugin_id: str, collection: str) -> str:
    """The literal WHERE terms that every index and every query of a collection share."""
    return f"plugin_id = {_literal(plugin_id)} AND collection = {_literal(collection)}"


def index_name(plugin_id: str, collection: str, fields: list[str]) -> str:
    digest = hashlib.sha256(f"{plugin_id}|{collection}|{','.join(fields)}".encode()).hexdigest()
    return f"ixdoc_{digest[:20]}"


def create_indexes(plugin_id: str, collection: str, indexes: list[dict]) -> list[str]:
    """Build each declared index (idempotent); return their names."""
    engine = dialect.current()
    names = []
    for spec in indexes:
        fields = [checked_path(f) for f in spec["fields"]]
        name = index_name(plugin_id, collection, fields)
        database.execute_sql(engine.index_ddl(name, fields, scope_clause(plugin_id, collection)))
        names.append(name)
    return names


def drop_indexes(plugin_id: str, collection: str, indexes: list[dict]) -> None:
    for spec in indexes:
        name = index_name(plugin_id, collection, list(spec["fields"]))
        database.execute_sql(f'DROP INDEX IF EXISTS "{name}"')
