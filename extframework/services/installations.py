"""Which tenants a plugin is installed in (SPEC §5: X-Tenant-ID must name one)."""

from extframework.db import database
from extframework.models import Plugin

# Asked on every storage call: one plain statement, no query building.
_INSTALLED_SQL = (
    "SELECT EXISTS (SELECT 1 FROM tenant t WHERE t.slug = ? AND (? OR EXISTS ("
    "SELECT 1 FROM installation i"
    " WHERE i.tenant_id = t.id AND i.plugin_id = ? AND i.available)))"
)


def is_installed(plugin: Plugin, tenant_slug: str) -> bool:
    """A plugin is in every tenant unless an operator restricted it to its available rows."""
    unrestricted = not plugin.restricted
    row = database.execute_sql(_INSTALLED_SQL, (tenant_slug, unrestricted, plugin.id)).fetchone()
    return bool(row[0])
