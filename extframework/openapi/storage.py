"""The filesystem's paths (blueprints/storage.py): documents, queries, and the export."""

from extframework.openapi.common import (
    ANY_OBJECT,
    JSON,
    PLUGIN_ID,
    PLUGIN_TOKEN,
    TENANT_SLUG,
    USER,
    answer,
    array,
    common_errors,
    error,
    obj,
    path_param,
    problem,
    ref,
)
from extframework.services.batch import MAX_OPERATIONS
from extframework.services.query import DEFAULT_LIMIT, MAX_LIMIT

COLLECTION = path_param(
    "collection",
    "A collection the plugin's manifest declares (any other name is 404).",
    {"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "maxLength": 64},
)
FIELD = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
SORT_PATTERN = rf"^\s*[-+]?{FIELD}\s*(,\s*[-+]?{FIELD}\s*)*$"
DOC_ID = path_param(
    "doc_id",
    "The document's id (a core-made id never starts with `_`: those URLs name collection "
    "operations such as `_batch`).",
    {"type": "string", "pattern": "^[^_/]"},
)
TENANT = {
    "name": "X-Tenant-ID",
    "in": "header",
    "required": False,
    "description": "Tenant slug; absent means `default`. It must name a tenant the plugin is "
    "installed in (else 403); an empty one (or only spaces) is 400.",
    "schema": TENANT_SLUG,
}
IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": "The document's ETag (its version, quoted), a list of them, or `*`; a "
    "version that is no longer current gets 412.",
    "schema": {"type": "string"},
}
DATA = {**ANY_OBJECT, "description": "The document's data, valid against the collection's schema."}

# Every storage call: an empty X-Tenant-ID is 400; its state or tenant can close storage (403);
# an undeclared collection is 404; a migrating plugin's storage is frozen (503).
STORAGE_403 = problem(403, "storage-closed", "not-installed")
STORAGE_503 = problem(503, "unavailable", "namespace-frozen")


def _errors(*statuses: int, body: bool = False) -> dict:
    responses = common_errors(body=body)
    responses.update({"403": STORAGE_403, "503": STORAGE_503})
    responses["400"] = problem(
        400,
        *(["invalid-body", "bad-request"] if body else ["bad-request"]),
        note="An empty X-Tenant-ID is refused too.",
    )
    for status in statuses:
        responses[str(status)] = error(status)
    return responses


def _document_404() -> dict:
    return problem(404, "unknown-collection", "not-found", note="Or no such document.")


def _operation(operation_id: str, summary: str, parameters: list, **rest) -> dict:
    return {
        "tags": ["storage"],
        "summary": summary,
        "operationId": operation_id,
        "security": PLUGIN_TOKEN,
        "parameters": parameters,
        **rest,
    }


def paths() -> dict:
    return {**_collection_paths(), **_batch_path(), **_document_paths(), **_export_path()}


def _collection_paths() -> dict:
    query_params = [
        {
            "name": "sort",
            "in": "query",
            "schema": {"type": "string", "pattern": SORT_PATTERN},
            "description": "Fields to sort by, comma-separated; `-field` sorts descending. Each "
            "must be a scalar field the collection's schema declares, else 400.",
        },
        {
            "name": "limit",
            "in": "query",
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_LIMIT,
                "default": DEFAULT_LIMIT,
            },
        },
        {
            "name": "cursor",
            "in": "query",
            "schema": {"type": "string", "minLength": 1},
            "description": "`next_cursor` of the previous page, for the same query; any other "
            "value is 400.",
        },
    ]
    created = answer("Created.", ref("Document"), headers=("ETag", "Location"))
    created["links"] = {
        verb: {
            "operationId": f"{verb}Document",
            "parameters": {
                "collection": "$request.path.collection",
                "doc_id": "$response.body#/id",
            },
        }
        for verb in ("read", "patch", "delete")
    }
    return {
        "/api/storage/{collection}": {
            "post": _operation(
                "createDocument",
                "Create a document",
                [COLLECTION, TENANT],
                requestBody={"required": True, "content": {JSON: {"schema": DATA}}},
                responses={
                    "201": created,
                    **_errors(422, body=True),
                    "404": problem(404, "unknown-collection"),
                },
            ),
            "get": _operation(
                "queryDocuments",
                "Query documents",
                [COLLECTION, TENANT, *query_params],
                description=(
                    "Filters are further query parameters: `field=value` (dotted paths; typed "
                    "by the schema) and `field__gt|gte|lt|lte|ne|in|exists=value`. A filter, "
                    "sort, limit or cursor that cannot be used is 400 `invalid-query` with "
                    "`parameter` naming it."
                ),
                responses={
                    "200": answer("One page of matching documents.", ref("DocumentPage")),
                    **_errors(),
                    "400": problem(400, "invalid-query", "bad-request"),
                    "404": problem(404, "unknown-collection"),
                },
            ),
        },
    }


def _batch_path() -> dict:
    return {
        "/api/storage/{collection}/_batch": {
            "post": _operation(
                "batchDocuments",
                f"Create, patch and delete up to {MAX_OPERATIONS} documents, all or nothing",
                [COLLECTION, TENANT],
                description=(
                    "The operations apply in order, in one transaction; each gets one result. "
                    "If any fails, none is applied and the answer is the first failing "
                    "operation's problem (404, 412 or 422) with `index`; field pointers are "
                    "relative to the body (`/operations/3/data/title`). A malformed body is "
                    f"400 with a pointer per fault; more than {MAX_OPERATIONS} operations is "
                    "413 before any is looked at. An empty list answers no results."
                ),
                requestBody={"required": True, "content": {JSON: {"schema": ref("Batch")}}},
                responses={
                    "200": answer("One result per operation, in order.", ref("BatchResults")),
                    **_errors(412, 422, body=True),
                    "404": problem(
                        404,
                        "unknown-collection",
                        "not-found",
                        note="Or an operation names no document of this namespace ('index').",
                    ),
                    "413": problem(
                        413,
                        "too-large",
                        note=f"Or the batch has more than {MAX_OPERATIONS} operations.",
                    ),
                },
            )
        }
    }


def _batch_schemas() -> dict:
    doc_id = {"type": "string", "description": "A document id of this namespace."}
    if_match = {
        "type": ["string", "integer"],
        "description": 'The version the document must be at (`3`, `"3"`, a comma-separated '
        "list, or `*`); another is 412.",
    }
    create = obj({"op": {"const": "create"}, "data": DATA})
    patch = obj(
        {"op": {"const": "patch"}, "id": doc_id, "data": DATA, "if_match": if_match},
        required=["op", "id", "data"],
    )
    delete = obj(
        {"op": {"const": "delete"}, "id": doc_id, "if_match": if_match}, required=["op", "id"]
    )
    written = obj({"id": {"type": "string"}, "version": {"type": "integer", "minimum": 1}})
    deleted = obj({"deleted": {"type": "string"}})
    return {
        "Batch": obj(
            {"operations": array({"oneOf": [create, patch, delete]}, maxItems=MAX_OPERATIONS)}
        ),
        "BatchResults": obj({"results": array({"oneOf": [written, deleted]})}),
    }


def _document_paths() -> dict:
    return {
        "/api/storage/{collection}/{doc_id}": {
            "get": _operation(
                "readDocument",
                "Read one document",
                [COLLECTION, DOC_ID, TENANT],
                responses={
                    "200": answer("The document.", ref("Document"), headers=("ETag",)),
                    **_errors(),
                    "404": _document_404(),
                },
            ),
            "patch": _operation(
                "patchDocument",
                "Change a document with a JSON merge patch (RFC 7396)",
                [COLLECTION, DOC_ID, TENANT, IF_MATCH],
                description="The merged result is validated; a patch that changes nothing "
                "keeps the version.",
                requestBody={
                    "required": True,
                    "content": {
                        "application/merge-patch+json": {"schema": DATA},
                        JSON: {"schema": DATA},
                    },
                },
                responses={
                    "200": answer("The merged document.", ref("Document"), headers=("ETag",)),
                    **_errors(409, 412, 422, body=True),
                    "404": _document_404(),
                    "409": problem(409, "edit-conflict"),
                },
            ),
            "delete": _operation(
                "deleteDocument",
                "Delete a document",
                [COLLECTION, DOC_ID, TENANT, IF_MATCH],
                responses={
                    "204": answer("Deleted."),
                    **_errors(412),
                    "404": _document_404(),
                },
            ),
        },
    }


def _export_answer() -> dict:
    response = answer(
        "One ExportLine per line, by tenant, collection and creation.",
        {"type": "string"},
        media="application/x-ndjson",
    )
    # OpenAPI 3.1 cannot say what each line of a stream is; this extension does.
    response["content"]["application/x-ndjson"]["x-line-schema"] = ref("ExportLine")
    return response


def _export_path() -> dict:
    return {
        "/api/registry/plugins/{plugin_id}/export": {
            "get": {
                "tags": ["storage"],
                "summary": "Every document of the plugin as JSON lines (operators)",
                "operationId": "exportPlugin",
                "security": USER,
                "parameters": [PLUGIN_ID],
                "responses": {
                    "200": _export_answer(),
                    **common_errors(),
                    "403": problem(403, "forbidden"),
                    "404": problem(404, "not-found"),
                },
            }
        },
    }


def schemas() -> dict:
    stamp = {"type": "string", "format": "date-time"}
    document = {
        "id": {"type": "string"},
        "version": {"type": "integer", "minimum": 1},
        "created_at": stamp,
        "updated_at": stamp,
        "data": DATA,
    }
    return {
        "Document": obj(document),
        "DocumentPage": obj(
            {
                "items": array(ref("Document")),
                "next_cursor": {
                    "type": ["string", "null"],
                    "description": "null on the last page.",
                },
            }
        ),
        "ExportLine": obj(
            {"tenant": {"type": "string"}, "collection": {"type": "string"}, **document}
        ),
        **_batch_schemas(),
    }
