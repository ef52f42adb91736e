"""What the shell says in place of a plugin's menu while it cannot be used (issue 17).

A plugin that goes degraded, disabled or migrating leaves the menu (SPEC §6); the people who
had its entries are told so instead of finding nothing, at the place its entries had in the
menu's order (``in_menu_order``). Only plugins installed in the person's
tenant with a view their role may open get a notice: nobody learns of plugins they never had.
"""

from dataclasses import dataclass

from extframework import dialect
from extframework.db import database
from extframework.models import Plugin
from extframework.services import registry_cache
from extframework.services.accounts import role_rank
from extframework.services.installations import is_installed
from extframework.services.menu import PluginMenu, has_params, menu_order_key

# State -> what the person is told; each sentence follows the plugin's name.
NOTICES = {
    "degraded": "is not answering its health checks, so it is unavailable for now. "
    "It comes back by itself when it recovers.",
    "disabled": "was turned off by an administrator, so it is unavailable.",
    "migrating": "is being updated, so it is unavailable until its data is migrated.",
}


def _notice_sql(collation: str) -> str:
    collate = f" COLLATE {collation}" if collation else ""
    return (
        "SELECT p.id, p.plugin_id, p.name, p.state, p.restricted, r.role, r.path"
        " FROM route r JOIN plugin p ON p.id = r.plugin_id"
        " WHERE p.state IN (" + ", ".join("?" * len(NOTICES)) + ")"
        f" AND r.action_id IS NULL ORDER BY p.name{collate}, p.plugin_id{collate}, r.id"
    )


@dataclass(frozen=True)
class Notice:
    plugin_id: str
    name: str
    state: str
    text: str


def notices_for(role: str, tenant: str) -> list[Notice]:
    """The notices the person with ``role`` in ``tenant`` gets, in menu order (cached)."""
    return registry_cache.cached(("menu-notices", role, tenant), lambda: _notices(role, tenant))


def _notices(role: str, tenant: str) -> list[Notice]:
    rank = role_rank(role)
    notices: dict[str, Notice] = {}
    rows = database.execute_sql(_notice_sql(dialect.current().byte_collation), tuple(NOTICES))
    for pk, plugin_id, name, state, restricted, route_role, path in rows:
        if plugin_id in notices or role_rank(route_role) > rank or has_params(path):
            continue
        if restricted and not is_installed(Plugin(id=pk, restricted=restricted), tenant):
            continue
        notices[plugin_id] = Notice(plugin_id, name, state, f"{name} {NOTICES[state]}")
    return list(notices.values())


def in_menu_order(menus: list[PluginMenu], notices: list[Notice]) -> list[PluginMenu | Notice]:
    """Put each notice where its plugin's entries sat in the menu when it was active.

    Both lists come in menu order (name, then plugin id, in byte order); a stable merge on the
    same key keeps a plugin at its place whether it shows entries or a notice.
    """
    return sorted([*menus, *notices], key=lambda item: menu_order_key(item.name, item.plugin_id))


def alert(notices: list[Notice]) -> str:
    """What the folded menu's button adds on a phone, so a notice inside is not missed."""
    if not notices:
        return ""
    return f"{len(notices)} plugin{'s' if len(notices) != 1 else ''} unavailable"
