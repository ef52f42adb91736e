"""The shell's menu: what a person may open, per SPEC §8."""

from dataclasses import dataclass, field

from extframework import dialect
from extframework.db import database
from extframework.models import Plugin
from extframework.services import lifecycle, registry_cache
from extframework.services.accounts import role_rank
from extframework.services.installations import is_installed


# Runs on every shell page: one plain statement, no query building; the states come from the
# lifecycle table.
def _menu_sql(collation: str) -> str:
    """The menu in byte order of names on either engine (PostgreSQL's default follows the
    database's locale: "beta" would come before "Zeta")."""
    collate = f" COLLATE {collation}" if collation else ""
    return (
        "SELECT r.menu_id, r.label, r.path, r.role, r.mode, p.id, p.plugin_id, p.name,"
        " p.restricted FROM route r JOIN plugin p ON p.id = r.plugin_id"
        " WHERE p.state IN (" + ", ".join("?" * len(lifecycle.MENU_STATES)) + ")"
        f" AND r.action_id IS NULL ORDER BY p.name{collate}, p.plugin_id{collate},"
        " r.position, r.id"
    )


@dataclass(frozen=True)
class MenuEntry:
    menu_id: str
    label: str
    href: str
    mode: str


@dataclass(frozen=True)
class PluginMenu:
    plugin_id: str
    name: str
    entries: list[MenuEntry] = field(default_factory=list)


def menu_order_key(name: str, plugin_id: str) -> tuple[str, str]:
    """The menu's order in Python: by name, then plugin id, as ``_menu_sql`` sorts them.

    Python compares strings by code point, which is the byte order of their UTF-8 (SQLite's
    BINARY, PostgreSQL's "C" collation).
    """
    return name, plugin_id


def has_params(path: str) -> bool:
    return any(segment.startswith(":") for segment in path.split("/"))


def menu_for(role: str, tenant: str) -> list[PluginMenu]:
    """List the views of active plugins installed in the tenant that the role may open.

    A view whose path holds ``:params`` is reachable only from links inside the plugin, so it
    gets no menu entry. Cached while the registry version holds (``registry_cache``).
    """
    return registry_cache.cached(("menu", role, tenant), lambda: _menu_for(role, tenant))


def _menu_for(role: str, tenant: str) -> list[PluginMenu]:
    rank = role_rank(role)
    menus: dict[str, PluginMenu] = {}
    installed: dict[str, bool] = {}
    for (
        menu_id,
        label,
        path,
        route_role,
        mode,
        pk,
        plugin_id,
        name,
        restricted,
    ) in database.execute_sql(_menu_sql(dialect.current().byte_collation), lifecycle.MENU_STATES):
        if plugin_id not in installed:
            installed[plugin_id] = is_installed(Plugin(id=pk, restricted=restricted), tenant)
        if not installed[plugin_id] or role_rank(route_role) > rank or has_params(path):
            continue
        menu = menus.setdefault(plugin_id, PluginMenu(plugin_id, name))
        menu.entries.append(
            MenuEntry(
                menu_id=menu_id,
                label=label or menu_id,
                href=f"/plugin-proxy/{plugin_id}{path}",
                mode=mode,
            )
        )
    return list(menus.values())
