"""Export everything a plugin owns, as JSON lines, one document per line."""

import logging
from collections.abc import Iterator
from datetime import datetime
from json.encoder import encode_basestring_ascii as json_string

from extframework import dialect
from extframework.db import database, read_transaction
from extframework.errors import NotFound
from extframework.models import AuditEvent, Plugin

log = logging.getLogger(__name__)

BATCH = 500


def export_plugin(plugin_id: str, *, actor: str) -> Iterator[str]:
    """Check the plugin exists and record the export, then return its documents' lines.

    Lines come ordered by tenant, collection and creation, read in one snapshot; each is
    ``{"tenant", "collection", "id", "version", "created_at", "updated_at", "data"}``. The
    iterator yields chunks of up to BATCH whole lines.
    """
    plugin = Plugin.get_or_none(Plugin.plugin_id == plugin_id)
    if plugin is None:
        raise NotFound(f"No plugin {plugin_id!r} is registered.")
    AuditEvent.create(actor=actor, action="plugin.export", target=plugin_id)
    log.info("%s exports the data of plugin %s", actor, plugin_id)
    return _lines(plugin_id)


def _stamp(stored: str) -> str:
    """A stored time as the API writes it (``storage.render``), without parsing the usual form."""
    if len(stored) == 26 and stored[10] == " ":  # 2026-12-01 19:22:47.123456
        return f"{stored[:10]}T{stored[11:]}Z"
    return datetime.fromisoformat(stored).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _lines(plugin_id: str) -> Iterator[str]:
    # One read snapshot, one (tenant, collection) at a time, BATCH rows at a time: memory stays
    # flat however many documents the plugin holds. ``data`` is spliced in as the database
    # holds it (minified by SQLite's json()), as archives do, and a namespace's constant part
    # of the line is built once: per-row Python was most of the export's time (bench/scale.py).
    engine = dialect.current()
    with read_transaction():
        for tenant, collection in _namespaces(plugin_id):
            prefix = (
                f'{{"tenant":{json_string(tenant)},"collection":{json_string(collection)},"id":'
            )
            with engine.stream(
                database,
                "SELECT doc_id, version, created_at, updated_at, data FROM document "
                "WHERE plugin_id = ? AND tenant = ? AND collection = ? ORDER BY pk",
                [plugin_id, tenant, collection],
            ) as cursor:
                while rows := cursor.fetchmany(BATCH):
                    yield "".join(
                        [
                            f'{prefix}{json_string(doc_id)},"version":{version},'
                            f'"created_at":"{created.replace(" ", "T")}Z",'
                            f'"updated_at":"{updated.replace(" ", "T")}Z","data":{data}}}\n'
                            if len(created) == 26 == len(updated)  # 2026-12-01 19:22:47.123456
                            else _line(prefix, doc_id, version, created, updated, data)
                            for doc_id, version, created, updated, data in rows
                        ]
                    )


def _namespaces(plugin_id: str) -> Iterator[tuple[str, str]]:
    """The plugin's (tenant, collection) pairs in order: one index seek each, not a scan."""
    sql = (
        "SELECT tenant, collection FROM document WHERE plugin_id = ? {after}"
        "ORDER BY tenant, collection LIMIT 1"
    )
    pair = database.execute_sql(sql.format(after=""), [plugin_id]).fetchone()
    while pair:
        yield pair
        tenant, collection = pair
        pair = database.execute_sql(
            sql.format(after="AND (tenant > ? OR (tenant = ? AND collection > ?)) "),
            [plugin_id, tenant, tenant, collection],
        ).fetchone()


def _line(prefix: str, doc_id: str, version: int, created, updated, data: str) -> str:
    """A line whose times are not in the usual stored form (a whole second has no fraction)."""
    return (
        f'{prefix}{json_string(doc_id)},"version":{version},"created_at":"{_stamp(created)}",'
        f'"updated_at":"{_stamp(updated)}","data":{data}}}\n'
    )


def _stamp(stored) -> str:
    """A stored time as the API writes it (``storage.render``)."""
    when = stored if isinstance(stored, datetime) else datetime.fromisoformat(stored)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
