"""The filesystem: namespaced, schema-validated JSON documents (SPEC §5, storage column of §6).

A document's namespace is ``plugin_data.{tenant}.{plugin}.{collection}``, stored as the
``tenant``, ``plugin_id`` and ``collection`` columns of the ``document`` table. The plugin
always comes from the caller's credential, never from the request.
"""

import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from peewee import OperationalError

from extframework import dialect
from extframework.db import database, write_statement, write_transaction
from extframework.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    PreconditionFailed,
    Unavailable,
    field_error,
    json_pointer,
)
from extframework.models import Document, Plugin, utcnow
from extframework.services import (
    installations,
    lifecycle,
    query,
    registry_cache,
    schema_limits,
)
from extframework.services.schema_validation import (
    FORMAT_CHECKER,
    BudgetedValidator,
    BudgetExceeded,
    additional_names,
    budget,
)

log = logging.getLogger(__name__)

DEFAULT_TENANT = "default"
MIGRATING_RETRY_AFTER_S = 30
MAX_PATCH_ATTEMPTS = 50
VALIDATOR_CACHE_SIZE = 1024

_validators: dict[tuple[str, str, str], object] = {}
_validators_by_identity: dict[int, object] = {}  # id(schema) -> its validator (checked by `is`)


@dataclass(frozen=True)
class Namespace:
    """One tenant's part of one plugin's collection, with the schema that guards it."""

    tenant: str
    plugin_id: str
    collection: str
    schema: dict
    indexes: tuple[tuple[str, ...], ...]

    @property
    def name(self) -> str:
        return f"plugin_data.{self.tenant}.{self.plugin_id}.{self.collection}"


# --- who may do what ------------------------------------------------------------


def check_access(plugin: Plugin, *, write: bool, migration_context: bool = False) -> None:
    """Apply the storage column of SPEC §6's state table; a refusal says why.

    ``migration_context`` is True only for calls made with the migration's own credential,
    which may read and write while the plugin is ``migrating``.
    """
    state = plugin.state
    mode = lifecycle.STORAGE.get(state, lifecycle.CLOSED)
    if mode == lifecycle.OPEN:
        return
    if mode == lifecycle.FROZEN:
        if migration_context:
            return
        raise Unavailable(
            f"Plugin {plugin.plugin_id!r} is migrating its data to a new schema version; "
            "its storage is frozen until the migration finishes. Retry later.",
            headers={"Retry-After": str(MIGRATING_RETRY_AFTER_S)},
            state=state,
            kind="namespace-frozen",
        )
    if mode == lifecycle.READ_ONLY:
        if not write:
            return
        raise Forbidden(
            f"Plugin {plugin.plugin_id!r} is disabled by an administrator; its storage is "
            "read-only until it is re-enabled, so writes are refused.",
            state=state,
            kind="storage-closed",
        )
    if state == lifecycle.INITIAL_STATE:
        raise Forbidden(
            f"Plugin {plugin.plugin_id!r} is registered but not yet active; its storage opens "
            "after its first successful health check.",
            state=state,
            kind="storage-closed",
        )
    # CLOSED, and PER_POLICY: a deregistered plugin's retained data is for admins, not for it.
    raise Forbidden(
        f"Plugin {plugin.plugin_id!r} is {state}; its storage is closed.",
        state=state,
        kind="storage-closed",
    )


def resolve_tenant(plugin: Plugin, header: str | None) -> str:
    """Return the tenant named by X-Tenant-ID (absent: ``default``); 403 if not installed there."""
    tenant = DEFAULT_TENANT if header is None else header.strip()
    if not tenant:
        raise BadRequest("X-Tenant-ID is empty: name a tenant, or leave the header out.")
    installed = registry_cache.cached(
        ("installed", plugin.id, plugin.restricted, tenant),
        lambda: installations.is_installed(plugin, tenant),
    )
    if not installed:
        log.info("storage refused: %s is not installed in tenant %r", plugin.plugin_id, tenant)
        raise Forbidden(
            f"Plugin {plugin.plugin_id!r} is not installed in tenant {tenant!r}.",
            tenant=tenant,
            kind="not-installed",
        )
    return tenant


def open_collection(
    plugin: Plugin,
    tenant_header: str | None,
    collection: str,
    *,
    write: bool,
    migration_context: bool = False,
) -> Namespace:
    """Resolve the namespace of a call in SPEC §5's order: tenant, lifecycle, collection."""
    tenant = resolve_tenant(plugin, tenant_header)
    check_access(plugin, write=write, migration_context=migration_context)
    # Cached, parsed, while the registry version holds (a trigger on `collection` bumps it):
    # with the tenant check, a storage call reads one row (the version) before its own
    # statements, and the parsed schema is one object, so its validator is found by identity.
    found = (
        None
        if "\x00" in collection
        else registry_cache.cached(
            ("collection", plugin.id, collection), lambda: _collection(plugin.id, collection)
        )
    )
    if found is None:
        raise NotFound(
            f"Plugin {plugin.plugin_id!r} declares no collection {collection!r}.",
            collection=collection,
            kind="unknown-collection",
        )
    name, schema, indexes = found
    return Namespace(tenant, plugin.plugin_id, name, schema, indexes)


def _collection(plugin_pk: int, collection: str) -> tuple[str, dict, tuple] | None:
    """A collection's name, schema and index fields, parsed; shared by callers, never changed."""
    row = database.execute_sql(  # raw SQL: building it with Peewee costs more
        "SELECT name, schema, indexes FROM collection WHERE plugin_id = ? AND name = ?",
        [plugin_pk, collection],
    ).fetchone()
    if row is None:
        return None
    indexes = tuple(tuple(spec["fields"]) for spec in json.loads(row[2] or "[]"))
    return row[0], json.loads(row[1]), indexes


# --- validation -------------------------------------------------------------------


def validator_for(plugin_id: str, collection: str, schema: dict):
    """Return the compiled validator of a collection's schema, cached per schema version."""
    validator = _validators_by_identity.get(id(schema))
    if validator is not None and validator.schema is schema:
        return validator  # the schema object open_collection's cache shares across calls
    digest = hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()
    key = (plugin_id, collection, digest)
    validator = _validators.get(key)
    if validator is None:
        # The manifest check allows only Draft 2020-12, so one validator class serves all.
        validator = BudgetedValidator(schema, format_checker=FORMAT_CHECKER)
        if len(_validators) >= VALIDATOR_CACHE_SIZE:
            _validators.clear()
        _validators[key] = validator
    if len(_validators_by_identity) >= VALIDATOR_CACHE_SIZE:
        _validators_by_identity.clear()
    _validators_by_identity[id(schema)] = validator
    return validator


def validation_errors(
    schema_validator, data: object, limits: schema_limits.Limits | None = None
) -> list[dict]:
    """List one entry per failing field, each with its JSON pointer and what is wrong.

    A document whose validation passes the budget in ``limits`` (default: the app's
    settings) gets one entry with the keyword ``budget`` instead.
    """
    try:
        with budget(limits or schema_limits.current()):
            return _field_errors(schema_validator, data)
    except BudgetExceeded as exc:
        return [
            field_error(
                [], "budget", f"validating this document against the schema took {exc.reason}"
            )
        ]


def _field_errors(schema_validator, data: object) -> list[dict]:
    entries: dict[str, dict] = {}

    def add(path: list, message: str, keyword: str) -> None:
        entry = entries.get(json_pointer(path))
        if entry is None:
            entries[json_pointer(path)] = field_error(path, keyword, message)
        elif message not in entry["message"]:
            entry["message"] += f"; {message}"

    for error in schema_validator.iter_errors(data):
        path = list(error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            for name in error.validator_value:
                if name not in error.instance:
                    add([*path, name], "is required", "required")
        elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
            for name in additional_names(error.instance, error.schema):
                add([*path, name], "is not allowed by the schema", "additionalProperties")
        else:
            add(path, error.message, str(error.validator))
    return sorted(entries.values(), key=lambda e: e["pointer"])


def validate(ns: Namespace, data: object) -> None:
    """Check a document against its collection's schema; 422 with every failing field."""
    if not isinstance(data, dict):
        raise BadRequest("A document must be a JSON object.", kind="invalid-body")
    errors = validation_errors(validator_for(ns.plugin_id, ns.collection, ns.schema), data)
    if errors and errors[0]["keyword"] == "budget":
        raise Invalid(
            f"The document costs too much to check against the schema of collection "
            f"{ns.collection!r}: {errors[0]['message']}. Send a smaller document, or simplify "
            "the schema's anyOf/oneOf/$ref alternatives; nothing was stored.",
            errors=errors,
        )
    if errors:
        raise Invalid(
            f"The document does not match the schema of collection {ns.collection!r}.",
            errors=errors,
        )


# json.dumps(data, allow_nan=False, separators=(",", ":")), without a new encoder per call.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def _dump(data: dict) -> str:
    try:
        text = _ENCODER.encode(data)
    except ValueError:
        raise BadRequest(
            "NaN and Infinity are not JSON numbers; send finite numbers.", kind="invalid-body"
        ) from None
    if "\\u0000" in text and _holds_nul(data):
        # PostgreSQL cannot read a JSON path of a document holding it; SQLite ends the text there.
        raise BadRequest(
            "A string or member name holds U+0000 (NUL), which documents cannot hold; "
            "remove it or encode it.",
            kind="invalid-body",
        )
    return text


def _holds_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


# --- documents --------------------------------------------------------------------


def merge_patch(target: object, patch: object) -> object:
    """Apply an RFC 7396 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def etag(version: int) -> str:
    return f'"{version}"'


def parse_if_match(header: str | None) -> set[int] | str | None:
    """Read If-Match: None when absent, ``*``, or the versions it lists (quoted or bare)."""
    if header is None:
        return None
    header = header.strip()
    if header == "*":
        return "*"
    versions = set()
    for tag in header.split(","):
        tag = tag.strip()
        if tag.startswith('"') and tag.endswith('"') and len(tag) >= 2:
            tag = tag[1:-1]
        if tag.isdigit():  # weak tags (W/"n") never match: If-Match compares strongly
            versions.add(int(tag))
    return versions


def _matches(if_match: set[int] | str | None, version: int) -> bool:
    return if_match is None or if_match == "*" or version in if_match


def _stale(ns: Namespace, doc_id: str, version: int) -> PreconditionFailed:
    return PreconditionFailed(
        f"Document {doc_id!r} is at version {version}, not the one If-Match names; "
        "read it again and retry.",
        current_version=version,
        headers={"ETag": etag(version)},
    )


def _timestamp(value: datetime | str) -> str:
    """RFC 3339 UTC with microseconds; isoformat takes under half strftime's time."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.isoformat("T", "microseconds") + "Z"


def render(doc_id: str, version: int, created_at, updated_at, data: object) -> dict:
    """Shape a document as SPEC §5 returns it."""
    return {
        "id": doc_id,
        "version": version,
        "created_at": _timestamp(created_at),
        "updated_at": _timestamp(updated_at),
        "data": data,
    }


def _in_namespace(ns: Namespace, doc_id: str):
    return (
        (Document.tenant == ns.tenant)
        & (Document.plugin_id == ns.plugin_id)
        & (Document.collection == ns.collection)
        & (Document.doc_id == doc_id)
    )


def _load(ns: Namespace, doc_id: str) -> Document:
    # No id holds U+0000 (ids are hex), and PostgreSQL cannot even be asked for one.
    doc = None if "\x00" in doc_id else Document.get_or_none(_in_namespace(ns, doc_id))
    if doc is None:
        raise NotFound(f"No document {doc_id!r} in collection {ns.collection!r}.")
    return doc


@contextmanager
def _json_refused(subject: str) -> Iterator[None]:
    """Make the database's refusal of a document's JSON a 400."""
    try:
        yield
    except OperationalError as exc:
        if "JSON" in str(exc):
            raise BadRequest(
                f"{subject} cannot be stored as JSON: {exc}.", kind="invalid-body"
            ) from None
        raise


@contextmanager
def document_write(subject: str = "The document") -> Iterator[None]:
    """A write transaction in which the database's refusal of a document's JSON is a 400."""
    with _json_refused(subject), write_transaction():
        yield


def _write(query, params: list | None = None) -> int:
    """Run one statement as its own transaction; raw SQL (with params) or a Peewee query."""
    if params is None:
        query, params = query.sql()
    with _json_refused("The document"):
        return write_statement(query, params)


def create_document(ns: Namespace, data: object) -> dict:
    """Validate and store a new document; return it."""
    if not isinstance(data, dict):
        raise BadRequest("A document must be a JSON object.", kind="invalid-body")
    text = _dump(data)
    validate(ns, data)
    doc_id = uuid.uuid4().hex
    now = utcnow()
    stamp = now.isoformat(" ")  # the text Peewee's DateTimeField stores
    _write(
        "INSERT INTO document (tenant, plugin_id, collection, doc_id, version, created_at, "
        f"updated_at, data) VALUES (?, ?, ?, ?, 1, ?, ?, {dialect.current().json_param()})",
        [ns.tenant, ns.plugin_id, ns.collection, doc_id, stamp, stamp, text],
    )
    created = _timestamp(now)  # formatted once: both stamps are one instant
    return {"id": doc_id, "version": 1, "created_at": created, "updated_at": created, "data": data}


def get_document(ns: Namespace, doc_id: str) -> dict:
    doc = _load(ns, doc_id)
    return render(doc.doc_id, doc.version, doc.created_at, doc.updated_at, doc.data)


def patch_document(ns: Namespace, doc_id: str, patch: object, *, if_match: str | None) -> dict:
    """Merge-patch a document, validated on the result; compare-and-set so no write is lost."""
    if not isinstance(patch, dict):
        raise BadRequest("A merge patch of a document must be a JSON object.", kind="invalid-body")
    _dump(patch)
    expected = parse_if_match(if_match)
    for _ in range(MAX_PATCH_ATTEMPTS):
        doc = _load(ns, doc_id)
        if not _matches(expected, doc.version):
            raise _stale(ns, doc_id, doc.version)
        merged = merge_patch(doc.data, patch)
        validate(ns, merged)
        text = _dump(merged)
        if _same_json(merged, doc.data):
            # Nothing changes, so nothing is written: the version, updated_at and ETag stay.
            return render(doc_id, doc.version, doc.created_at, doc.updated_at, doc.data)
        now = utcnow()
        changed = _write(
            Document.update(
                data=dialect.current().json_value(text),
                version=Document.version + 1,
                updated_at=now,
            ).where((Document.pk == doc.pk) & (Document.version == doc.version))
        )
        if changed == 1:
            return render(doc_id, doc.version + 1, doc.created_at, now, merged)
        if expected is not None and expected != "*":
            current = Document.get_or_none(_in_namespace(ns, doc_id))
            if current is None:
                raise _gone(ns, doc_id)
            raise _stale(ns, doc_id, current.version)
    raise Conflict(
        f"Document {doc_id!r} changed {MAX_PATCH_ATTEMPTS} times while this update was applied; "
        "retry.",
        kind="edit-conflict",
    )


def _same_json(a: object, b: object) -> bool:
    """Compare as JSON text, not as Python values: in Python 1 == 1.0 == True."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _gone(ns: Namespace, doc_id: str) -> PreconditionFailed:
    return PreconditionFailed(f"Document {doc_id!r} was deleted while this update was applied.")


def delete_document(ns: Namespace, doc_id: str, *, if_match: str | None) -> None:
    expected = parse_if_match(if_match)
    doc = _load(ns, doc_id)
    if not _matches(expected, doc.version):
        raise _stale(ns, doc_id, doc.version)
    condition = Document.pk == doc.pk
    if expected is not None and expected != "*":
        condition &= Document.version == doc.version
    if _write(Document.delete().where(condition)) != 1:
        current = Document.get_or_none(_in_namespace(ns, doc_id))
        if current is None:
            raise NotFound(f"No document {doc_id!r} in collection {ns.collection!r}.")
        raise _stale(ns, doc_id, current.version)


def query_documents(
    ns: Namespace,
    args: Iterable[tuple[str, str]],
    *,
    secret_key: bytes,
    fallback_keys: tuple[bytes, ...] = (),
) -> dict:
    """Run a filtered, sorted, keyset-paged query in one namespace."""
    spec = query.parse(args, ns.schema)
    scope = query.Scope(ns.tenant, ns.plugin_id, ns.collection, ns.indexes)
    query_id = query.fingerprint(scope, spec)
    after = (
        query.decode_cursor(secret_key, spec.cursor, query_id, fallback_keys)
        if spec.cursor
        else None
    )
    sql, params = query.build(scope, spec, after)
    rows = database.execute_sql(sql, params).fetchall()
    page = rows[: spec.limit]
    items = [render(r[1], r[2], r[3], r[4], json.loads(r[5])) for r in page]
    next_cursor = None
    if len(rows) > spec.limit:
        last = page[-1]
        next_cursor = query.encode_cursor(secret_key, query_id, list(last[6:]), last[0])
    return {"items": items, "next_cursor": next_cursor}


def explain(ns: Namespace, args: Iterable[tuple[str, str]]) -> list[str]:
    """Return the engine's plan for a query, so tests and operators can see which index it uses."""
    spec = query.parse(args, ns.schema)
    scope = query.Scope(ns.tenant, ns.plugin_id, ns.collection, ns.indexes)
    sql, params = query.build(scope, spec, None)
    return dialect.current().plan(database, sql, params)
