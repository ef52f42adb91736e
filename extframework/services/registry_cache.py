"""What every view looks up (a plugin, its routes, the menu), cached in-process while current.

Every change to what these caches read (plugin identity and state, routes, installations,
tenant slugs, signing keys) bumps the one-row ``registry_version`` in the same transaction:
triggers do it on either engine (core schema step 8, ``db.REGISTRY_TRIGGERS``), so no writer
can forget. A lookup reads
that row (one primary-key SELECT, once per request) and uses what this process cached under
the same version; anything cached under another version is dropped. Another gunicorn worker,
another process or another host on the same database therefore sees a change on its next
request. See docs/shell.md.

A value is computed after the version is read, so it is never older than the version it is
cached under. Cached values are shared by threads: callers must not change them.
"""

from collections.abc import Callable
from typing import TypeVar

from flask import g, has_request_context
from peewee import DatabaseError

from extframework import dialect
from extframework.db import database, writes_committed

T = TypeVar("T")

MAX_ENTRIES = 4096  # a lookup of many unknown plugin ids cannot grow the cache without end
_VERSION_SQL = 'SELECT "epoch", "version" FROM "registry_version" WHERE "id" = 1'

_cache: tuple[tuple | None, dict] = (None, {})


def current() -> tuple | None:
    """The registry's version as (database file, epoch, counter); None before schema step 7.

    Read once per request: the read is kept on ``flask.g`` for as long as the request's thread
    has committed no write transaction (``db.writes_committed``); a request that changes the
    registry reads it again.
    """
    in_request = has_request_context()
    if in_request:
        memo = g.get("_registry_version")
        if memo is not None and memo[0] == writes_committed():
            return memo[1]
    try:
        row = database.execute_sql(_VERSION_SQL).fetchone()
    except DatabaseError as exc:  # a database not upgraded yet: no caching
        if not dialect.current().is_missing_table(exc):
            raise
        row = None
    version = (database.database, row[0], row[1]) if row else None
    if in_request:
        g._registry_version = (writes_committed(), version)
    return version


def cached(key: tuple, compute: Callable[[], T]) -> T:
    """Return ``compute()``'s value for ``key`` as of the registry's current version."""
    global _cache
    version = current()
    if version is None:
        return compute()
    held, values = _cache
    if held != version:
        values = {}
        _cache = (version, values)
    try:
        return values[key]
    except KeyError:
        pass
    value = compute()
    if len(values) >= MAX_ENTRIES:
        values.clear()
    values[key] = value
    return value
