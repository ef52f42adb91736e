"""Uninstall policies (SPEC §7): what deregistering a plugin does to each tenant's data.

``retain`` keeps the rows; ``archive`` writes them to an archive file (``archives``: file
first, fsync, then the delete) and removes them; ``purge`` deletes them after the operator
confirms. See docs/migrations.md.
"""

import logging
from pathlib import Path

from extframework import dialect
from extframework.db import database, write_transaction
from extframework.errors import BadRequest, Conflict, NotFound, field_error
from extframework.models import (
    UNINSTALL_POLICIES,
    Archive,
    AuditEvent,
    Installation,
    Plugin,
    Tenant,
)
from extframework.services import archives, installations, lifecycle

log = logging.getLogger(__name__)

DEFAULT_POLICY = "retain"
PURGE_BATCH = 1000  # documents per purge transaction: milliseconds of the write lock


# --- policies -------------------------------------------------------------------------------


_COUNT_SQL = "SELECT count(*) FROM document WHERE tenant = ? AND plugin_id = ?"
_HOLDS_SQL = "SELECT EXISTS (SELECT 1 FROM document WHERE tenant = ? AND plugin_id = ?)"


def _holds_documents(plugin_id: str, tenant_slug: str) -> bool:
    return bool(database.execute_sql(_HOLDS_SQL, [tenant_slug, plugin_id]).fetchone()[0])


def _document_counts(plugin_id: str, *, exact: bool = True) -> dict[str, int]:
    """Count a plugin's documents per tenant (or just 1 per tenant holding any).

    Walks the distinct tenants through the (tenant, plugin_id, ...) index one seek at a time,
    instead of scanning the whole document table for one plugin.
    """
    counts, tenant = {}, ""
    while True:
        tenant = database.execute_sql(
            "SELECT min(tenant) FROM document WHERE tenant > ?", [tenant]
        ).fetchone()[0]
        if tenant is None:
            return counts
        sql = _COUNT_SQL if exact else _HOLDS_SQL
        count = database.execute_sql(sql, [tenant, plugin_id]).fetchone()[0]
        if count:
            counts[tenant] = count


def policies(plugin: Plugin, *, counts: bool = True) -> list[dict]:
    """List the policy of every tenant the plugin is in or holds data in, with its documents.

    ``counts=False`` leaves the counts out (cheap enough for listing every plugin).
    """
    chosen = {
        row.tenant.slug: row.uninstall_policy
        for row in Installation.select(Installation, Tenant)
        .join(Tenant)
        .where(Installation.plugin == plugin)
    }
    if plugin.restricted:
        slugs = set(chosen)
    else:
        slugs = {tenant.slug for tenant in Tenant.select(Tenant.slug)}
    held = _document_counts(plugin.plugin_id, exact=counts)
    result = []
    for slug in sorted(slugs | set(held)):
        entry = {"tenant": slug, "policy": chosen.get(slug, DEFAULT_POLICY)}
        if counts:
            entry["documents"] = held.get(slug, 0)
        result.append(entry)
    return result


def set_policy(plugin: Plugin, tenant_slug: str, policy: object, *, actor: str) -> dict:
    """Record what deregistration will do to this tenant's data of the plugin."""
    if policy not in UNINSTALL_POLICIES:
        raise BadRequest(
            f"The uninstall policy must be one of {', '.join(UNINSTALL_POLICIES)}.",
            errors=[field_error(["policy"], "enum", f"must be one of {list(UNINSTALL_POLICIES)}")],
            kind="invalid-body",
        )
    tenant = Tenant.get_or_none(Tenant.slug == tenant_slug)
    if tenant is None:
        raise NotFound(f"No tenant {tenant_slug!r}.")
    with write_transaction():
        _check_still_decidable(plugin, tenant_slug)
        installation = Installation.get_or_none(
            (Installation.plugin == plugin) & (Installation.tenant == tenant)
        )
        if installation is None:
            # The tenants policies() lists: those the plugin is in, and those holding its data.
            available = installations.is_installed(plugin, tenant.slug)
            if not available and not _holds_documents(plugin.plugin_id, tenant.slug):
                raise Conflict(
                    f"Plugin {plugin.plugin_id!r} is not installed in tenant {tenant_slug!r} "
                    "and holds no data there; make it available there first.",
                    tenant=tenant_slug,
                )
            installation = Installation.create(plugin=plugin, tenant=tenant, available=available)
        previous = installation.uninstall_policy
        installation.uninstall_policy = policy
        installation.save()
        AuditEvent.create(
            actor=actor,
            action="plugin.uninstall_policy",
            target=plugin.plugin_id,
            detail={"tenant": tenant_slug, "from": previous, "to": policy},
        )
    log.info(
        "uninstall policy of %s in %s: %s -> %s by %s",
        plugin.plugin_id,
        tenant_slug,
        previous,
        policy,
        actor,
    )
    return {"tenant": tenant_slug, "policy": policy}


def _check_still_decidable(plugin: Plugin, tenant_slug: str) -> None:
    """Refuse a policy for data a deregistration already decided (docs/registry.md).

    Once the plugin is deregistered, a tenant whose data was archived or purged (or that held
    none) has nothing left for a policy to decide: 409. Retained data's policy may change;
    it is what the next deregistration applies if the plugin_id is registered again.
    """
    state = Plugin.select(Plugin.state).where(Plugin.id == plugin.id).scalar()
    if state != "deregistered" or _holds_documents(plugin.plugin_id, tenant_slug):
        return
    archived = (
        Archive.select()
        .where((Archive.plugin_id == plugin.plugin_id) & (Archive.tenant == tenant_slug))
        .order_by(Archive.id.desc())
        .first()
    )
    decided = (
        f"its data there was archived to {archived.path}"
        if archived is not None
        else "it holds no data there (purged, or there was none)"
    )
    raise Conflict(
        f"Plugin {plugin.plugin_id!r} is deregistered and {decided}: there is nothing left for "
        f"an uninstall policy in tenant {tenant_slug!r} to decide. Register the plugin_id again "
        "to choose a policy for its new data.",
        tenant=tenant_slug,
        state=state,
        kind="wrong-state",
    )


# --- deregistration -------------------------------------------------------------------------


def deregister(
    plugin: Plugin, *, actor: str, cause: str, confirm: str | None, archive_root: Path
) -> dict:
    """Deregister a plugin, applying each tenant's policy to the data it holds there.

    Archive files are written (and synced) before anything is deleted. Purged and archived
    documents are then deleted in short transactions (a thousand documents each), so other
    plugins' writes keep flowing; an archived document is deleted only while it still has the
    id and version its archive line holds, and its ``Archive`` row commits with the first
    batch, so whatever is deleted is findable in an archive. The transition commits last,
    once nothing is left: a failure or crash midway leaves the plugin as it was, and running
    the deregistration again finishes it (the documents left get an archive of their own).
    """
    lifecycle.check_allowed(plugin, "deregistered", actor=actor)
    by_tenant = {entry["tenant"]: entry for entry in policies(plugin) if entry["documents"]}
    purged = sorted(t for t, entry in by_tenant.items() if entry["policy"] == "purge")
    if purged and confirm != plugin.plugin_id:
        raise BadRequest(
            f"Deregistering {plugin.plugin_id!r} deletes its data in tenant(s) "
            f"{', '.join(purged)} (policy purge). Confirm by repeating the plugin_id.",
            errors=[field_error(["confirm"], "confirm", f"type {plugin.plugin_id!r} to confirm")],
            purge_tenants=purged,
            kind="confirmation-required",
        )
    for tenant in purged:  # short transactions; a re-run after a crash deletes the rest
        _purge(plugin.plugin_id, tenant)
    written, recorded = [], set()
    try:
        for tenant, entry in sorted(by_tenant.items()):
            if entry["policy"] == "archive":
                written.append(archives.write_archive(plugin, tenant, archive_root))
        for archive in written:
            _delete_archived(plugin, archive, actor, recorded)
        outcome = {
            t: {"policy": e["policy"], "documents": e["documents"]} for t, e in by_tenant.items()
        }
        with write_transaction():
            for archive in written:
                left = _count(plugin.plugin_id, archive["tenant"])
                if left:
                    raise Conflict(
                        f"{left} document(s) of {plugin.plugin_id!r} in {archive['tenant']!r} "
                        f"changed or were written while it was archived; the others are in "
                        f"{archive['relative']} and deleted. Deregister again to archive the "
                        "rest."
                    )
                outcome[archive["tenant"]]["archive"] = archive["relative"]
            for tenant in purged:
                _delete(plugin.plugin_id, tenant)  # anything written since the batches: none
            lifecycle.transition(plugin, "deregistered", cause=cause, actor=actor)
            AuditEvent.create(
                actor=actor, action="plugin.uninstall", target=plugin.plugin_id, detail=outcome
            )
    except BaseException:
        for archive in written:  # an archive that documents were deleted into stays
            if archive["relative"] not in recorded:
                for path in (archive["path"], archives.checksum_path(archive["path"])):
                    path.unlink(missing_ok=True)
        raise
    log.info("plugin %s deregistered by %s; data: %s", plugin.plugin_id, actor, outcome)
    return {"plugin_id": plugin.plugin_id, "tenants": outcome}


def _delete_archived(plugin: Plugin, archive: dict, actor: str, recorded: set) -> int:
    """Delete the documents an archive holds, a batch of its lines per transaction.

    A document goes only if it still has the id and version of its line: one written or
    changed after the archive's snapshot stays live. The ``Archive`` row commits with the first
    batch (its relative path then joins ``recorded``).
    """
    deleted = 0
    for keys in archives.archived_keys(archive["path"]):
        with write_transaction():
            if archive["relative"] not in recorded:
                Archive.create(
                    plugin_id=plugin.plugin_id,
                    tenant=archive["tenant"],
                    path=archive["relative"],
                    sha256=archive["sha256"],
                    documents=archive["documents"],
                    size_bytes=archive["size_bytes"],
                    created_by=actor,
                )
            cursor = database.cursor()
            cursor.executemany(
                dialect.current().sql(
                    "DELETE FROM document WHERE tenant = ? AND plugin_id = ? AND collection = ? "
                    "AND doc_id = ? AND version = ?"
                ),
                [(archive["tenant"], plugin.plugin_id, *key) for key in keys],
            )
        recorded.add(archive["relative"])
        deleted += cursor.rowcount
        _purge_batch_committed(plugin.plugin_id, archive["tenant"], deleted)
    return deleted


def _count(plugin_id: str, tenant: str) -> int:
    return database.execute_sql(
        "SELECT count(*) FROM document WHERE plugin_id = ? AND tenant = ?", [plugin_id, tenant]
    ).fetchone()[0]


def _delete(plugin_id: str, tenant: str) -> int:
    return database.execute_sql(
        "DELETE FROM document WHERE plugin_id = ? AND tenant = ?", [plugin_id, tenant]
    ).rowcount


def _purge_batch_committed(plugin_id: str, tenant: str, deleted: int) -> None:
    """Called after each purge batch commits with the documents deleted so far (a test hook)."""


def _purge(plugin_id: str, tenant: str) -> int:
    """Delete a namespace's documents ``PURGE_BATCH`` at a time, each batch its own transaction."""
    deleted = 0
    while True:
        with write_transaction():
            count = database.execute_sql(
                "DELETE FROM document WHERE pk IN (SELECT pk FROM document "
                "WHERE plugin_id = ? AND tenant = ? LIMIT ?)",
                [plugin_id, tenant, PURGE_BATCH],
            ).rowcount
        deleted += count
        _purge_batch_committed(plugin_id, tenant, deleted)
        if count < PURGE_BATCH:
            return deleted
