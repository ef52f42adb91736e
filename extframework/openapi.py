"""The OpenAPI 3.1 description of the core's HTTP API (auth, registry, storage)."""

from functools import cache

PROBLEM = {"$ref": "#/components/responses/Problem"}
JSON = "application/json"


UNAUTHORIZED = {"$ref": "#/components/responses/Unauthorized"}


def _problems(*statuses: int) -> dict:
    return {str(status): UNAUTHORIZED if status == 401 else PROBLEM for status in statuses}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(schema: dict, media: str = JSON) -> dict:
    return {"required": True, "content": {media: {"schema": schema}}}


COLLECTION = {"name": "collection", "in": "path", "required": True, "schema": {"type": "string"}}
DOC_ID = {"name": "doc_id", "in": "path", "required": True, "schema": {"type": "string"}}
PLUGIN_ID = {"name": "plugin_id", "in": "path", "required": True, "schema": {"type": "string"}}
TENANT = {
    "name": "X-Tenant-ID",
    "in": "header",
    "required": False,
    "description": "Tenant slug; absent means `default`. It must name a tenant the plugin is in.",
    "schema": {"type": "string"},
}
IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": "The document's ETag (its version); a stale one gets 412.",
    "schema": {"type": "string"},
}
PLUGIN_TOKEN = [{"pluginToken": []}]
ENROLMENT_KEY = [{"enrolmentKey": []}]
USER = [{"userJwt": []}, {"session": []}]
USER_OR_PLUGIN = [{"userJwt": []}, {"session": []}, {"pluginToken": []}]


def _lifecycle_action(action: str, summary: str) -> dict:
    return {
        "post": {
            "tags": ["registry"],
            "summary": summary,
            "operationId": f"{action}Plugin",
            "security": USER,
            "parameters": [PLUGIN_ID],
            "requestBody": {
                "required": False,
                "content": {
                    JSON: {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "reason": {"type": "string"},
                                "confirm": {
                                    "type": "string",
                                    "description": "The plugin_id; deregister needs it when a "
                                    "tenant's uninstall policy is purge.",
                                },
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": _json(_ref("PluginSummary"), "The plugin after the transition."),
                **_problems(400, 401, 403, 404, 409),
            },
        }
    }


def _pending_decision(verb: str, summary: str, responses: dict) -> dict:
    return {
        "post": {
            "tags": ["registry"],
            "summary": summary,
            "operationId": f"{verb}PendingUpdate",
            "security": USER,
            "parameters": [
                {
                    "name": "pending_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer"},
                }
            ],
            "requestBody": {
                "required": False,
                "content": {
                    JSON: {
                        "schema": {"type": "object", "properties": {"reason": {"type": "string"}}}
                    }
                },
            },
            "responses": responses,
        }
    }


def _paths() -> dict:
    return {
        "/api/auth/token": {
            "post": {
                "tags": ["auth"],
                "summary": "Exchange email and password for a user JWT",
                "operationId": "issueUserToken",
                "security": [],
                "requestBody": _body(_ref("Credentials")),
                "responses": {
                    "200": _json(_ref("UserToken"), "A bearer token for the API."),
                    **_problems(400, 401, 413),
                    "429": {
                        "description": "Too many failed logins on this account (from this "
                        "address, or from many), or a wrong password from an address that "
                        "failed on many accounts; see docs/identity.md.",
                        "headers": {
                            "Retry-After": {
                                "description": "Seconds to wait before the next try.",
                                "schema": {"type": "integer", "minimum": 1},
                            }
                        },
                        "content": {"application/problem+json": {"schema": _ref("Problem")}},
                    },
                },
            }
        },
        "/api/auth/me": {
            "get": {
                "tags": ["auth"],
                "summary": "Who the caller is",
                "operationId": "whoAmI",
                "security": USER,
                "responses": {"200": _json(_ref("Me"), "The caller."), **_problems(401)},
            }
        },
        "/.well-known/jwks.json": {
            "get": {
                "tags": ["auth"],
                "summary": "Public keys that verify request JWTs",
                "operationId": "jwks",
                "security": [],
                "responses": {"200": _json(_ref("JWKS"), "The key set.")},
            }
        },
        "/api/registry/manifest-schema": {
            "get": {
                "tags": ["registry"],
                "summary": "The manifest's JSON Schema",
                "operationId": "manifestSchema",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "A JSON Schema document.")},
            }
        },
        "/api/registry/plugins": {
            "post": {
                "tags": ["registry"],
                "summary": "Register a plugin with an enrolment key",
                "operationId": "registerPlugin",
                "security": ENROLMENT_KEY,
                "requestBody": _body(_ref("Manifest")),
                "responses": {
                    "201": _json(_ref("Registration"), "Registered; the token is shown once."),
                    **_problems(400, 401, 403, 409, 413, 502),
                },
            },
            "get": {
                "tags": ["registry"],
                "summary": "List plugins (operators)",
                "operationId": "listPlugins",
                "security": USER,
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "plugins": {"type": "array", "items": _ref("PluginSummary")}
                            },
                        },
                        "Every plugin.",
                    ),
                    **_problems(401, 403),
                },
            },
        },
        "/api/registry/plugins/{plugin_id}": {
            "get": {
                "tags": ["registry"],
                "summary": "One plugin (operators, or the plugin itself)",
                "operationId": "getPlugin",
                "security": USER_OR_PLUGIN,
                "parameters": [PLUGIN_ID],
                "responses": {
                    "200": _json(_ref("PluginSummary"), "The plugin."),
                    **_problems(401, 403, 404),
                },
            },
            "put": {
                "tags": ["registry"],
                "summary": "Update the manifest (higher version, plugin token)",
                "operationId": "updatePlugin",
                "security": PLUGIN_TOKEN,
                "parameters": [PLUGIN_ID],
                "requestBody": _body(_ref("Manifest")),
                "responses": {
                    "200": _json(_ref("UpdateResult"), "Applied at once."),
                    "202": _json(
                        _ref("UpdateResult"),
                        "Accepted, not applied yet: a migration runs (`migration`), or the new "
                        "base_url is on another origin and awaits an operator's approval "
                        "(`pending_update`; poll the Location).",
                    ),
                    **_problems(400, 401, 403, 404, 409, 413),
                },
            },
        },
        "/api/registry/plugins/{plugin_id}/pending-update": {
            "get": {
                "tags": ["registry"],
                "summary": "The plugin's update awaiting approval, if any",
                "operationId": "getPendingUpdate",
                "security": USER_OR_PLUGIN,
                "parameters": [PLUGIN_ID],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["plugin_id", "version", "base_url", "pending_update"],
                            "properties": {
                                "plugin_id": {"type": "string"},
                                "version": {"type": "string"},
                                "base_url": {"type": "string"},
                                "pending_update": {
                                    "oneOf": [_ref("PendingUpdate"), {"type": "null"}]
                                },
                            },
                        },
                        "The installed version and base_url; pending_update is null when "
                        "nothing awaits approval.",
                    ),
                    **_problems(401, 403, 404),
                },
            }
        },
        "/api/registry/pending-updates": {
            "get": {
                "tags": ["registry"],
                "summary": "Updates that move a plugin to another origin (operators)",
                "operationId": "listPendingUpdates",
                "security": USER,
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "pending_updates": {
                                    "type": "array",
                                    "items": _ref("PendingUpdate"),
                                }
                            },
                        },
                        "Every pending update, oldest first.",
                    ),
                    **_problems(401, 403),
                },
            }
        },
        "/api/registry/pending-updates/{pending_id}/approve": _pending_decision(
            "approve",
            "Apply a pending update as the plugin's own update would be (operators)",
            {
                "200": _json(_ref("UpdateResult"), "Applied."),
                "202": _json(_ref("UpdateResult"), "Applied; its migration runs."),
                **_problems(400, 401, 403, 404, 409, 502),
            },
        ),
        "/api/registry/pending-updates/{pending_id}/reject": _pending_decision(
            "reject",
            "Discard a pending update; the plugin stays where it is (operators)",
            {
                "200": _json(
                    {"type": "object", "properties": {"rejected": _ref("PendingUpdate")}},
                    "The discarded update.",
                ),
                **_problems(400, 401, 403, 404),
            },
        ),
        "/api/registry/plugins/{plugin_id}/disable": _lifecycle_action("disable", "Disable"),
        "/api/registry/plugins/{plugin_id}/enable": _lifecycle_action("enable", "Re-enable"),
        "/api/registry/plugins/{plugin_id}/deregister": _lifecycle_action(
            "deregister", "Remove a disabled plugin"
        ),
        "/api/registry/plugins/{plugin_id}/rotate-token": {
            "post": {
                "tags": ["registry"],
                "summary": "Replace the plugin token; the old one works for the grace period",
                "description": (
                    "An operator (user JWT or session), or the plugin itself with any live "
                    "token of its own (only its own plugin_id), gets a new token. The replaced "
                    "token keeps working for EXTFW_TOKEN_GRACE_S (default 3600 s) unless "
                    "revoke_now is true, which ends every older token at once. A plugin that "
                    "dies before saving the new token can rotate again with the old one."
                ),
                "operationId": "rotatePluginToken",
                "security": USER_OR_PLUGIN,
                "parameters": [PLUGIN_ID],
                "requestBody": {
                    "required": False,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "revoke_now": {
                                        "type": "boolean",
                                        "default": False,
                                        "description": "End the old tokens now (a leak).",
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(_ref("TokenRotation"), "The new token, shown once."),
                    **_problems(400, 401, 403, 404, 409),
                },
            }
        },
        "/api/registry/plugins/{plugin_id}/tenants": {
            "put": {
                "tags": ["registry"],
                "summary": "Restrict a plugin to some tenants, or open it to all (operators)",
                "operationId": "setPluginTenants",
                "security": USER,
                "parameters": [PLUGIN_ID],
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["tenants"],
                        "properties": {
                            "tenants": {
                                "description": "null: every tenant; a list: only these.",
                                "type": ["array", "null"],
                                "items": {"type": "string"},
                            }
                        },
                    }
                ),
                "responses": {
                    "200": _json(_ref("PluginSummary"), "The plugin with its tenants."),
                    **_problems(400, 401, 403, 404),
                },
            }
        },
        "/api/registry/plugins/{plugin_id}/export": {
            "get": {
                "tags": ["registry"],
                "summary": "Every document of the plugin as JSON lines (operators)",
                "operationId": "exportPlugin",
                "security": USER,
                "parameters": [PLUGIN_ID],
                "responses": {
                    "200": {
                        "description": "One JSON object per line.",
                        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                    },
                    **_problems(401, 403, 404),
                },
            }
        },
        "/api/registry/plugins/{plugin_id}/migration": {
            "get": {
                "tags": ["registry"],
                "summary": "The plugin's latest schema migration and earlier ones (operators)",
                "operationId": "getMigration",
                "security": USER,
                "parameters": [PLUGIN_ID],
                "responses": {
                    "200": _json({"type": "object"}, "State, version, migration, earlier."),
                    **_problems(401, 403, 404),
                },
            }
        },
        "/api/registry/plugins/{plugin_id}/migration/retry": {
            "post": {
                "tags": ["registry"],
                "summary": "Start another attempt of a migrating plugin's migration (operators)",
                "operationId": "retryMigration",
                "security": USER,
                "parameters": [PLUGIN_ID],
                "responses": {
                    "202": _json({"type": "object"}, "The attempt runs in the background."),
                    **_problems(401, 403, 404, 409),
                },
            }
        },
        "/api/registry/plugins/{plugin_id}/versions": {
            "get": {
                "tags": ["registry"],
                "summary": "Every recorded manifest version of the plugin",
                "operationId": "listPluginVersions",
                "security": USER_OR_PLUGIN,
                "parameters": [PLUGIN_ID],
                "responses": {
                    "200": _json({"type": "object"}, "plugin_id and versions, newest first."),
                    **_problems(401, 403, 404),
                },
            }
        },
        "/api/registry/plugins/{plugin_id}/diff": {
            "get": {
                "tags": ["registry"],
                "summary": "The schema diff between two recorded versions",
                "operationId": "diffPluginVersions",
                "security": USER_OR_PLUGIN,
                "parameters": [
                    PLUGIN_ID,
                    {"name": "from", "in": "query", "required": True, "schema": {"type": "string"}},
                    {"name": "to", "in": "query", "required": True, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": _json({"type": "object"}, "plugin_id, from, to, breaking, changes."),
                    **_problems(400, 401, 403, 404),
                },
            }
        },
        "/api/registry/plugins/{plugin_id}/tenants/{tenant}/uninstall-policy": {
            "put": {
                "tags": ["registry"],
                "summary": "Set what deregistration does to a tenant's data (operators)",
                "operationId": "setUninstallPolicy",
                "security": USER,
                "parameters": [
                    PLUGIN_ID,
                    {
                        "name": "tenant",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["policy"],
                        "properties": {"policy": {"enum": ["retain", "archive", "purge"]}},
                    }
                ),
                "responses": {
                    "200": _json({"type": "object"}, "plugin_id and uninstall_policies."),
                    **_problems(400, 401, 403, 404, 409),
                },
            }
        },
        "/api/registry/archives": {
            "get": {
                "tags": ["registry"],
                "summary": "Archives written at deregistration (operators)",
                "operationId": "listArchives",
                "security": USER,
                "parameters": [
                    {
                        "name": "plugin_id",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": _json({"type": "object"}, "archives"),
                    **_problems(401, 403),
                },
            }
        },
        "/api/storage/{collection}": {
            "post": {
                "tags": ["storage"],
                "summary": "Create a document",
                "operationId": "createDocument",
                "security": PLUGIN_TOKEN,
                "parameters": [COLLECTION, TENANT],
                "requestBody": _body({"type": "object"}),
                "responses": {
                    "201": _json(_ref("Document"), "Created; `Location` and `ETag` are set."),
                    **_problems(400, 401, 403, 404, 413, 422, 503),
                },
            },
            "get": {
                "tags": ["storage"],
                "summary": "Query documents",
                "description": (
                    "Filters are query parameters: `field=value` (dotted paths; typed by the "
                    "schema) and `field__gt|gte|lt|lte|ne|in|exists=value`; `sort=field,-other`; "
                    "`limit` (default 50, at most 1000); `cursor` from `next_cursor`."
                ),
                "operationId": "queryDocuments",
                "security": PLUGIN_TOKEN,
                "parameters": [
                    COLLECTION,
                    TENANT,
                    {"name": "sort", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": _json(_ref("DocumentPage"), "One page of matching documents."),
                    **_problems(400, 401, 403, 404, 503),
                },
            },
        },
        "/api/storage/{collection}/{doc_id}": {
            "get": {
                "tags": ["storage"],
                "summary": "Read one document",
                "operationId": "readDocument",
                "security": PLUGIN_TOKEN,
                "parameters": [COLLECTION, DOC_ID, TENANT],
                "responses": {
                    "200": _json(_ref("Document"), "The document; `ETag` is its version."),
                    **_problems(401, 403, 404, 503),
                },
            },
            "patch": {
                "tags": ["storage"],
                "summary": "Change a document with a JSON merge patch",
                "operationId": "patchDocument",
                "security": PLUGIN_TOKEN,
                "parameters": [COLLECTION, DOC_ID, TENANT, IF_MATCH],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/merge-patch+json": {"schema": {"type": "object"}},
                        JSON: {"schema": {"type": "object"}},
                    },
                },
                "responses": {
                    "200": _json(_ref("Document"), "The merged document."),
                    **_problems(400, 401, 403, 404, 412, 413, 422, 503),
                },
            },
            "delete": {
                "tags": ["storage"],
                "summary": "Delete a document",
                "operationId": "deleteDocument",
                "security": PLUGIN_TOKEN,
                "parameters": [COLLECTION, DOC_ID, TENANT, IF_MATCH],
                "responses": {
                    "204": {"description": "Deleted."},
                    **_problems(401, 403, 404, 412, 503),
                },
            },
        },
    }


def _schemas() -> dict:
    string = {"type": "string"}
    return {
        "Problem": {
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": string,
                "title": string,
                "status": {"type": "integer"},
                "detail": string,
                "errors": {"type": "array", "items": {"type": "object"}},
            },
        },
        "Credentials": {
            "type": "object",
            "required": ["email", "password"],
            "properties": {"email": string, "password": string},
        },
        "UserToken": {
            "type": "object",
            "required": ["access_token", "token_type", "expires_in"],
            "properties": {
                "access_token": string,
                "token_type": {"const": "Bearer"},
                "expires_in": {"type": "integer"},
            },
        },
        "Me": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "email": string,
                "name": string,
                "role": {"enum": ["viewer", "member", "admin"]},
                "tenant": string,
                "operator": {"type": "boolean"},
                "authenticated_by": {"enum": ["session", "jwt"]},
            },
        },
        "JWKS": {
            "type": "object",
            "required": ["keys"],
            "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
        },
        "Manifest": {
            "type": "object",
            "description": "A plugin manifest; JSON Schema at /api/registry/manifest-schema.",
            "required": ["plugin_id", "name", "version", "base_url"],
        },
        "Registration": {
            "type": "object",
            "required": ["plugin_id", "plugin_token", "state"],
            "properties": {"plugin_id": string, "plugin_token": string, "state": string},
        },
        "PluginSummary": {
            "type": "object",
            "required": ["plugin_id", "name", "version", "state"],
            "properties": {
                "plugin_id": string,
                "name": string,
                "version": string,
                "state": string,
                "tokens": {"type": "array", "items": _ref("PluginToken")},
            },
        },
        "PluginToken": {
            "type": "object",
            "description": "A live plugin token, never its secret.",
            "required": ["fingerprint", "current", "created_at", "expires_at", "last_used_at"],
            "properties": {
                "fingerprint": {
                    "type": "string",
                    "description": "The first 12 hex digits of the token's SHA-256.",
                },
                "current": {"type": "boolean"},
                "created_at": {"type": "string", "format": "date-time"},
                "created_by": string,
                "expires_at": {
                    "type": ["string", "null"],
                    "format": "date-time",
                    "description": "null for the current token; else when its grace ends.",
                },
                "last_used_at": {
                    "type": ["string", "null"],
                    "format": "date-time",
                    "description": "Recorded at most once a minute.",
                },
            },
        },
        "TokenRotation": {
            "type": "object",
            "required": ["plugin_id", "plugin_token", "old_token_expires_at", "tokens"],
            "properties": {
                "plugin_id": string,
                "plugin_token": string,
                "old_token_expires_at": {
                    "type": ["string", "null"],
                    "format": "date-time",
                    "description": "When the replaced token stops working; null: it already has.",
                },
                "tokens": {"type": "array", "items": _ref("PluginToken")},
            },
        },
        "UpdateResult": {
            "type": "object",
            "required": ["plugin_id", "version", "state"],
            "properties": {
                "plugin_id": string,
                "version": string,
                "previous_version": string,
                "state": string,
                "changes": {"type": "array", "items": _ref("SchemaChange")},
                "detail": string,
                "pending_update": _ref("PendingUpdate"),
                "migration": {"type": "object"},
            },
        },
        "PendingUpdate": {
            "type": "object",
            "description": "An update moving base_url to another origin, awaiting an operator.",
            "required": ["id", "plugin_id", "version", "base_url", "origin", "previous_origin"],
            "properties": {
                "id": {"type": "integer"},
                "plugin_id": string,
                "version": string,
                "previous_version": string,
                "base_url": string,
                "previous_base_url": string,
                "origin": string,
                "previous_origin": string,
                "breaking": {"type": "boolean"},
                "changes": {"type": "array", "items": _ref("SchemaChange")},
                "requested_by": string,
                "requested_at": string,
            },
        },
        "SchemaChange": {
            "type": "object",
            "required": ["collection", "path", "kind", "breaking"],
            "properties": {
                "collection": string,
                "path": string,
                "kind": string,
                "breaking": {"type": "boolean"},
                "old": {},
                "new": {},
            },
        },
        "Document": {
            "type": "object",
            "required": ["id", "version", "created_at", "updated_at", "data"],
            "properties": {
                "id": string,
                "version": {"type": "integer"},
                "created_at": string,
                "updated_at": string,
                "data": {"type": "object"},
            },
        },
        "DocumentPage": {
            "type": "object",
            "required": ["items", "next_cursor"],
            "properties": {
                "items": {"type": "array", "items": _ref("Document")},
                "next_cursor": {"type": ["string", "null"]},
            },
        },
    }


@cache
def openapi_document() -> dict:
    """Return the API description; the server URL is left relative so it fits any BASE_URL."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "extframework core API",
            "version": "1",
            "description": "The core's identity, registry and storage APIs; errors are RFC 9457.",
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": "auth"}, {"name": "registry"}, {"name": "storage"}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": {
                "Problem": {
                    "description": "An error, as RFC 9457 problem details.",
                    "content": {"application/problem+json": {"schema": _ref("Problem")}},
                },
                "Unauthorized": {
                    "description": "No credentials, or refused ones (RFC 6750).",
                    "headers": {
                        "WWW-Authenticate": {
                            "description": 'Bearer realm="extframework", error="invalid_request"'
                            ' or error="invalid_token", error_description="..."',
                            "required": True,
                            "schema": {"type": "string", "pattern": "^Bearer "},
                        }
                    },
                    "content": {"application/problem+json": {"schema": _ref("Problem")}},
                },
            },
            "securitySchemes": {
                "userJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "session": {"type": "apiKey", "in": "cookie", "name": "session"},
                "pluginToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "efpt_… plugin token",
                },
                "enrolmentKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "efek_… enrolment key",
                },
            },
        },
    }
