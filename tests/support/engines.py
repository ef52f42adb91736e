"""A connection of its own to the test app's database, on either engine, for raw SQL.

Tests that look at rows as the database holds them (or write behind the core's back) use it
instead of ``sqlite3.connect``; statements take ``?`` on both engines, and values read as
SQLite returns them (``dialect.adapters``).
"""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from extframework import dialect


class _Postgres:
    def __init__(self, con: psycopg.Connection) -> None:
        self.con = con

    def execute(self, sql: str, params=()):
        return self.con.execute(dialect.translate(sql), list(params))

    def executemany(self, sql: str, rows) -> None:
        with self.con.cursor() as cursor:
            cursor.executemany(dialect.translate(sql), list(rows))


@contextmanager
def raw_connection(app) -> Iterator:
    """Commit on a clean exit, as ``with sqlite3.connect(...)`` does, then close."""
    url = app.config.get("DATABASE_URL")
    if url:
        with psycopg.connect(url, context=dialect.adapters()) as con:
            yield _Postgres(con)
        return
    con = sqlite3.connect(app.config["DATABASE"])
    try:
        with con:
            yield con
    finally:
        con.close()
