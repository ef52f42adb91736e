"""Tenants, users, passwords and login throttling."""

import functools
import hashlib
import ipaddress
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from peewee import JOIN, Case, IntegrityError, fn
from werkzeug.security import check_password_hash, generate_password_hash

from extframework.db import database, write_transaction
from extframework.errors import (
    Conflict,
    Invalid,
    NotFound,
    TooManyRequests,
    Unauthorized,
    field_error,
)
from extframework.models import ROLES, AuditEvent, LoginThrottle, Tenant, User, utcnow
from extframework.services import audit

log = logging.getLogger(__name__)

DEFAULT_TENANT = "default"
TENANT_SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
MIN_PASSWORD_LENGTH = 8
MAX_NAME_LENGTH = 200
# Who changed an account when no person or CLI is named (test fixtures, internal callers).
SYSTEM_ACTOR = "system"
# werkzeug's default (scrypt); the test suite picks a one-round hash (tests/conftest.py).
PASSWORD_HASH_METHOD = "scrypt"

BAD_CREDENTIALS = "The email or password is not correct."
# A failed login's audit event keeps the email as typed, cut to this many characters.
AUDIT_EMAIL_CHARS = 100
# How a successful password check is audited: a login through the form or the token endpoint;
# re-entering the current password (changing it) is audited by the change itself.
LOGIN_VIAS = ("session", "token")


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=PASSWORD_HASH_METHOD)


@functools.cache
def _dummy_hash(method: str) -> str:
    """Checked against when the email is unknown, so both paths cost one KDF run."""
    return generate_password_hash("not-a-real-password", method=method)


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
            errors=[
                field_error(["slug"], "pattern", f"{slug!r} does not match {TENANT_SLUG.pattern}")
            ],
        )
    name = (name or "").strip()
    if len(name) > MAX_NAME_LENGTH:
        raise Invalid(
            "The tenant's name is too long.",
            errors=[field_error(["name"], "maxLength", f"at most {MAX_NAME_LENGTH} characters")],
        )
    try:
        with write_transaction():
            tenant = Tenant.create(slug=slug, name=name or slug)
            AuditEvent.create(
                actor=actor,
                action="tenant.create",
                target=f"tenant:{slug}",
                detail={"name": tenant.name},
            )
    except IntegrityError:
        raise Conflict(f"Tenant {slug!r} exists already.", kind="already-exists") from None
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
        errors.append(field_error(["email"], "format", "an email address needs one @"))
    if len(password) < MIN_PASSWORD_LENGTH:
        errors.append(
            field_error(["password"], "minLength", f"at least {MIN_PASSWORD_LENGTH} characters")
        )
    if role not in ROLES:
        errors.append(field_error(["role"], "enum", f"one of {', '.join(ROLES)}"))
    if len(name) > MAX_NAME_LENGTH:
        errors.append(field_error(["name"], "maxLength", f"at most {MAX_NAME_LENGTH} characters"))
    if errors:
        raise Invalid("The user cannot be created.", errors=errors)
    tenant_row = get_tenant(tenant)
    try:
        with write_transaction():
            user = User.create(
                email=email,
                name=name,
                password_hash=hash_password(password),
                role=role,
                is_operator=operator,
                tenant=tenant_row,
            )
            detail = {"role": role, "operator": operator, "tenant": tenant, "name": name}
            AuditEvent.create(
                actor=actor, action="user.create", target=f"user:{email}", detail=detail
            )
    except IntegrityError:
        raise Conflict(
            f"A user with email {email!r} exists already.", kind="already-exists"
        ) from None
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


def get_user_by_email(email: str) -> User:
    user = User.get_or_none(User.email == email.strip().lower())
    if user is None:
        raise NotFound(f"No user with email {email.strip().lower()!r}.")
    return get_user(user.id)


def set_role(user_id: int, role: str, *, operator: bool | None = None, actor: str) -> User:
    """Change a user's role (and operator flag when given); refuse to drop the actor's own flag.

    An operator who could remove their own flag could leave the installation with no one able
    to open the console, so that change must come from another operator.
    """
    if role not in ROLES:
        raise Invalid(
            f"Unknown role {role!r}.",
            errors=[field_error(["role"], "enum", f"one of {', '.join(ROLES)}")],
        )
    with write_transaction():
        user = get_user(user_id)
        operator = user.is_operator if operator is None else operator
        if user.is_operator and not operator and actor == user_actor(user.email):
            raise Conflict("You cannot remove your own operator flag; ask another operator.")
        if (user.role, user.is_operator) == (role, operator):
            return user
        detail = {"role": [user.role, role], "operator": [user.is_operator, operator]}
        user.role, user.is_operator = role, operator
        user.save(only=[User.role, User.is_operator])
        end_sessions(user.id)  # SPEC §4: a role change ends the person's sessions
        AuditEvent.create(
            actor=actor, action="user.set_role", target=f"user:{user.email}", detail=detail
        )
    log.info("user %s: role=%s operator=%s", user.id, role, operator)
    return user


def set_active(user_id: int, active: bool, *, actor: str) -> User:
    """Deactivate or reactivate a user; deactivation ends their sessions and user JWTs for good."""
    with write_transaction():
        user = get_user(user_id)
        if not active and actor == user_actor(user.email):
            raise Conflict("You cannot deactivate your own account; ask another operator.")
        if user.is_active == active:
            return user
        user.is_active = active
        user.save(only=[User.is_active])
        if not active:
            end_sessions(user.id)  # so that reactivating does not revive them
        action = "user.reactivate" if active else "user.deactivate"
        AuditEvent.create(actor=actor, action=action, target=f"user:{user.email}")
    log.info("user %s: active=%s", user.id, active)
    return user


def end_sessions(user_id: int) -> None:
    """End every session and user JWT of a user: bump their session generation.

    One ``UPDATE`` adding 1, never a read then a write, so two bumps at once both count.
    """
    User.update(session_generation=User.session_generation + 1).where(User.id == user_id).execute()


# Runs on every request (session or user JWT): one plain statement by primary key, no query
# building. A session or user JWT carries the generation it was issued at (SPEC §4).
_ACTIVE_USER_SQL = (
    'SELECT u.id, u.email, u.name, u.role, t.slug, u.is_operator FROM "user" u '
    "JOIN tenant t ON t.id = u.tenant_id "
    "WHERE u.id = ? AND u.is_active AND u.session_generation = ?"
)


def active_user(user_id: int, generation: int) -> tuple[int, str, str, str, str, bool] | None:
    """Return (id, email, name, role, tenant slug, is_operator) of an active user, or None.

    None also when ``generation`` is not the user's: the session or token asking has ended.
    """
    row = database.execute_sql(_ACTIVE_USER_SQL, (user_id, generation)).fetchone()
    return (*row[:5], bool(row[5])) if row else None


def has_users() -> bool:
    return User.select().exists()


@dataclass(frozen=True)
class LoginLimits:
    """The throttle's settings (README, configuration; docs/identity.md, "Throttling")."""

    max_failures: int = 10  # per (account, address)
    account_max_failures: int = 30  # per account, all addresses together
    window_s: int = 300
    known_address_days: int = 30
    address_slow_after: int = 30  # per address, all accounts together
    address_delay_s: float = 1.0


# One slowed answer at a time per process: the delay holds a worker thread, and an attacker
# must not be able to hold them all. Another slowed answer is refused at once instead.
_slowed = threading.BoundedSemaphore(1)
_sleep = time.sleep
# An email longer than this is no one's; its key is hashed so the table's keys stay short.
_MAX_KEY_EMAIL = 200


def authenticate(
    email: str, password: str, client: str, *, limits: LoginLimits, via: str = "session"
) -> User:
    """Return the user whose credentials these are, or raise without saying which part was wrong.

    Failures are counted per (account, address), per account and per address; an unknown
    email counts as an account. A correct password is refused only for failures on its own
    account: past ``max_failures`` from its address, or past ``account_max_failures`` from
    everywhere unless it logged in from this address lately. An address's failures across
    accounts only slow its own failed attempts down.

    A success ``via`` a login (``LOGIN_VIAS``) is audited as ``auth.login``; a failure on an
    existing account as ``auth.login_failed`` (``_record_failure`` says how few).
    """
    typed = email or ""
    email = typed.strip().lower()
    keys = _throttle_keys(email, client_address(client))
    now = utcnow()
    window = timedelta(seconds=limits.window_s)
    rows = {
        row.key: row
        for row in LoginThrottle.select().where(LoginThrottle.key.in_(list(keys.values())))
    }

    def live_failures(kind: str) -> int:
        row = rows.get(keys[kind])
        return row.failures if row and now - row.window_start < window else 0

    def retry_after(kind: str) -> str:
        left = rows[keys[kind]].window_start + window - now
        return str(max(1, math.ceil(left.total_seconds())))

    if live_failures("pair") >= limits.max_failures:
        log.warning("login refused: too many failures for one account from one address")
        raise TooManyRequests(
            f"Too many failed logins; try again in {retry_after('pair')} seconds.",
            headers={"Retry-After": retry_after("pair")},
        )
    if live_failures("account") >= limits.account_max_failures and not _known(
        rows.get(keys["known"]), now, limits
    ):
        log.warning("login refused: too many failures for one account from many addresses")
        seconds = retry_after("account")
        raise TooManyRequests(
            f"Too many failed logins on this account from different addresses; try again in "
            f"{seconds} seconds, or from an address this account has logged in from before.",
            headers={"Retry-After": seconds},
        )
    account = User.get_or_none(User.email == email)
    user = account if account is not None and account.is_active else None
    if user is None or not check_password_hash(user.password_hash, password or ""):
        if user is None:
            check_password_hash(_dummy_hash(PASSWORD_HASH_METHOD), password or "")
        event = None
        if account is not None:
            detail = {"email": typed[:AUDIT_EMAIL_CHARS], "address": client[:64], "via": via}
            event = (f"user:{account.email}", detail)
        address_failures = _record_failure(keys, now, limits, event)
        if address_failures > limits.address_slow_after:
            _slow_down(limits.address_delay_s)
        raise Unauthorized(BAD_CREDENTIALS)
    with write_transaction():
        LoginThrottle.delete().where(LoginThrottle.key == keys["pair"]).execute()
        _upsert(keys["known"], now, reset_before=now, failures=0)
        if via in LOGIN_VIAS:
            actor = user_actor(user.email)
            audit.record(actor, "auth.login", actor, {"via": via, "address": client[:64]})
    return user


def client_address(client: str) -> str:
    """Name the network a login comes from: an IPv4 address, or an IPv6 /64 (one subscriber)."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client[:64]
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _throttle_keys(email: str, address: str) -> dict[str, str]:
    if len(email) > _MAX_KEY_EMAIL:
        email = "sha256:" + hashlib.sha256(email.encode()).hexdigest()
    return {
        "pair": f"pair:{address}|{email}",
        "account": f"account:{email}",
        "address": f"address:{address}",
        "known": f"known:{address}|{email}",
    }


def _known(row: LoginThrottle | None, now: datetime, limits: LoginLimits) -> bool:
    """Has this account logged in from this address within ``known_address_days``?"""
    return row is not None and now - row.window_start < timedelta(days=limits.known_address_days)


def _record_failure(
    keys: dict[str, str], now: datetime, limits: LoginLimits, event: tuple[str, dict] | None
) -> int:
    """Count one failure for the pair, the account and the address; return the address's count.

    ``event`` (target, detail) is audited as ``auth.login_failed`` while the account has at
    most ``max_failures`` failures in its window: an unknown email writes nothing, so failed
    logins cannot grow the audit table faster than ``max_failures`` per account per window.
    """
    window_began = now - timedelta(seconds=limits.window_s)
    with write_transaction():
        for kind in ("pair", "account", "address"):
            _upsert(keys[kind], now, reset_before=window_began, failures=1)
        if event is not None:
            account = LoginThrottle.get(LoginThrottle.key == keys["account"])
            if account.failures <= limits.max_failures:
                audit.record("anonymous", "auth.login_failed", *event)
        # Keys are cheap to make (any email will do): drop the ones that no longer count.
        known = LoginThrottle.key.startswith("known:")
        LoginThrottle.delete().where(
            ((LoginThrottle.window_start <= window_began) & ~known)
            | (
                known
                & (LoginThrottle.window_start <= now - timedelta(days=limits.known_address_days))
            )
        ).execute()
        return LoginThrottle.get(LoginThrottle.key == keys["address"]).failures


def _upsert(key: str, now: datetime, *, reset_before: datetime, failures: int) -> None:
    """Add ``failures`` to a key's count, or start it afresh if its window began before then."""
    stale = LoginThrottle.window_start <= reset_before
    LoginThrottle.insert(key=key, failures=failures, window_start=now).on_conflict(
        conflict_target=[LoginThrottle.key],
        update={
            LoginThrottle.failures: Case(
                None, [(stale, failures)], LoginThrottle.failures + failures
            ),
            LoginThrottle.window_start: Case(None, [(stale, now)], LoginThrottle.window_start),
        },
    ).execute()


def _slow_down(delay_s: float) -> None:
    """Answer a failed attempt from a busy address late, or at once with 429 if one waits."""
    retry = str(max(1, math.ceil(delay_s)))
    detail = (
        f"{BAD_CREDENTIALS} Many logins have failed from your address; "
        f"wait {retry} second{'' if retry == '1' else 's'} before the next try."
    )
    if delay_s > 0 and _slowed.acquire(blocking=False):
        try:
            _sleep(delay_s)
        finally:
            _slowed.release()
    log.warning("login slowed: many failures from one address")
    raise TooManyRequests(detail, headers={"Retry-After": retry})
