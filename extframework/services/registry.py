"""The package manager (SPEC §3): register plugins and update them; each gets its token here.

Registration runs SPEC §3's steps in order: validate, probe, then store the plugin, its
routes, collections, validators and indexes and mint its token in one transaction, so a
failure at any step leaves nothing behind. Operator actions (disable, enable, remove, token
rotation, tenants) are in ``plugin_admin``.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import semver
from flask import Flask
from peewee import IntegrityError

from extframework import dialect
from extframework.db import database, write_transaction
from extframework.errors import BadGateway, BadRequest, Conflict, field_error
from extframework.models import (
    AuditEvent,
    Collection,
    Document,
    EnrolmentKey,
    ManifestVersion,
    Plugin,
    utcnow,
)
from extframework.services import (
    enrolment,
    health,
    indexes,
    lifecycle,
    migrations,
    pending_updates,
    plugin_tokens,
    schema_diff,
)
from extframework.services import manifest_records as records
from extframework.services.manifest import base_url as manifest_base_url
from extframework.services.manifest import validate_manifest
from extframework.services.secrets import PLUGIN_TOKEN_PREFIX, new_secret

log = logging.getLogger(__name__)

Probe = Callable[[str], None]


def health_probe(timeout_s: float) -> Probe:
    """Return a probe: GET {base_url}/health must answer 200 in time, or BadGateway says why."""

    def probe(base_url: str) -> None:
        result = health.probe(base_url, timeout_s)
        if not result.ok:
            raise BadGateway(
                f"The plugin's health check failed: {result.detail}. The core calls "
                f"GET {health.health_url(base_url)} and needs a 200 before it registers a "
                "plugin; nothing was stored.",
                url=health.health_url(base_url),
                status_code=result.status_code,
            )

    return probe


def register(
    manifest: object,
    *,
    actor: str,
    probe: Probe,
    enrolment_key: EnrolmentKey | None = None,
) -> tuple[Plugin, str]:
    """Register a plugin from its manifest; return the plugin and its token (shown once)."""
    manifest = validate_manifest(manifest)
    plugin_id = manifest["plugin_id"]
    if enrolment_key is not None:
        enrolment.check_scope(enrolment_key, plugin_id)
    previous = _refuse_taken(plugin_id)
    if previous is not None:
        enrolment.check_may_reattach(enrolment_key, previous)
        _check_reattachable(previous, manifest)
    probe(manifest_base_url(manifest))
    token = new_secret(PLUGIN_TOKEN_PREFIX)
    if previous is not None:
        return _register_again(previous, manifest, token, actor, enrolment_key), token
    try:
        with write_transaction():
            if enrolment_key is not None:
                enrolment.spend_key(enrolment_key)
            plugin = Plugin.create(
                plugin_id=plugin_id,
                name=manifest["name"],
                version=manifest["version"],
                base_url=manifest_base_url(manifest),
                state=lifecycle.INITIAL_STATE,
                manifest=manifest,
            )
            plugin_tokens.store(plugin, token, actor=actor)
            ManifestVersion.create(plugin=plugin, version=plugin.version, manifest=manifest)
            records.store_routes(plugin, manifest)
            for entry in manifest["data_schemas"]:
                records.create_collection(plugin, entry)
            lifecycle.enter_initial_state(plugin, cause="manifest accepted", actor=actor)
            AuditEvent.create(
                actor=actor,
                action="plugin.register",
                target=plugin_id,
                detail={"version": plugin.version, "base_url": plugin.base_url},
            )
    except IntegrityError:
        _refuse_taken(plugin_id)
        raise
    log.info("plugin registered: %s %s by %s", plugin_id, plugin.version, actor)
    return plugin, token


def _refuse_taken(plugin_id: str) -> Plugin | None:
    """Refuse a plugin_id in use; return the row of a deregistered plugin of that id, if any."""
    existing = Plugin.get_or_none(Plugin.plugin_id == plugin_id)
    if existing is not None and existing.state != "deregistered":
        raise Conflict(
            f"The plugin_id {plugin_id!r} is taken (its plugin is {existing.state}). "
            "An installed plugin sends updates with PUT /api/registry/plugins/"
            f"{plugin_id} and its plugin token.",
            plugin_id=plugin_id,
            kind="plugin-id-taken",
        )
    return existing


def _check_reattachable(previous: Plugin, manifest: dict) -> None:
    """Refuse a re-registration whose schemas break the retained data (SPEC §7's diff)."""
    records.check_version_unused(previous, manifest)
    changes = schema_diff.diff_collections(
        previous.manifest.get("data_schemas", []), manifest["data_schemas"]
    )
    kept = {
        row[0]
        for row in database.execute_sql(
            "SELECT DISTINCT collection FROM document WHERE plugin_id = ?", [previous.plugin_id]
        )
    }
    breaking = [c for c in schema_diff.breaking_changes(changes) if c.collection in kept]
    if breaking:
        raise Conflict(
            f"Plugin {previous.plugin_id!r} was deregistered with its data retained, and this "
            f"manifest changes the retained collections in a breaking way. Register version "
            f"{previous.version}'s schemas again, then update with a migration handler.",
            diff=[change.to_dict() for change in breaking],
            kind="breaking-change",
        )


def _register_again(
    plugin: Plugin,
    manifest: dict,
    token: str,
    actor: str,
    enrolment_key: EnrolmentKey | None,
) -> Plugin:
    """Reuse a deregistered plugin's row: its history, tenants, policies and data stay."""
    with write_transaction():
        # Checked again here: an archive may have been restored since the first check.
        enrolment.check_may_reattach(enrolment_key, plugin)
        if enrolment_key is not None:
            enrolment.spend_key(enrolment_key)
        pending_updates.discard(plugin, actor=actor, cause="the plugin_id was registered again")
        now = utcnow()
        reused = (
            Plugin.update(
                state=lifecycle.INITIAL_STATE,
                token_rotated_at=now,
                consecutive_failures=0,
                last_health_at=None,
                last_health_ok=None,
            )
            .where((Plugin.id == plugin.id) & (Plugin.state == "deregistered"))
            .execute()
        )
        if reused != 1:
            _refuse_taken(plugin.plugin_id)
            raise Conflict(f"The plugin_id {plugin.plugin_id!r} is taken.", kind="plugin-id-taken")
        plugin.state = lifecycle.INITIAL_STATE
        plugin_tokens.revoke_all(plugin, now=now)  # a token from before the removal stays dead
        plugin_tokens.store(plugin, token, actor=actor, now=now)
        records.record_manifest(plugin, manifest)
        wanted = {entry["collection"]: entry for entry in manifest["data_schemas"]}
        # Materialised first: DROP INDEX while a SELECT is still stepping on the same
        # connection fails with SQLITE_LOCKED ("database table is locked").
        for row in list(Collection.select().where(Collection.plugin == plugin)):
            indexes.drop_indexes(plugin.plugin_id, row.name, row.indexes)
            row.delete_instance()
        for entry in wanted.values():
            records.create_collection(plugin, entry)
        documents = Document.select().where(Document.plugin_id == plugin.plugin_id).count()
        lifecycle.reenter_initial_state(
            plugin,
            cause=f"registered again; {documents} retained document(s) re-attached",
            actor=actor,
        )
        AuditEvent.create(
            actor=actor,
            action="plugin.register",
            target=plugin.plugin_id,
            detail={
                "version": plugin.version,
                "base_url": plugin.base_url,
                "reattached_documents": documents,
            },
        )
    log.info("plugin registered again: %s %s by %s", plugin.plugin_id, plugin.version, actor)
    return plugin


@dataclass
class CheckedUpdate:
    """An update that passed every check against the installed version, ready to apply."""

    manifest: dict
    changes: list = field(default_factory=list)
    breaking: list = field(default_factory=list)
    renames: dict[str, str] = field(default_factory=dict)


def check_update(plugin: Plugin, manifest: object) -> CheckedUpdate:
    """Validate an update against the installed version; refuse it (400/409) or return it."""
    manifest = validate_manifest(manifest)
    if manifest["plugin_id"] != plugin.plugin_id:
        raise BadRequest(
            f"This manifest is for {manifest['plugin_id']!r}, not {plugin.plugin_id!r}.",
            errors=[field_error(["plugin_id"], "const", f"must be {plugin.plugin_id!r}")],
            kind="invalid-manifest",
        )
    if plugin.state in ("deregistered", "migrating"):
        raise Conflict(
            f"Plugin {plugin.plugin_id!r} is {plugin.state} and cannot be updated now.",
            state=plugin.state,
            kind="wrong-state",
        )
    old_version, new_version = plugin.version, manifest["version"]
    # First: a version number holds one manifest, so a changed manifest under a version
    # already used (the installed one included) is its own refusal, not "not higher".
    records.check_version_unused(plugin, manifest)
    if semver.Version.parse(new_version) <= semver.Version.parse(old_version):
        raise Conflict(
            f"Version {new_version} is not higher than the installed {old_version}; "
            "an update must carry a higher semantic version.",
            current_version=old_version,
            kind="version-not-higher",
        )
    renames = records.renames(plugin.manifest, manifest)
    changes = schema_diff.diff_collections(
        plugin.manifest.get("data_schemas", []), manifest["data_schemas"], renames=renames
    )
    breaking = schema_diff.breaking_changes(changes)
    if breaking and not manifest.get("migration"):
        log.info("breaking update refused: %s -> %s", plugin.plugin_id, new_version)
        diff = [change.to_dict() for change in breaking]
        raise Conflict(
            f"The update to {new_version} changes {len(diff)} thing(s) in a breaking "
            "way; declare a 'migration' handler or keep the schemas compatible (see 'diff').",
            diff=diff,
            kind="breaking-change",
        )
    return CheckedUpdate(manifest, changes, breaking, renames)


def update(plugin: Plugin, manifest: object, *, actor: str, app: Flask) -> dict:
    """Apply a newer manifest: compatible changes at once, breaking ones refused with a diff.

    An update that moves ``base_url`` to another origin is checked in full but only kept,
    for an operator to approve (``pending_updates``); the answer then has ``pending_update``.
    ``app`` gives the health timeout for a moved ``base_url`` and runs a migration's handler.
    """
    checked = check_update(plugin, manifest)
    new_base_url = manifest_base_url(checked.manifest)
    if pending_updates.moves_origin(plugin, new_base_url):
        changes = [change.to_dict() for change in checked.changes]
        row = pending_updates.store(plugin, checked.manifest, new_base_url, changes, actor=actor)
        return {
            "plugin_id": plugin.plugin_id,
            "version": plugin.version,
            "state": plugin.state,
            "detail": pending_updates.awaiting_detail(row),
            "pending_update": pending_updates.summary(row),
        }
    return apply_update(plugin, checked, actor=actor, app=app)


def apply_update(
    plugin: Plugin,
    checked: CheckedUpdate,
    *,
    actor: str,
    app: Flask,
    claim: Callable[[], None] | None = None,
) -> dict:
    """Apply a checked update: probe a moved ``base_url``, then migrate or swap in place.

    ``claim`` runs inside the applying transaction (an approval takes its pending update
    there); without it, the plugin's own update discards any older pending one.
    """
    manifest = checked.manifest
    if manifest_base_url(manifest) != plugin.base_url:
        health_probe(float(app.config["HEALTH_TIMEOUT_S"]))(manifest_base_url(manifest))

    def take_pending() -> None:
        if claim is not None:
            claim()
        else:
            cause = f"superseded by the update to {manifest['version']}"
            pending_updates.discard(plugin, actor=actor, cause=cause)

    if checked.breaking:
        return begin_migration(
            plugin,
            manifest,
            checked.breaking,
            actor=actor,
            app=app,
            renames=checked.renames,
            before=take_pending,
        )
    old_version, new_version = plugin.version, manifest["version"]
    with write_transaction():
        _still_at(plugin, old_version, new_version)
        take_pending()
        _apply_compatible(plugin, plugin.manifest, manifest)
        AuditEvent.create(
            actor=actor,
            action="plugin.update",
            target=plugin.plugin_id,
            detail={"from": old_version, "to": new_version, "changes": len(checked.changes)},
        )
    log.info("plugin updated: %s %s -> %s by %s", plugin.plugin_id, old_version, new_version, actor)
    return {
        "plugin_id": plugin.plugin_id,
        "version": new_version,
        "previous_version": old_version,
        "state": plugin.state,
        "changes": [change.to_dict() for change in checked.changes],
    }


def _still_at(plugin: Plugin, checked_version: str, new_version: str) -> None:
    """Lock the plugin's row and check it is still at the version the update was checked
    against: of two updates checked at once, the second to commit is refused, not applied
    over the first (on SQLite the write transaction holds the database; on PostgreSQL the
    row is locked until the update commits)."""
    query = Plugin.select(Plugin.version).where(Plugin.id == plugin.id)
    stored = dialect.current().locked(query).scalar()
    if stored != checked_version:
        raise Conflict(
            f"{plugin.plugin_id} went from {checked_version} to {stored} while the update to "
            f"{new_version} was checked; send the update again.",
            kind="conflict",
        )


def begin_migration(
    plugin: Plugin,
    manifest: dict,
    breaking: list,
    *,
    actor: str,
    app: Flask,
    renames: dict[str, str] | None = None,
    before: Callable[[], None] | None = None,
) -> dict:
    """Refuse a breaking update without a handler; with one, start the migration (SPEC §7).

    The plugin enters ``migrating`` in this call's transaction (``before`` runs first in
    it); the handler is called by a background thread started after that transaction
    commits, never inside the request.
    """
    diff = [change.to_dict() for change in breaking]
    if not manifest.get("migration"):
        log.info("breaking update refused: %s -> %s", plugin.plugin_id, manifest["version"])
        raise Conflict(
            f"The update to {manifest['version']} changes {len(diff)} thing(s) in a breaking "
            "way; declare a 'migration' handler or keep the schemas compatible (see 'diff').",
            diff=diff,
            kind="breaking-change",
        )
    old_version = plugin.version
    with write_transaction():
        _still_at(plugin, old_version, manifest["version"])
        if before is not None:
            before()
        run, credential = migrations.begin(
            plugin, manifest, diff, renames or {}, actor=actor, config=app.config
        )
    migrations.launch(app, run.id, credential)
    return {
        "plugin_id": plugin.plugin_id,
        "version": manifest["version"],
        "previous_version": old_version,
        "state": plugin.state,
        "changes": diff,
        "migration": migrations.run_summary(run),
    }


def _apply_compatible(plugin: Plugin, old_manifest: dict, manifest: dict) -> None:
    records.record_manifest(plugin, manifest)
    existing = {c.name: c for c in Collection.select().where(Collection.plugin == plugin)}
    for entry in manifest["data_schemas"]:
        row = existing.get(entry["collection"])
        if row is None:
            records.create_collection(plugin, entry)
            continue
        records.replace_indexes(plugin.plugin_id, row.name, row.indexes, entry["indexes"])
        row.schema = entry["schema"]
        row.indexes = entry["indexes"]
        row.save()
