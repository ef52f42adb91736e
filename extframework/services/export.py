"""Export everything a plugin owns, as JSON lines, one document per line."""

import json
import logging
from collections.abc import Iterator

from extframework.db import database, read_transaction
from extframework.errors import NotFound
from extframework.models import AuditEvent, Plugin
from extframework.services.storage import render

log = logging.getLogger(__name__)

BATCH = 500


def export_plugin(plugin_id: str, *, actor: str) -> Iterator[str]:
    """Check the plugin exists and record the export, then return its documents' lines.

    Lines come ordered by tenant, collection and creation, read in one snapshot; each is
    ``{"tenant", "collection", "id", "version", "created_at", "updated_at", "data"}``.
    """
    plugin = Plugin.get_or_none(Plugin.plugin_id == plugin_id)
    if plugin is None:
        raise NotFound(f"No plugin {plugin_id!r} is registered.")
    AuditEvent.create(actor=actor, action="plugin.export", target=plugin_id)
    log.info("%s exports the data of plugin %s", actor, plugin_id)
    return _lines(plugin_id)


def _lines(plugin_id: str) -> Iterator[str]:
    with read_transaction():  # one read snapshot, so the export is consistent
        cursor = database.execute_sql(
            "SELECT tenant, collection, doc_id, version, created_at, updated_at, data "
            "FROM document WHERE plugin_id = ? ORDER BY tenant, collection, pk",
            [plugin_id],
        )
        while rows := cursor.fetchmany(BATCH):
            for tenant, collection, doc_id, version, created, updated, data in rows:
                line = {"tenant": tenant, "collection": collection}
                line.update(render(doc_id, version, created, updated, json.loads(data)))
                yield json.dumps(line, separators=(",", ":")) + "\n"
