"""Tenants, users, passwords and login throttling."""

import logging
import re
from datetime import timedelta

from peewee import JOIN, IntegrityError, fn
from werkzeug.security import check_password_hash, generate_password_hash

from extframework.db import database
from extframework.errors import Conflict, Invalid, NotFound, TooManyRequests, Unauthorized
from extframework.models import ROLES, AuditEvent, LoginThrottle, Tenant, User, utcnow

log = logging.getLogger(__name__)

DEFAULT_TENANT = "default"
TENANT_SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
MIN_PASSWORD_LENGTH = 8
MAX_NAME_LENGTH = 200
# Who changed an account when no person or CLI is named (test fixtures, internal callers).
SYSTEM_ACTOR = "system"
# Checked against when the email is unknown, so both paths cost one KDF run.
_DUMMY_HASH = generate_password_hash("not-a-real-password")

BAD_CREDENTIALS = "The email or password is not correct."


def role_rank(role: str) -> int:
    return ROLES.index(role)


def ensure_default_tenant() -> Tenant:
    tenant, _ = Tenant.get_or_create(slug=DEFAULT_TENANT, defaults={"name": "Default"})
    return tenant


def user_actor(email: str) -> str:
    """Name a person as the actor of an audited change."""
    return f"user:{email}"


def create_tenant(slug: str, name: str | None = None, *, actor: str = SYSTEM_ACTOR) -> Tenant:
    if not TENANT_SLUG.match(slug) or len(slug) > 64:
        raise Invalid(
            "A tenant slug is lowercase words joined by single hyphens.",
            errors=[{"field": "slug", "message": f"{slug!r} does not match {TENANT_SLUG.pattern}"}],
        )
    name = (name or "").strip()
    if len(name) > MAX_NAME_LENGTH:
        raise Invalid(
            "The tenant's name is too long.",
            errors=[{"field": "name", "message": f"at most {MAX_NAME_LENGTH} characters"}],
        )
    try:
        with database.atomic():
            tenant = Tenant.create(slug=slug, name=name or slug)
            AuditEvent.create(
                actor=actor,
                action="tenant.create",
                target=f"tenant:{slug}",
                detail={"name": tenant.name},
            )
    except IntegrityError:
        raise Conflict(f"Tenant {slug!r} exists already.") from None
    log.info("tenant created: %s", slug)
    return tenant


def get_tenant(slug: str) -> Tenant:
    tenant = Tenant.get_or_none(Tenant.slug == slug)
    if tenant is None:
        raise NotFound(f"No tenant {slug!r}.")
    return tenant


def list_tenants() -> list[Tenant]:
    """Return every tenant by slug, each with ``user_count`` (active or not)."""
    return list(
        Tenant.select(Tenant, fn.COUNT(User.id).alias("user_count"))
        .join(User, JOIN.LEFT_OUTER)
        .group_by(Tenant.id)
        .order_by(Tenant.slug)
    )


def create_user(
    email: str,
    password: str,
    *,
    role: str = "member",
    operator: bool = False,
    tenant: str = DEFAULT_TENANT,
    name: str = "",
    actor: str = SYSTEM_ACTOR,
) -> User:
    email = email.strip().lower()
    name = name.strip()
    errors = []
    if not EMAIL.match(email):
        errors.append({"field": "email", "message": "an email address needs one @"})
    if len(password) < MIN_PASSWORD_LENGTH:
        errors.append(
            {"field": "password", "message": f"at least {MIN_PASSWORD_LENGTH} characters"}
        )
    if role not in ROLES:
        errors.append({"field": "role", "message": f"one of {', '.join(ROLES)}"})
    if len(name) > MAX_NAME_LENGTH:
        errors.append({"field": "name", "message": f"at most {MAX_NAME_LENGTH} characters"})
    if errors:
        raise Invalid("The user cannot be created.", errors=errors)
    tenant_row = get_tenant(tenant)
    try:
        with database.atomic():
            user = User.create(
                email=email,
                name=name,
                password_hash=generate_password_hash(password),
                role=role,
                is_operator=operator,
                tenant=tenant_row,
            )
            detail = {"role": role, "operator": operator, "tenant": tenant, "name": name}
            AuditEvent.create(
                actor=actor, action="user.create", target=f"user:{email}", detail=detail
            )
    except IntegrityError:
        raise Conflict(f"A user with email {email!r} exists already.") from None
    log.info("user created: id=%s role=%s operator=%s tenant=%s", user.id, role, operator, tenant)
    return user


def list_users() -> list[User]:
    """Return every user by email, with their tenant loaded."""
    return list(User.select(User, Tenant).join(Tenant).order_by(User.email))


def get_user(user_id: int) -> User:
    user = User.select(User, Tenant).join(Tenant).where(User.id == user_id).first()
    if user is None:
        raise NotFound(f"No user with id {user_id}.")
    return user


def set_role(user_id: int, role: str, *, operator: bool | None = None, actor: str) -> User:
    """Change a user's role (and operator flag when given); refuse to drop the actor's own flag.

    An operator who could remove their own flag could leave the installation with no one able
    to open the console, so that change must come from another operator.
    """
    if role not in ROLES:
        raise Invalid(
            f"Unknown role {role!r}.",
            errors=[{"field": "role", "message": f"one of {', '.join(ROLES)}"}],
        )
    with database.atomic():
        user = get_user(user_id)
        operator = user.is_operator if operator is None else operator
        if user.is_operator and not operator and actor == user_actor(user.email):
            raise Conflict("You cannot remove your own operator flag; ask another operator.")
        if (user.role, user.is_operator) == (role, operator):
            return user
        detail = {"role": [user.role, role], "operator": [user.is_operator, operator]}
        user.role, user.is_operator = role, operator
        user.save()
        AuditEvent.create(
            actor=actor, action="user.set_role", target=f"user:{user.email}", detail=detail
        )
    log.info("user %s: role=%s operator=%s", user.id, role, operator)
    return user


def set_active(user_id: int, active: bool, *, actor: str) -> User:
    """Deactivate or reactivate a user; an inactive user cannot log in and their sessions end."""
    with database.atomic():
        user = get_user(user_id)
        if not active and actor == user_actor(user.email):
            raise Conflict("You cannot deactivate your own account; ask another operator.")
        if user.is_active == active:
            return user
        user.is_active = active
        user.save()
        action = "user.reactivate" if active else "user.deactivate"
        AuditEvent.create(actor=actor, action=action, target=f"user:{user.email}")
    log.info("user %s: active=%s", user.id, active)
    return user


# Runs on every request (session or user JWT): one plain statement, no query building.
_ACTIVE_USER_SQL = (
    'SELECT u.id, u.email, u.name, u.role, t.slug, u.is_operator FROM "user" u '
    "JOIN tenant t ON t.id = u.tenant_id WHERE u.id = ? AND u.is_active"
)


def active_user(user_id: int) -> tuple[int, str, str, str, str, bool] | None:
    """Return (id, email, name, role, tenant slug, is_operator) of an active user, or None."""
    row = database.execute_sql(_ACTIVE_USER_SQL, (user_id,)).fetchone()
    return (*row[:5], bool(row[5])) if row else None


def has_users() -> bool:
    return User.select().exists()


def authenticate(
    email: str, password: str, client: str, *, max_failures: int, window_s: int
) -> User:
    """Return the user whose credentials these are, or raise without saying which part was wrong.

    Failures are counted per email and per client address; past ``max_failures`` within
    ``window_s`` seconds every attempt is refused with 429 until the window passes.
    """
    email = (email or "").strip().lower()
    keys = [f"email:{email}", f"client:{client}"]
    window = timedelta(seconds=window_s)
    now = utcnow()
    for row in LoginThrottle.select().where(LoginThrottle.key.in_(keys)):
        if row.failures >= max_failures and now - row.window_start < window:
            retry = int((row.window_start + window - now).total_seconds()) + 1
            log.warning("login throttled for %s", row.key.split(":")[0])
            raise TooManyRequests(
                f"Too many failed logins; try again in {retry} seconds.",
                headers={"Retry-After": str(retry)},
            )
    user = User.get_or_none((User.email == email) & (User.is_active == True))  # noqa: E712
    if user is None or not check_password_hash(user.password_hash, password or ""):
        if user is None:
            check_password_hash(_DUMMY_HASH, password or "")
        _record_failure(keys, now, window)
        raise Unauthorized(BAD_CREDENTIALS)
    LoginThrottle.delete().where(LoginThrottle.key == keys[0]).execute()
    return user


def _record_failure(keys: list[str], now, window: timedelta) -> None:
    with database.atomic():
        for key in keys:
            row, created = LoginThrottle.get_or_create(key=key, defaults={"window_start": now})
            if not created and now - row.window_start >= window:
                row.failures, row.window_start = 0, now
            row.failures += 1
            row.save()
