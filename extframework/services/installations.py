"""Which tenants a plugin is installed in (SPEC §5: X-Tenant-ID must name one)."""

from extframework.models import Installation, Plugin, Tenant


def is_installed(plugin: Plugin, tenant_slug: str) -> bool:
    """A plugin is in every tenant unless an operator restricted it to its Installation rows."""
    tenant = Tenant.get_or_none(Tenant.slug == tenant_slug)
    if tenant is None:
        return False
    if not plugin.restricted:
        return True
    return (
        Installation.select()
        .where((Installation.plugin == plugin) & (Installation.tenant == tenant))
        .exists()
    )


def ensure_installation(plugin: Plugin, tenant: Tenant) -> Installation:
    """Return the plugin's record in a tenant, creating it (policy ``retain``) if missing."""
    installation, _ = Installation.get_or_create(plugin=plugin, tenant=tenant)
    return installation
