"""Declared collection indexes as real SQLite indexes, each scoped to its collection.

Each index is a partial expression index on the ``document`` table:
``(tenant, json_extract(data, '$.a'), ...) WHERE plugin_id = '<p>' AND collection = '<c>'``.
Queries must repeat the same literal WHERE terms and expressions for SQLite to use it.
"""

import hashlib
import re

from extframework.db import database

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_-]*$")
FIELD_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _literal(value: str) -> str:
    if not IDENTIFIER.match(value):
        raise ValueError(f"not a safe identifier: {value!r}")
    return f"'{value}'"


def field_expression(dotted: str) -> str:
    """Return the SQL expression for a dotted path: ``json_extract(data, '$.a.b')``."""
    segments = dotted.split(".")
    if not all(FIELD_SEGMENT.match(s) for s in segments):
        raise ValueError(f"not a plain dotted path: {dotted!r}")
    return f"json_extract(data, '$.{dotted}')"


def scope_clause(plugin_id: str, collection: str) -> str:
    """The literal WHERE terms that every index and every query of a collection share."""
    return f"plugin_id = {_literal(plugin_id)} AND collection = {_literal(collection)}"


def index_name(plugin_id: str, collection: str, fields: list[str]) -> str:
    digest = hashlib.sha256(f"{plugin_id}|{collection}|{','.join(fields)}".encode()).hexdigest()
    return f"ixdoc_{digest[:20]}"


def create_indexes(plugin_id: str, collection: str, indexes: list[dict]) -> list[str]:
    """Build each declared index (idempotent); return their names."""
    names = []
    for spec in indexes:
        fields = list(spec["fields"])
        name = index_name(plugin_id, collection, fields)
        columns = ", ".join(["tenant", *(field_expression(f) for f in fields)])
        database.execute_sql(
            f'CREATE INDEX IF NOT EXISTS "{name}" ON document ({columns}) '
            f"WHERE {scope_clause(plugin_id, collection)}"
        )
        names.append(name)
    return names


def drop_indexes(plugin_id: str, collection: str, indexes: list[dict]) -> None:
    for spec in indexes:
        name = index_name(plugin_id, collection, list(spec["fields"]))
        database.execute_sql(f'DROP INDEX IF EXISTS "{name}"')
