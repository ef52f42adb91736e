"""What a manifest version leaves in the database: the version row, routes, collections, indexes.

Registration, compatible updates (``registry``) and migrations (``migrations``,
``migration_checks``) all record versions through this module; it imports none of them, so
none of them imports another to record a manifest.
"""

from extframework.errors import BadRequest, Conflict, field_error
from extframework.models import ROLES, Collection, ManifestVersion, Plugin, Route, utcnow
from extframework.services import indexes
from extframework.services.manifest import base_url as manifest_base_url

VIEW_ROLE = "viewer"
ACTION_ROLE = "member"


def record_manifest(plugin: Plugin, manifest: dict) -> None:
    """Make ``manifest`` the plugin's current version: its fields, history row and routes."""
    check_version_unused(plugin, manifest)
    plugin.name = manifest["name"]
    plugin.version = manifest["version"]
    plugin.base_url = manifest_base_url(manifest)
    plugin.manifest = manifest
    plugin.updated_at = utcnow()
    Plugin.update(
        name=plugin.name,
        version=plugin.version,
        base_url=plugin.base_url,
        manifest=manifest,
        updated_at=plugin.updated_at,
    ).where(Plugin.id == plugin.id).execute()
    if (
        not ManifestVersion.select()
        .where((ManifestVersion.plugin == plugin) & (ManifestVersion.version == plugin.version))
        .exists()
    ):
        ManifestVersion.create(plugin=plugin, version=plugin.version, manifest=manifest)
    Route.delete().where(Route.plugin == plugin).execute()
    store_routes(plugin, manifest)


def check_version_unused(plugin: Plugin, manifest: dict) -> None:
    """Refuse a version number this plugin has used before for a different manifest."""
    earlier = ManifestVersion.get_or_none(
        (ManifestVersion.plugin == plugin) & (ManifestVersion.version == manifest["version"])
    )
    if earlier is not None and earlier.manifest != manifest:
        raise Conflict(
            f"Version {manifest['version']} of {plugin.plugin_id!r} was registered before with "
            "a different manifest; every version keeps one manifest, so use a new version.",
            version=manifest["version"],
            kind="version-manifest-changed",
        )


def store_routes(plugin: Plugin, manifest: dict) -> None:
    """Store one route per menu view and per action of ``manifest``."""
    rows = []
    for position, item in enumerate(manifest["menu_items"]):
        entry_role = item.get("role") or VIEW_ROLE
        view = item["view"]
        rows.append(
            {
                "plugin": plugin,
                "menu_id": item["id"],
                "action_id": None,
                "label": item["label"],
                "method": "GET",
                "path": view["path"],
                "role": entry_role,
                "mode": view.get("mode", "inline"),
                "position": position,
            }
        )
        for number, action in enumerate(item.get("actions", [])):
            rows.append(
                {
                    "plugin": plugin,
                    "menu_id": item["id"],
                    "action_id": action["id"],
                    "label": action.get("label") or action["id"],
                    "method": action["method"],
                    "path": action["path"],
                    # An action is never open to more people than its menu entry.
                    "role": _higher_role(action.get("role") or ACTION_ROLE, entry_role),
                    "mode": "inline",
                    "position": number,
                }
            )
    if rows:
        Route.insert_many(rows).execute()


def _higher_role(*roles: str | None) -> str:
    return max((r for r in roles if r), key=ROLES.index)


def create_collection(plugin: Plugin, entry: dict) -> Collection:
    """Provision a declared collection with its schema and indexes."""
    row = Collection.create(
        plugin=plugin,
        name=entry["collection"],
        schema=entry["schema"],
        indexes=entry["indexes"],
    )
    indexes.create_indexes(plugin.plugin_id, row.name, entry["indexes"])
    return row


def replace_indexes(plugin_id: str, collection: str, old: list[dict], new: list[dict]) -> None:
    """Drop the indexes of ``old`` that ``new`` no longer declares, then build ``new``'s."""
    kept = {index_key(spec) for spec in new}
    dropped = [spec for spec in old if index_key(spec) not in kept]
    indexes.drop_indexes(plugin_id, collection, dropped)
    indexes.create_indexes(plugin_id, collection, new)


def index_key(spec: dict) -> tuple:
    return tuple(spec["fields"])


def drop_undeclared_collections(plugin: Plugin, manifest: dict) -> None:
    """Delete the collection rows and indexes ``manifest`` no longer declares."""
    names = {entry["collection"] for entry in manifest["data_schemas"]}
    # Materialised first: DROP INDEX under an open SELECT is SQLITE_LOCKED (docs/registry.md).
    dropped = Collection.select().where(
        (Collection.plugin == plugin) & Collection.name.not_in(names)
    )
    for row in list(dropped):
        indexes.drop_indexes(plugin.plugin_id, row.name, row.indexes)
        row.delete_instance()


def renames(old_manifest: dict, manifest: dict, *, strict: bool = True) -> dict[str, str]:
    """Map new name -> old name for each ``replaces`` of ``manifest`` against ``old_manifest``.

    ``strict`` refuses (400) a ``replaces`` naming no old collection or a new name that exists
    already; otherwise such an entry is not a rename (reading two recorded versions).
    """
    old_names = {entry["collection"] for entry in old_manifest.get("data_schemas", [])}
    found, errors = {}, []
    for i, entry in enumerate(manifest.get("data_schemas", [])):
        source = entry.get("replaces")
        if source is None:
            continue
        if source not in old_names:
            errors.append(
                field_error(
                    ["data_schemas", i, "replaces"],
                    "renames",
                    f"version {old_manifest.get('version')} has no collection {source!r} to rename",
                )
            )
        elif entry["collection"] in old_names:
            errors.append(
                field_error(
                    ["data_schemas", i, "collection"],
                    "renames",
                    f"{entry['collection']!r} exists already; a rename needs a new name",
                )
            )
        else:
            found[entry["collection"]] = source
    if errors and strict:
        raise BadRequest(
            "The manifest's renames do not fit the installed version.",
            errors=errors,
            kind="invalid-manifest",
        )
    return found
