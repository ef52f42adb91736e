"""Which tenants a plugin is installed in (SPEC §5: X-Tenant-ID must name one)."""

from extframework.db import database
from extframework.models import Plugin

# Asked on every storage call (then cached): one plain statement, no query building.
_INSTALLED_SQL = (
    "SELECT EXISTS (SELECT 1 FROM tenant t WHERE t.slug = ? AND NOT EXISTS ("
    "SELECT 1 FROM installation u"
    " WHERE u.tenant_id = t.id AND u.plugin_id = ? AND NOT u.installed) AND (? OR EXISTS ("
    "SELECT 1 FROM installation i"
    " WHERE i.tenant_id = t.id AND i.plugin_id = ? AND i.available)))"
)


def is_installed(plugin: Plugin, tenant_slug: str) -> bool:
    """A plugin is in a tenant when it is available there (every tenant, unless an operator
    restricted it to its available rows) and the tenant's admin has not uninstalled it."""
    unrestricted = not plugin.restricted
    row = database.execute_sql(
        _INSTALLED_SQL, (tenant_slug, plugin.id, unrestricted, plugin.id)
    ).fetchone()
    return bool(row[0])
