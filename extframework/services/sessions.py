"""Ending sessions and changing passwords (SPEC §4: "Sessions end when they should").

Every session cookie and user JWT carries the user's session generation from when it was
issued; ``accounts.active_user`` accepts it only while it is still the user's. Logging out, a
password change or reset, a role change and deactivation bump it, which ends them all.
"""

import logging

from extframework.db import write_transaction
from extframework.errors import Conflict, Invalid, NotFound, Unauthorized, field_error
from extframework.models import User
from extframework.services import accounts, audit

log = logging.getLogger(__name__)


def current_generation(user_id: int) -> int:
    """Return the generation a new session or user JWT of this user is issued at."""
    row = User.select(User.session_generation).where(User.id == user_id).first()
    if row is None:
        raise NotFound(f"No user with id {user_id}.")
    return row.session_generation


def log_out(user_id: int) -> None:
    """End every session and user JWT of this person, in every browser (docs/identity.md)."""
    with write_transaction():
        user = accounts.get_user(user_id)
        accounts.end_sessions(user.id)
        actor = accounts.user_actor(user.email)
        audit.record(actor, "auth.logout", actor)
    log.info("logout: user %s; their sessions and user JWTs ended", user_id)


def end_other_sessions(user_id: int) -> int:
    """End every session and user JWT of this person; return the generation to go on at.

    The caller logs its own session in again at the returned generation (as after a password
    change), so only the others end.
    """
    with write_transaction():
        user = accounts.get_user(user_id)
        accounts.end_sessions(user.id)
        actor = accounts.user_actor(user.email)
        audit.record(actor, "auth.logout_others", actor)
        generation = current_generation(user.id)
    log.info("user %s signed out of their other sessions", user_id)
    return generation


def _checked_new_password(
    password: str, confirmation: str | None = None, *, field: str = "new_password"
) -> str:
    """Return the password hash, or refuse a password ``users create`` would refuse."""
    errors = []
    if len(password) < accounts.MIN_PASSWORD_LENGTH:
        errors.append(
            field_error([field], "minLength", f"at least {accounts.MIN_PASSWORD_LENGTH} characters")
        )
    if confirmation is not None and confirmation != password:
        errors.append(
            field_error(["confirm_password"], "const", "type the same new password twice")
        )
    if errors:
        raise Invalid("The new password cannot be used.", errors=errors)
    return accounts.hash_password(password)  # before the transaction: scrypt costs ~0.1 s


def _store_password(user_id: int, password_hash: str) -> None:
    User.update(password_hash=password_hash, session_generation=User.session_generation + 1).where(
        User.id == user_id
    ).execute()


def set_password(user_id: int, password: str, *, actor: str) -> User:
    """Set a user's password for them (an operator's reset) and end their sessions.

    An operator resets someone else's password: their own goes through ``change_password``,
    which asks for the current one, so a borrowed console session cannot take the account.
    """
    password_hash = _checked_new_password(password, field="password")
    with write_transaction():
        user = accounts.get_user(user_id)
        if actor == accounts.user_actor(user.email):
            raise Conflict(
                "Change your own password on the Change password page; it asks for the current one."
            )
        _store_password(user.id, password_hash)
        audit.record(actor, "user.set_password", f"user:{user.email}")
    log.info("password set for user %s by %s; their sessions ended", user.id, actor)
    return user


def set_password_by_email(email: str, password: str, *, actor: str) -> User:
    """Set the password of the user with this email (the CLI's reset)."""
    user = User.get_or_none(User.email == email.strip().lower())
    if user is None:
        raise NotFound(f"No user with email {email.strip().lower()!r}.")
    return set_password(user.id, password, actor=actor)


def change_password(
    user_id: int,
    current: str,
    new: str,
    confirmation: str,
    *,
    client: str,
    limits: accounts.LoginLimits,
) -> int:
    """Change a person's own password; end their sessions; return the new generation.

    The current password is checked like a login, under the same throttle, so a borrowed
    session cannot guess it faster than a login could. The caller logs its own session in
    again at the returned generation; every other session and user JWT has ended.
    """
    password_hash = _checked_new_password(new, confirmation)
    if new == current:
        raise Invalid(
            "The new password is the same as the current one.",
            errors=[field_error(["new_password"], "different", "choose a different password")],
        )
    user = accounts.get_user(user_id)
    try:
        accounts.authenticate(user.email, current, client, limits=limits, via="password_change")
    except Unauthorized:
        raise Invalid(
            "The current password is not correct.",
            errors=[field_error(["current_password"], "password", "not your current password")],
        ) from None
    with write_transaction():
        _store_password(user.id, password_hash)
        actor = accounts.user_actor(user.email)
        audit.record(actor, "user.change_password", actor)
        generation = current_generation(user.id)
    log.info("password changed by user %s; their other sessions ended", user.id)
    return generation
