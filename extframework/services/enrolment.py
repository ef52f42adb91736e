"""Enrolment keys: what an operator hands a plugin so it may register itself (SPEC §3).

A key may be created for one ``plugin_id``: it registers only that id, and it is what
registering a deregistered plugin_id that still holds data again needs (docs/registry.md).
"""

import logging
import re
from datetime import datetime, timedelta

from extframework.db import write_transaction
from extframework.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    field_error,
)
from extframework.models import Archive, AuditEvent, EnrolmentKey, Plugin, iso_utc, utcnow
from extframework.services import uninstall
from extframework.services.manifest import PLUGIN_ID
from extframework.services.secrets import ENROLMENT_KEY_PREFIX, hash_secret, new_secret

log = logging.getLogger(__name__)

DURATION = re.compile(r"(\d+)([smhdw])")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_LABEL = 200


def parse_duration(text: str) -> timedelta:
    """Parse ``90s``, ``30m``, ``1h``, ``2d``, ``1w`` or combinations like ``1h30m``."""
    compact = text.strip().lower().replace(" ", "")
    parts = DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise BadRequest(
            f"{text!r} is not a duration; use a number and a unit s, m, h, d or w, like 1h or 2d.",
            errors=[field_error(["expires"], "format", "a duration like 30m, 1h, 2d")],
            kind="invalid-body",
        )
    seconds = sum(int(n) * UNIT_SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise BadRequest(
            "An enrolment key must live longer than 0 seconds.",
            errors=[field_error(["expires"], "exclusiveMinimum", "longer than 0 seconds")],
            kind="invalid-body",
        )
    return timedelta(seconds=seconds)


def create_key(
    *,
    actor: str,
    uses: int | None = None,
    expires_in: timedelta | None = None,
    label: str = "",
    plugin_id: str | None = None,
) -> tuple[EnrolmentKey, str]:
    """Create an enrolment key; return the row and the key itself, which is never stored.

    With ``plugin_id`` the key registers that plugin_id only.
    """
    if uses is not None and uses < 1:
        raise BadRequest(
            "An enrolment key needs at least one use (leave it empty for unlimited).",
            errors=[field_error(["uses"], "minimum", "at least 1")],
            kind="invalid-body",
        )
    plugin_id = (plugin_id or "").strip() or None
    if plugin_id is not None and (len(plugin_id) > 64 or not PLUGIN_ID.fullmatch(plugin_id)):
        raise BadRequest(
            f"{plugin_id!r} is not a plugin_id; a key for one plugin names it as its manifest "
            "does: lowercase words joined by single hyphens, like acme-billing (at most 64).",
            errors=[field_error(["plugin_id"], "pattern", "lowercase words joined by hyphens")],
            kind="invalid-body",
        )
    secret = new_secret(ENROLMENT_KEY_PREFIX)
    with write_transaction():
        key = EnrolmentKey.create(
            key_hash=hash_secret(secret),
            label=label.strip()[:MAX_LABEL],
            uses_left=uses,
            expires_at=utcnow() + expires_in if expires_in else None,
            created_by=actor,
            plugin_id=plugin_id,
        )
        AuditEvent.create(
            actor=actor,
            action="enrolment_key.create",
            target=str(key.id),
            detail={
                "uses": uses,
                "expires_at": iso_utc(key.expires_at),
                "label": key.label,
                "plugin_id": plugin_id,
            },
        )
    log.info("enrolment key %s created by %s", key.id, actor)
    return key, secret


def list_keys() -> list[EnrolmentKey]:
    return list(EnrolmentKey.select().order_by(EnrolmentKey.created_at.desc(), EnrolmentKey.id))


def revoke_key(key_id: int, *, actor: str) -> EnrolmentKey:
    """Stop a key from enrolling anything more; plugins it enrolled are unaffected."""
    with write_transaction():
        key = EnrolmentKey.get_or_none(EnrolmentKey.id == key_id)
        if key is None:
            raise NotFound(f"No enrolment key {key_id}.")
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            key.save()
            AuditEvent.create(actor=actor, action="enrolment_key.revoke", target=str(key.id))
            log.info("enrolment key %s revoked by %s", key.id, actor)
    return key


def status(key: EnrolmentKey, now: datetime | None = None) -> str:
    """Say whether a key still works: usable, revoked, expired or used up."""
    now = now or utcnow()
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    if key.uses_left is not None and key.uses_left <= 0:
        return "used up"
    return "usable"


def check_key(secret: str | None) -> EnrolmentKey:
    """Return the usable key behind ``secret`` or raise 401 saying why it cannot enrol."""
    if not secret:
        raise Unauthorized(
            "Registering a plugin needs an enrolment key: 'Authorization: Bearer efek_...'."
        )
    if not secret.startswith(ENROLMENT_KEY_PREFIX):
        raise Unauthorized("This endpoint takes an enrolment key (efek_...), not another token.")
    key = EnrolmentKey.get_or_none(EnrolmentKey.key_hash == hash_secret(secret))
    if key is None:
        raise Unauthorized("The enrolment key is not known.")
    state = status(key)
    if state != "usable":
        raise Unauthorized(f"The enrolment key is {state}; ask an operator for a new one.")
    return key


def check_scope(key: EnrolmentKey, plugin_id: str) -> None:
    """Refuse (403) a key created for one plugin_id when it registers another."""
    if key.plugin_id is not None and key.plugin_id != plugin_id:
        raise Forbidden(
            f"This enrolment key was created for the plugin_id {key.plugin_id!r} only and "
            f"cannot register {plugin_id!r}; ask an operator for a key for {plugin_id!r} or "
            "one for any plugin.",
            plugin_id=plugin_id,
            key_plugin_id=key.plugin_id,
        )


def is_for(key: EnrolmentKey | None, plugin_id: str) -> bool:
    """Say whether ``key`` was created for exactly this plugin_id."""
    return key is not None and key.plugin_id == plugin_id


def check_may_reattach(enrolment_key: EnrolmentKey | None, previous: Plugin) -> None:
    """Refuse to re-attach a deregistered plugin's data to a key not made for its plugin_id.

    Live documents and archives (restorable) both count. Without a key the caller is an
    operator (the CLI), whose word is enough.
    """
    plugin_id = previous.plugin_id
    if enrolment_key is None or is_for(enrolment_key, plugin_id):
        return
    held = {e["tenant"]: e["documents"] for e in uninstall.policies(previous) if e["documents"]}
    archived = Archive.select().where(Archive.plugin_id == plugin_id).count()
    if not held and not archived:
        return
    parts = []
    if held:
        parts.append(f"{sum(held.values())} document(s) in tenant(s) {', '.join(sorted(held))}")
    if archived:
        parts.append(f"{archived} archive(s)")
    log.info("re-registration of %s refused: data retained, key not for it", plugin_id)
    raise Conflict(
        f"Plugin {plugin_id!r} was deregistered and the core still holds its data "
        f"({' and '.join(parts)}); registering it again would hand that data to this key's "
        "holder, so it needs an enrolment key created for this plugin_id. An operator runs "
        f"`flask --app app enrolment-keys create --plugin {plugin_id}` (or names the plugin "
        "in the console's enrolment-key form), or registers the manifest with "
        "`flask --app app plugins register`.",
        plugin_id=plugin_id,
        retained_documents=held,
        archives=archived,
        kind="data-retained",
    )


def spend_key(key: EnrolmentKey) -> None:
    """Use up one registration of a key, inside the registration's transaction.

    The update re-checks every condition, so a key with one use left enrols one plugin even
    when two register at once.
    """
    now = utcnow()
    spent = (
        EnrolmentKey.update(
            uses_left=EnrolmentKey.uses_left - 1,
        )
        .where(
            (EnrolmentKey.id == key.id)
            & EnrolmentKey.revoked_at.is_null()
            & (EnrolmentKey.expires_at.is_null() | (EnrolmentKey.expires_at > now))
            & (EnrolmentKey.uses_left.is_null() | (EnrolmentKey.uses_left > 0))
        )
        .execute()
    )
    if spent != 1:
        raise Unauthorized("The enrolment key was used up, revoked or expired meanwhile.")


def key_summary(key: EnrolmentKey) -> dict:
    return {
        "id": key.id,
        "label": key.label,
        "plugin_id": key.plugin_id,
        "status": status(key),
        "uses_left": key.uses_left,
        "expires_at": iso_utc(key.expires_at),
        "revoked_at": iso_utc(key.revoked_at),
        "created_by": key.created_by,
        "created_at": iso_utc(key.created_at),
    }
