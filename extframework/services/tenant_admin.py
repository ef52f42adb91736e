"""Who administers whom (docs/identity.md, "Roles"): operators the installation, a tenant's
admins their own tenant.

Every function takes the acting person and refuses what they may not do: a member or viewer
gets ``Forbidden``; a tenant admin asking about another tenant, its users or a plugin that is
not in their tenant gets ``NotFound`` (another tenant is not there for them, not even by
name); a tenant admin touching an operator or the operator flag gets ``Forbidden``. The console
and the API call these, so hiding a link is never the only guard.
"""

import logging
from collections.abc import Mapping
from typing import Protocol

from peewee import JOIN, SQL, fn

from extframework.db import write_transaction
from extframework.errors import Conflict, Forbidden, NotFound
from extframework.models import AuditEvent, Installation, Plugin, Tenant, User
from extframework.services import accounts, catalog, listing, sessions, uninstall

log = logging.getLogger(__name__)

ADMIN_ROLE = "admin"


class Person(Protocol):
    """The acting person: ``authn.Identity`` in a request, anything with these fields in tests."""

    id: int
    email: str
    role: str
    tenant: str
    is_operator: bool


def _actor(person: Person) -> str:
    return accounts.user_actor(person.email)


def is_admin(person: Person) -> bool:
    """Is this person an operator, or the admin of a tenant?"""
    return bool(person.is_operator) or person.role == ADMIN_ROLE


def require_admin(person: Person) -> None:
    if not is_admin(person):
        log.warning("refused: %s (role %s) is no admin", person.email, person.role)
        raise Forbidden("Only an operator or an admin of your tenant may administer it.")


def _require_tenant(person: Person, slug: str) -> None:
    """Refuse a tenant admin anything about a tenant that is not theirs (it is not found)."""
    require_admin(person)
    if not person.is_operator and slug != person.tenant:
        log.warning("refused: tenant admin %s asked about tenant %r", person.email, slug)
        raise NotFound(f"No tenant {slug!r}.")


def tenants(person: Person) -> list[Tenant]:
    """Every tenant for an operator; a tenant admin's own tenant only."""
    require_admin(person)
    rows = accounts.list_tenants()
    return rows if person.is_operator else [t for t in rows if t.slug == person.tenant]


def users(person: Person) -> list[User]:
    """Every user for an operator; the users of their own tenant for a tenant admin."""
    require_admin(person)
    rows = accounts.list_users()
    return rows if person.is_operator else [u for u in rows if u.tenant.slug == person.tenant]


USER_SORTS = {
    "email": (User.email,),
    "name": (User.name, User.email),
    "role": (User.role, User.email),
    "tenant": (Tenant.slug, User.email),
    "active": (User.is_active, User.email),
    "created": (User.created_at, User.id),
}
TENANT_SORTS = {
    "slug": (Tenant.slug,),
    "name": (Tenant.name, Tenant.slug),
    "users": (SQL("user_count"), Tenant.slug),
    "created": (Tenant.created_at, Tenant.id),
}


def users_page(person: Person, args: Mapping[str, str]) -> listing.Page:
    """One page of the users this person administers, searched and sorted in the database."""
    require_admin(person)
    query = User.select(User, Tenant).join(Tenant)
    if not person.is_operator:
        query = query.where(Tenant.slug == person.tenant)
    view = listing.parse(args, sorts=USER_SORTS, default_sort="email")
    search = (User.email, User.name, User.role, Tenant.slug)
    return listing.apply(query, view, sorts=USER_SORTS, search=search)


def tenants_page(person: Person, args: Mapping[str, str]) -> listing.Page:
    """One page of the tenants this person administers, each with ``user_count``."""
    require_admin(person)
    query = (
        Tenant.select(Tenant, fn.COUNT(User.id).alias("user_count"))
        .join(User, JOIN.LEFT_OUTER)
        .group_by(Tenant.id)
    )
    if not person.is_operator:
        query = query.where(Tenant.slug == person.tenant)
    view = listing.parse(args, sorts=TENANT_SORTS, default_sort="slug")
    return listing.apply(query, view, sorts=TENANT_SORTS, search=(Tenant.slug, Tenant.name))


def user(person: Person, user_id: int) -> User:
    """Return a user this person administers; another tenant's user is not found."""
    require_admin(person)
    found = User.select(User, Tenant).join(Tenant).where(User.id == user_id).first()
    if found is None or (not person.is_operator and found.tenant.slug != person.tenant):
        raise NotFound(f"No user with id {user_id}.")
    return found


def _changeable(person: Person, user_id: int) -> User:
    """Return a user this person may change: a tenant admin never changes an operator."""
    target = user(person, user_id)
    if target.is_operator and not person.is_operator:
        log.warning("refused: tenant admin %s tried to change operator %s", person.email, user_id)
        raise Forbidden(f"{target.email} is an operator; only an operator may change them.")
    return target


def _no_operator_flag(person: Person, operator: bool | None) -> None:
    if operator and not person.is_operator:
        log.warning("refused: tenant admin %s tried to make an operator", person.email)
        raise Forbidden("Only an operator may make someone an operator.")


def create_user(
    person: Person,
    email: str,
    password: str,
    *,
    role: str = "member",
    operator: bool = False,
    tenant: str | None = None,
    name: str = "",
) -> User:
    """Create a user; a tenant admin creates them in their own tenant, never an operator."""
    require_admin(person)
    _no_operator_flag(person, operator)
    tenant = tenant or person.tenant
    _require_tenant(person, tenant)
    return accounts.create_user(
        email,
        password,
        role=role,
        operator=operator,
        tenant=tenant,
        name=name,
        actor=_actor(person),
    )


def set_role(person: Person, user_id: int, role: str, *, operator: bool | None = None) -> User:
    """Change a user's role (an operator also their operator flag)."""
    target = _changeable(person, user_id)
    if person.is_operator:
        return accounts.set_role(target.id, role, operator=operator, actor=_actor(person))
    _no_operator_flag(person, operator)
    if target.id == person.id and role != target.role:
        raise Conflict("You cannot change your own role; ask another admin of your tenant.")
    return accounts.set_role(target.id, role, operator=False, actor=_actor(person))


def set_active(person: Person, user_id: int, active: bool) -> User:
    target = _changeable(person, user_id)
    return accounts.set_active(target.id, active, actor=_actor(person))


def set_password(person: Person, user_id: int, password: str) -> User:
    """Set someone else's password (their sessions end), as an operator's reset does."""
    target = _changeable(person, user_id)
    return sessions.set_password(target.id, password, actor=_actor(person))


def _available(plugin: Plugin, tenant: Tenant) -> Installation | bool:
    """The tenant's installation row when the operator made the plugin available there (True
    when available without a row); False when it is not available to the tenant."""
    if plugin.state == "deregistered":
        return False
    row = Installation.get_or_none(
        (Installation.plugin == plugin) & (Installation.tenant == tenant)
    )
    if plugin.restricted and (row is None or not row.available):
        return False
    return row if row is not None else True


def plugins(person: Person, slug: str) -> list[dict]:
    """The plugins available to a tenant: each with ``installed`` and its uninstall policy."""
    tenant = tenant_of(person, slug)
    listed = []
    for plugin in catalog.list_plugins():
        row = _available(plugin, tenant)
        if row is False:
            continue
        installed = row is True or row.installed
        policy = uninstall.DEFAULT_POLICY if row is True else row.uninstall_policy
        listed.append({"plugin": plugin, "installed": installed, "policy": policy})
    return listed


def tenant_of(person: Person, slug: str) -> Tenant:
    _require_tenant(person, slug)
    return accounts.get_tenant(slug)


def _available_plugin(plugin_id: str, tenant: Tenant) -> Plugin:
    """A plugin the operator made available to the tenant; any other is not found there."""
    plugin = catalog.get_plugin(plugin_id)
    if _available(plugin, tenant) is False:
        raise NotFound(f"No plugin {plugin_id!r} available in tenant {tenant.slug!r}.")
    return plugin


def set_installed(person: Person, plugin_id: str, slug: str, installed: bool) -> bool:
    """Install or uninstall a plugin available to the tenant; return whether anything changed.

    Uninstalling takes its menus, views and storage calls out of the tenant; its data there
    stays, under the tenant's uninstall policy, and installing brings it back.
    """
    tenant = tenant_of(person, slug)
    with write_transaction():
        plugin = _available_plugin(plugin_id, tenant)
        row, _ = Installation.get_or_create(plugin=plugin, tenant=tenant)
        if row.installed == installed:
            return False
        row.installed = installed
        row.save(only=[Installation.installed])
        action = "tenant.install_plugin" if installed else "tenant.uninstall_plugin"
        AuditEvent.create(
            actor=_actor(person), action=action, target=plugin_id, detail={"tenant": slug}
        )
    log.info("%s %s in tenant %s by %s", action, plugin_id, slug, person.email)
    return True


def set_policy(person: Person, plugin_id: str, slug: str, policy: object) -> dict:
    """Set a tenant's uninstall policy of a plugin; a tenant admin only in their tenant and
    only for a plugin available there (any other is not found)."""
    tenant = tenant_of(person, slug)
    plugin = catalog.get_plugin(plugin_id) if person.is_operator else None
    plugin = plugin or _available_plugin(plugin_id, tenant)
    return uninstall.set_policy(plugin, slug, policy, actor=_actor(person))
