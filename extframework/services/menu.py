"""The shell's menu: what a person may open, per SPEC §8."""

from dataclasses import dataclass, field

from extframework.models import Plugin, Route
from extframework.services.accounts import role_rank
from extframework.services.installations import is_installed

SHOWN_STATE = "active"


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


def has_params(path: str) -> bool:
    return any(segment.startswith(":") for segment in path.split("/"))


def menu_for(role: str, tenant: str) -> list[PluginMenu]:
    """List the views of active plugins installed in the tenant that the role may open.

    A view whose path holds ``:params`` is reachable only from links inside the plugin, so it
    gets no menu entry.
    """
    rank = role_rank(role)
    routes = (
        Route.select(
            Route.menu_id,
            Route.label,
            Route.path,
            Route.role,
            Route.mode,
            Plugin.id,
            Plugin.plugin_id,
            Plugin.name,
            Plugin.restricted,
        )  # fmt: skip
        .join(Plugin)
        .where((Plugin.state == SHOWN_STATE) & Route.action_id.is_null())
        .order_by(Plugin.name, Plugin.plugin_id, Route.position, Route.id)
    )
    menus: dict[str, PluginMenu] = {}
    installed: dict[str, bool] = {}
    for route in routes:
        plugin = route.plugin
        if plugin.plugin_id not in installed:
            installed[plugin.plugin_id] = not plugin.restricted or is_installed(plugin, tenant)
        if not installed[plugin.plugin_id] or role_rank(route.role) > rank:
            continue
        if has_params(route.path):
            continue
        menu = menus.setdefault(plugin.plugin_id, PluginMenu(plugin.plugin_id, plugin.name))
        menu.entries.append(
            MenuEntry(
                menu_id=route.menu_id,
                label=route.label or route.menu_id,
                href=f"/plugin-proxy/{plugin.plugin_id}{route.path}",
                mode=route.mode,
            )
        )
    return list(menus.values())
