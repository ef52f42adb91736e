"""Many writes in one call: ``POST /api/storage/{collection}/_batch`` (SPEC §5, issue 14).

A batch is checked in three steps, and the write lock is held only for the last:

1. its shape (400 with a pointer per fault; more than ``MAX_OPERATIONS`` is 413 before any
   operation is looked at), and every created document against the schema (422);
2. a plan: the documents it patches or deletes are read in one query, and every operation is
   applied in order to that snapshot (merge patch, validation of the merged result, If-Match,
   a no-op patch keeping its version), which gives each operation its result;
3. under one write transaction, the versions of those documents are read again; if none
   changed since the snapshot the plan is written as it stands, otherwise step 2 runs again
   on what is now stored. Either the whole plan is written or none of it.

A failing operation fails the batch with its own error (422, 412 or 404) and its ``index``.
"""

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from extframework import dialect
from extframework.db import database
from extframework.errors import (
    BadRequest,
    DomainError,
    NotFound,
    PreconditionFailed,
    TooLarge,
    field_error,
)
from extframework.models import utcnow
from extframework.services import storage
from extframework.services.storage import Namespace

MAX_OPERATIONS = 1000
OPERATION_MEMBERS = {
    "create": ({"op", "data"}, {"op", "data"}),
    "patch": ({"op", "id", "data"}, {"op", "id", "data", "if_match"}),
    "delete": ({"op", "id"}, {"op", "id", "if_match"}),
}  # op: (required members, allowed members)


@dataclass(frozen=True)
class Operation:
    op: str
    doc_id: str | None
    data: dict | None
    if_match: set[int] | str | None


@dataclass
class _Doc:
    """A document as the plan sees it: its row, and what the batch has done to it so far."""

    pk: int
    version: int
    data: object
    deleted: bool = False
    changed: bool = False


@dataclass
class Plan:
    results: list[dict] = field(default_factory=list)
    inserts: list[tuple[str, str]] = field(default_factory=list)  # (doc_id, JSON text)
    docs: dict[str, _Doc] = field(default_factory=dict)


# --- step 1: the body ---------------------------------------------------------------


def parse(body: dict) -> list[Operation]:
    """Read a batch body into operations; 413 past MAX_OPERATIONS, 400 for any other fault."""
    unknown = sorted(set(body) - {"operations"})
    operations = body.get("operations")
    if not isinstance(operations, list):
        what = "is missing" if "operations" not in body else "must be an array"
        raise _shape([field_error(["operations"], "type", f"{what}: send an array of operations")])
    if len(operations) > MAX_OPERATIONS:
        raise TooLarge(
            f"A batch takes at most {MAX_OPERATIONS} operations; this one has "
            f"{len(operations)}. Split it into several batches; nothing was applied.",
            kind="too-large",
        )
    errors = [field_error([name], "additionalProperties", "is not allowed") for name in unknown]
    parsed = []
    for index, raw in enumerate(operations):
        operation, faults = _operation(index, raw)
        errors.extend(faults)
        parsed.append(operation)
    if errors:
        raise _shape(errors)
    return parsed


def _shape(errors: list[dict]) -> BadRequest:
    return BadRequest(
        'The body must be {"operations": [...]}, each operation an object with "op" '
        '("create", "patch" or "delete") and the members that op takes; '
        "'errors' names each fault. Nothing was applied.",
        errors=errors,
        kind="invalid-body",
    )


def _operation(index: int, raw: object) -> tuple[Operation | None, list[dict]]:
    at = ["operations", index]
    if not isinstance(raw, dict):
        return None, [field_error(at, "type", "must be an object")]
    op = raw.get("op")
    if op not in OPERATION_MEMBERS:
        return None, [field_error([*at, "op"], "enum", 'must be "create", "patch" or "delete"')]
    required, allowed = OPERATION_MEMBERS[op]
    errors = [
        field_error([*at, name], "required", f"is required for {op!r}")
        for name in sorted(required - set(raw))
    ]
    errors += [
        field_error([*at, name], "additionalProperties", f"is not a member of {op!r}")
        for name in sorted(set(raw) - allowed)
    ]
    if "id" in raw and "id" in allowed and not isinstance(raw["id"], str):
        errors.append(field_error([*at, "id"], "type", "must be a string"))
    if "data" in raw and "data" in allowed and not isinstance(raw["data"], dict):
        errors.append(field_error([*at, "data"], "type", "must be an object"))
    if_match = raw.get("if_match")
    bad_type = isinstance(if_match, bool) or not isinstance(if_match, str | int)
    if "if_match" in raw and "if_match" in allowed and bad_type:
        errors.append(
            field_error([*at, "if_match"], "type", 'must be a version: a string ("3") or integer')
        )
    if errors:
        return None, errors
    expected = {if_match} if isinstance(if_match, int) else storage.parse_if_match(if_match)
    return Operation(op, raw.get("id"), raw.get("data"), expected), []


def check_creates(ns: Namespace, operations: list[Operation]) -> dict[int, str]:
    """Validate every created document against the schema; return their JSON texts by index."""
    texts = {}
    for index, operation in enumerate(operations):
        if operation.op == "create":
            texts[index] = _valid_text(ns, index, operation.data)
    return texts


def _valid_text(ns: Namespace, index: int, data: dict) -> str:
    try:
        text = storage._dump(data)
        storage.validate(ns, data)
    except DomainError as error:
        raise _at(error, index) from None
    return text


def _at(error: DomainError, index: int) -> DomainError:
    """Say which operation failed, with field pointers relative to the whole batch body."""
    prefix = f"/operations/{index}/data"
    if error.errors:
        error.errors = [{**e, "pointer": prefix + e["pointer"]} for e in error.errors]
    error.detail = f"Operation {index} failed, so none was applied: {error.detail}"
    error.extra = {**error.extra, "index": index}
    error.headers.pop("ETag", None)  # the batch has no one entity tag
    return error


# --- step 2: the plan ---------------------------------------------------------------


def _snapshot(ns: Namespace, doc_ids: set[str]) -> dict[str, tuple]:
    """Read the named documents of the namespace: doc_id -> (pk, version, JSON text)."""
    rows = {}
    lock = dialect.current().for_update() if database.in_transaction() else ""
    ids = sorted(i for i in doc_ids if "\x00" not in i)  # none exists (ids are hex)
    for start in range(0, len(ids), 500):  # under SQLite's bound-parameter limit
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for doc_id, pk, version, text in database.execute_sql(
            "SELECT doc_id, pk, version, data FROM document WHERE tenant = ? AND plugin_id = ? "
            f"AND collection = ? AND doc_id IN ({marks}){lock}",
            [ns.tenant, ns.plugin_id, ns.collection, *chunk],
        ):
            rows[doc_id] = (pk, version, text)
    return rows


def plan(
    ns: Namespace, operations: list[Operation], texts: dict[int, str], rows: dict[str, tuple]
) -> Plan:
    """Apply the operations in order to the snapshot ``rows``; raise the first one's error."""
    result = Plan()
    for doc_id, (pk, version, text) in rows.items():
        result.docs[doc_id] = _Doc(pk, version, json.loads(text))
    for index, operation in enumerate(operations):
        if operation.op == "create":
            doc_id = uuid.uuid4().hex
            result.inserts.append((doc_id, texts[index]))
            result.results.append({"id": doc_id, "version": 1})
            continue
        doc = _current(ns, result, operation, index)
        if operation.op == "delete":
            doc.deleted = True
            result.results.append({"deleted": operation.doc_id})
            continue
        merged = storage.merge_patch(doc.data, operation.data)
        _valid_text(ns, index, merged)
        if not storage._same_json(merged, doc.data):
            doc.data, doc.version, doc.changed = merged, doc.version + 1, True
        result.results.append({"id": operation.doc_id, "version": doc.version})
    return result


def _current(ns: Namespace, result: Plan, operation: Operation, index: int) -> _Doc:
    doc = result.docs.get(operation.doc_id)
    if doc is None or doc.deleted:
        earlier = " (an earlier operation of this batch deleted it)" if doc else ""
        raise _at(
            NotFound(f"No document {operation.doc_id!r} in collection {ns.collection!r}{earlier}."),
            index,
        )
    if not storage._matches(operation.if_match, doc.version):
        raise _at(
            PreconditionFailed(
                f"Document {operation.doc_id!r} is at version {doc.version}, not the one "
                "if_match names; read it again and retry.",
                current_version=doc.version,
            ),
            index,
        )
    return doc


# --- step 3: the write --------------------------------------------------------------


def run(ns: Namespace, body: dict) -> list[dict]:
    """Validate and apply a batch all-or-nothing; return one result per operation, in order."""
    operations = parse(body)
    if not operations:
        return []
    texts = check_creates(ns, operations)
    doc_ids = {o.doc_id for o in operations if o.doc_id is not None}
    rows = _snapshot(ns, doc_ids) if doc_ids else {}
    planned = plan(ns, operations, texts, rows)
    with storage.document_write("A document"):
        if doc_ids:
            now_rows = _snapshot(ns, doc_ids)
            if _versions(now_rows) != _versions(rows):
                planned = plan(ns, operations, texts, now_rows)  # changed meanwhile
        _apply(ns, planned, utcnow())
    return planned.results


def _versions(rows: dict[str, tuple]) -> dict[str, tuple[int, int]]:
    return {doc_id: (pk, version) for doc_id, (pk, version, _) in rows.items()}


def _apply(ns: Namespace, planned: Plan, now: datetime) -> None:
    stamp = now.isoformat(" ")  # the text Peewee's DateTimeField stores
    engine = dialect.current()
    if planned.inserts:
        database.cursor().executemany(
            engine.sql(
                "INSERT INTO document (tenant, plugin_id, collection, doc_id, version, "
                f"created_at, updated_at, data) VALUES (?, ?, ?, ?, 1, ?, ?, {engine.json_param()})"
            ),
            [
                (ns.tenant, ns.plugin_id, ns.collection, doc_id, stamp, stamp, text)
                for doc_id, text in planned.inserts
            ],
        )
    deleted = [(d.pk,) for d in planned.docs.values() if d.deleted]
    if deleted:
        database.cursor().executemany(engine.sql("DELETE FROM document WHERE pk = ?"), deleted)
    updated = [
        (storage._dump(d.data), d.version, stamp, d.pk)
        for d in planned.docs.values()
        if d.changed and not d.deleted
    ]
    if updated:
        database.cursor().executemany(
            engine.sql(
                f"UPDATE document SET data = {engine.json_param()}, version = ?, updated_at = ? "
                "WHERE pk = ?"
            ),
            updated,
        )
