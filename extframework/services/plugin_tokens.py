"""Plugin tokens (SPEC §4): issued, looked up on every storage call, rotated with an overlap.

Only hashes are stored. A plugin has one current token (no expiry) and, after a rotation, the
tokens it replaced, each live until its grace ends unless revoked at once. Storage calls are a
hot path: the lookup is cached under the registry version (one row read per request), and
``last_used_at`` is written at most once a minute per token and process, in its own short
write after the lookup, never inside a document's write.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from peewee import OperationalError

from extframework.db import database, write_transaction
from extframework.models import Plugin, PluginToken, iso_utc, utcnow
from extframework.services import registry_cache
from extframework.services.secrets import PLUGIN_TOKEN_PREFIX, hash_secret, new_secret

log = logging.getLogger(__name__)

LAST_USED_RESOLUTION = timedelta(seconds=60)
# Tokens a plugin may hold in their grace at once: rotating in a loop must not pile them up.
# The oldest beyond this are revoked; a plugin needs only the one before to recover.
MAX_TOKENS_IN_GRACE = 4

# The serving columns of catalog._SERVING_COLUMNS plus the token's own, in one indexed lookup.
_LOOKUP_SQL = (
    "SELECT p.id, p.plugin_id, p.name, p.base_url, p.state, p.restricted, t.id, t.expires_at "
    "FROM plugin_token t JOIN plugin p ON p.id = t.plugin_id "
    "WHERE t.token_hash = ? AND t.revoked_at IS NULL"
)
_recorded: dict[str, datetime] = {}  # token hash -> when this process last wrote its use


@dataclass(frozen=True, slots=True)
class ServingPlugin:
    """The serving columns of the plugin a token belongs to, as the storage API reads them.

    Immutable, so the one cached under the registry version is handed to every caller as is
    (building a Peewee ``Plugin`` per call cost 0.05 M of a create's 2.5 M instructions). It
    has the attributes of a ``Plugin`` that the storage checks read; it is not a row to save.
    """

    id: int
    plugin_id: str
    name: str
    base_url: str
    state: str
    restricted: bool


def store(plugin: Plugin, token: str, *, actor: str, now: datetime | None = None) -> None:
    """Record ``token`` as the plugin's current token (inside the caller's transaction)."""
    PluginToken.create(
        plugin=plugin, token_hash=hash_secret(token), created_by=actor, created_at=now or utcnow()
    )


def issue(plugin: Plugin, *, actor: str, now: datetime | None = None) -> str:
    """Make and store a new current token; return it (shown once)."""
    token = new_secret(PLUGIN_TOKEN_PREFIX)
    store(plugin, token, actor=actor, now=now)
    return token


def revoke_all(plugin: Plugin, *, now: datetime | None = None) -> int:
    """Revoke every live token of the plugin (deregistration, registering again)."""
    return (
        PluginToken.update(revoked_at=now or utcnow())
        .where((PluginToken.plugin == plugin) & PluginToken.revoked_at.is_null())
        .execute()
    )


def rotate(
    plugin: Plugin, *, actor: str, grace_s: float, revoke_now: bool = False
) -> tuple[str, datetime | None]:
    """Issue a new current token; the replaced ones stay live ``grace_s`` unless ``revoke_now``.

    Returns the new token and when the token it replaced stops working (None: at once). A
    token already in its grace keeps its own expiry; dead tokens are forgotten here.
    """
    with write_transaction():
        now = utcnow()
        PluginToken.delete().where(
            (PluginToken.plugin == plugin)
            & (PluginToken.revoked_at.is_null(False) | (PluginToken.expires_at <= now))
        ).execute()
        if revoke_now:
            revoke_all(plugin, now=now)
            expires = None
        else:
            expires = now + timedelta(seconds=grace_s)
            PluginToken.update(expires_at=expires).where(
                (PluginToken.plugin == plugin) & PluginToken.expires_at.is_null()
            ).execute()
            in_grace = (
                PluginToken.select(PluginToken.id)
                .where(PluginToken.plugin == plugin)
                .order_by(PluginToken.expires_at.desc(), PluginToken.id.desc())
            )
            surplus = [row.id for row in in_grace][MAX_TOKENS_IN_GRACE:]
            if surplus:
                PluginToken.update(revoked_at=now).where(PluginToken.id.in_(surplus)).execute()
        token = issue(plugin, actor=actor, now=now)
    return token, expires


def serving_plugin(token_hash: str) -> ServingPlugin | None:
    """Return the plugin holding this live token, read cheaply (as catalog.serving_plugin).

    The lookup is cached while the registry version holds (``registry_cache``: a trigger on
    ``plugin_token`` bumps it when a token is issued, rotated or revoked, and one on ``plugin``
    when its serving columns change); the expiry is compared at each call. Records the token's
    use when this process has not for a minute.
    """
    now = utcnow()
    found = registry_cache.cached(("plugin-token", token_hash), lambda: _lookup(token_hash))
    if found is None:
        return None
    plugin, token_id, expires_at = found
    if expires_at is not None and expires_at <= now:
        return None
    last = _recorded.get(token_hash)
    if last is None or last < now - LAST_USED_RESOLUTION:
        if len(_recorded) >= 4096:
            _recorded.clear()
        _recorded[token_hash] = now
        _record_use(token_id, now)
    return plugin


def _lookup(token_hash: str) -> tuple | None:
    row = database.execute_sql(_LOOKUP_SQL, (token_hash,)).fetchone()
    if row is None:
        return None
    plugin = ServingPlugin(row[0], row[1], row[2], row[3], row[4], bool(row[5]))
    return plugin, row[6], PluginToken.expires_at.python_value(row[7])


def _record_use(token_id: int, now: datetime) -> None:
    """Write a token's last use; a busy database skips it rather than fail the caller's call."""
    try:
        with write_transaction():
            PluginToken.update(last_used_at=now).where(
                (PluginToken.id == token_id)
                & (
                    PluginToken.last_used_at.is_null()
                    | (PluginToken.last_used_at < now - LAST_USED_RESOLUTION)
                )
            ).execute()
    except OperationalError as exc:
        log.warning("could not record the use of plugin token %d: %s", token_id, exc)


def fingerprint(token_hash: str) -> str:
    """A short, non-secret name for a token: the start of its hash (the plugin can compute it)."""
    return token_hash[:12]


def live_tokens(plugin: Plugin) -> list[dict]:
    """The plugin's tokens that still work, current first, as the console and API show them."""
    now = utcnow()
    rows = (
        PluginToken.select()
        .where(
            (PluginToken.plugin == plugin)
            & PluginToken.revoked_at.is_null()
            & (PluginToken.expires_at.is_null() | (PluginToken.expires_at > now))
        )
        .order_by(PluginToken.expires_at.is_null(False), PluginToken.id.desc())
    )
    return [
        {
            "fingerprint": fingerprint(row.token_hash),
            "current": row.expires_at is None,
            "created_at": iso_utc(row.created_at),
            "created_by": row.created_by,
            "expires_at": iso_utc(row.expires_at),
            "last_used_at": iso_utc(row.last_used_at),
        }
        for row in rows
    ]
