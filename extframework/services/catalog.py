"""The registry's read side: plugin records as the API, the console and the CLI show them."""

from extframework.db import database
from extframework.errors import NotFound
from extframework.models import (
    Collection,
    HealthCheck,
    Installation,
    ManifestVersion,
    Plugin,
    Route,
    Tenant,
    iso_utc,
)
from extframework.services import (
    lifecycle,
    manifest_records,
    migrations,
    plugin_tokens,
    registry_cache,
    schema_diff,
    uninstall,
)


def get_plugin(plugin_id: str) -> Plugin:
    plugin = Plugin.get_or_none(Plugin.plugin_id == plugin_id)
    if plugin is None:
        raise NotFound(f"No plugin {plugin_id!r} is registered.")
    return plugin


# Every storage call and every proxied view looks a plugin up. They need only these columns:
# loading the whole row also parses its manifest JSON and four timestamps, which costs several
# times what the query does. The rows they give are for reading, never for save().
_SERVING_COLUMNS = ("id", "plugin_id", "name", "base_url", "state", "restricted")
_SERVING_SQL = "SELECT " + ", ".join(_SERVING_COLUMNS) + " FROM plugin WHERE {} = ?"


def _serving(column: str, value: str) -> Plugin | None:
    row = database.execute_sql(_SERVING_SQL.format(column), (value,)).fetchone()
    if row is None:
        return None
    plugin = Plugin(__no_default__=True, **dict(zip(_SERVING_COLUMNS, row, strict=True)))
    plugin.restricted = bool(plugin.restricted)
    return plugin


def serving_plugin(plugin_id: str) -> Plugin | None:
    """The plugin's identity and state, read cheaply (see ``_SERVING_COLUMNS``).

    Cached while the registry version holds (``registry_cache``): do not change the row.
    """
    return registry_cache.cached(("plugin", plugin_id), lambda: _serving("plugin_id", plugin_id))


def list_plugins() -> list[Plugin]:
    return list(Plugin.select().order_by(Plugin.name, Plugin.plugin_id))


def last_health(plugin: Plugin) -> dict | None:
    check = (
        HealthCheck.select()
        .where(HealthCheck.plugin == plugin)
        .order_by(HealthCheck.id.desc())
        .first()
    )
    if check is None:
        return None
    return {
        "at": iso_utc(check.at),
        "ok": check.ok,
        "status_code": check.status_code,
        "latency_ms": check.latency_ms,
        "detail": check.detail,
    }


def menus(plugin: Plugin) -> list[dict]:
    """Return the plugin's menu entries with their actions, as stored for the proxy."""
    result: dict[str, dict] = {}
    routes = (
        Route.select()
        .where(Route.plugin == plugin)
        .order_by(Route.action_id.is_null(False), Route.position, Route.id)
    )
    for route in routes:
        if route.action_id is None:
            result[route.menu_id] = {
                "id": route.menu_id,
                "label": route.label,
                "path": route.path,
                "role": route.role,
                "mode": route.mode,
                "actions": [],
            }
        else:
            result[route.menu_id]["actions"].append(
                {
                    "id": route.action_id,
                    "label": route.label,
                    "method": route.method,
                    "path": route.path,
                    "role": route.role,
                }
            )
    return list(result.values())


def collections(plugin: Plugin) -> list[dict]:
    return [
        {"name": c.name, "indexes": c.indexes, "schema": c.schema}
        for c in Collection.select().where(Collection.plugin == plugin).order_by(Collection.name)
    ]


def manifest_versions(plugin: Plugin) -> list[dict]:
    return [
        {"version": row.version, "created_at": iso_utc(row.created_at), "manifest": row.manifest}
        for row in ManifestVersion.select()
        .where(ManifestVersion.plugin == plugin)
        .order_by(ManifestVersion.created_at.desc(), ManifestVersion.id.desc())
    ]


def tenants(plugin: Plugin) -> list[str] | None:
    """Return the tenants a restricted plugin is installed in, or None when it is in all."""
    if not plugin.restricted:
        return None
    return [
        row.tenant.slug
        for row in Installation.select(Installation, Tenant)
        .join(Tenant)
        .where((Installation.plugin == plugin) & Installation.available)
        .order_by(Tenant.slug)
    ]


def plugin_summary(plugin: Plugin, *, counts: bool = True) -> dict:
    """Describe a plugin as the registry API and the console show it.

    ``counts=False`` leaves the per-tenant document counts out of ``uninstall_policies``.
    """
    return {
        "plugin_id": plugin.plugin_id,
        "name": plugin.name,
        "version": plugin.version,
        "state": plugin.state,
        "base_url": plugin.base_url,
        "allowed_transitions": lifecycle.allowed_from(plugin.state),
        "last_health": last_health(plugin),
        "consecutive_failures": plugin.consecutive_failures,
        "state_history": lifecycle.history(plugin),
        "collections": [{"name": c["name"], "indexes": c["indexes"]} for c in collections(plugin)],
        "menus": menus(plugin),
        "versions": [row["version"] for row in manifest_versions(plugin)],
        "tenants": tenants(plugin),
        "uninstall_policies": uninstall.policies(plugin, counts=counts),
        "migration": migration_summary(plugin),
        "token_rotated_at": iso_utc(plugin.token_rotated_at),
        "tokens": plugin_tokens.live_tokens(plugin),
        "created_at": iso_utc(plugin.created_at),
        "updated_at": iso_utc(plugin.updated_at),
    }


def migration_summary(plugin: Plugin) -> dict | None:
    run = migrations.latest_run(plugin)
    return None if run is None else migrations.run_summary(run)


def version_diff(plugin: Plugin, from_version: str, to_version: str) -> dict:
    """Compare the collections of two recorded versions of a plugin (SPEC §7's diff)."""

    manifests = {}
    for version in (from_version, to_version):
        row = ManifestVersion.get_or_none(
            (ManifestVersion.plugin == plugin) & (ManifestVersion.version == version)
        )
        if row is None:
            raise NotFound(f"Plugin {plugin.plugin_id!r} has no recorded version {version!r}.")
        manifests[version] = row.manifest
    old, new = manifests[from_version], manifests[to_version]
    renames = manifest_records.renames(old, new, strict=False)
    changes = schema_diff.diff_collections(
        old.get("data_schemas", []), new.get("data_schemas", []), renames=renames
    )
    return {
        "plugin_id": plugin.plugin_id,
        "from": from_version,
        "to": to_version,
        "breaking": any(change.breaking for change in changes),
        "changes": [change.to_dict() for change in changes],
    }
