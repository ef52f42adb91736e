"""The package manager's operator-only paths: pending updates, tenants, uninstall policies,
migrations and archives; and the helpers every registry operation is built with."""

from extframework.blueprints.registry import POLICY, REASON, TENANTS
from extframework.models import UNINSTALL_POLICIES
from extframework.openapi.common import (
    PLUGIN_ID,
    ROW_ID,
    STRING,
    TENANT_SLUG,
    USER,
    USER_OR_PLUGIN,
    answer,
    common_errors,
    fields_body,
    path_param,
    problem,
    ref,
)

PENDING_ID = path_param("pending_id", "The id the pending-updates list gives.", ROW_ID)
TENANT = path_param("tenant", "A tenant's slug.", TENANT_SLUG)
REASON_SCHEMA = {"type": "string", "description": "Recorded with the action (200 characters)."}
READ_403 = problem(403, "forbidden", note="Not an operator, or another plugin's token.")
OPERATOR_403 = problem(403, "forbidden", note="Only operators may do this.")
META_SCHEMA = {
    "type": "object",
    "description": "A JSON Schema (Draft 2020-12) document.",
    "required": ["$schema", "$id", "type", "properties"],
    "properties": {"$schema": STRING, "$id": STRING, "type": {"const": "object"}},
    "additionalProperties": True,
}
PLUGIN_404 = problem(404, "not-found", note="No such plugin.")


def op(operation_id: str, summary: str, security: list, responses: dict, **rest) -> dict:
    return {
        "tags": ["registry"],
        "summary": summary,
        "operationId": operation_id,
        "security": security,
        **rest,
        "responses": responses,
    }


def read(operation_id: str, summary: str, schema: str, description: str, **rest) -> dict:
    """A GET on one plugin that an operator, or the plugin itself, may make."""
    responses = {
        "200": answer(description, ref(schema)),
        **common_errors(),
        "403": READ_403,
        "404": PLUGIN_404,
    }
    parameters = [PLUGIN_ID, *rest.pop("parameters", [])]
    return {
        "get": op(operation_id, summary, USER_OR_PLUGIN, responses, parameters=parameters, **rest)
    }


def operator(operation_id: str, summary: str, responses: dict, *, body=None, **rest) -> dict:
    result = {
        **common_errors(body=body is not None),
        "403": OPERATOR_403,
        **responses,
    }
    if body is not None:
        rest["requestBody"] = body
    return op(operation_id, summary, USER, result, **rest)


def _pending_decision(verb: str, summary: str, responses: dict) -> dict:
    body = fields_body(REASON, {"reason": REASON_SCHEMA})
    responses = {"404": problem(404, "not-found", note="No such pending update."), **responses}
    return {
        "post": operator(
            f"{verb}PendingUpdate", summary, responses, body=body, parameters=[PENDING_ID]
        )
    }


def _policies_and_tenants() -> dict:
    tenants = fields_body(
        TENANTS,
        {
            "tenants": {
                "type": ["array", "null"],
                "items": TENANT_SLUG,
                "description": "null: every tenant; a list: only these (each must exist).",
            }
        },
    )
    policy = fields_body(POLICY, {"policy": {"enum": list(UNINSTALL_POLICIES)}})
    return {
        "/api/registry/plugins/{plugin_id}/tenants": {
            "put": operator(
                "setPluginTenants",
                "Restrict a plugin to some tenants, or open it to all",
                {
                    "200": answer("The plugin with its tenants.", ref("PluginSummary")),
                    "404": PLUGIN_404,
                },
                body=tenants,
                parameters=[PLUGIN_ID],
            )
        },
        "/api/registry/plugins/{plugin_id}/tenants/{tenant}/uninstall-policy": {
            "put": operator(
                "setUninstallPolicy",
                "Set what deregistration does to a tenant's data (an operator, or that "
                "tenant's admin: docs/identity.md, Roles)",
                {
                    "200": answer(
                        "Every tenant's policy (a tenant's admin: their tenant's only).",
                        ref("UninstallPolicies"),
                    ),
                    "403": problem(403, "forbidden", note="Neither an operator nor an admin."),
                    "404": problem(
                        404,
                        "not-found",
                        note="No such plugin or tenant (for a tenant's admin: another "
                        "tenant, or a plugin not available to theirs).",
                    ),
                    "409": problem(
                        409,
                        "conflict",
                        note="The plugin is deregistered and this "
                        "tenant's data was already decided (docs/registry.md).",
                    ),
                },
                body=policy,
                parameters=[PLUGIN_ID, TENANT],
            )
        },
    }


def paths() -> dict:
    plugin = "/api/registry/plugins/{plugin_id}"
    return {
        "/api/registry/pending-updates": {
            "get": operator(
                "listPendingUpdates",
                "Updates that move a plugin to another origin",
                {"200": answer("Every pending update, oldest first.", ref("PendingUpdateList"))},
            )
        },
        "/api/registry/pending-updates/{pending_id}/approve": _pending_decision(
            "approve",
            "Apply a pending update as the plugin's own update would be",
            {
                "200": answer("Applied.", ref("UpdateResult")),
                "202": answer(
                    "Applied; its migration runs.", ref("UpdateResult"), headers=("Location",)
                ),
                "409": problem(409, note="The update no longer applies to the installed version."),
                "502": problem(502, "bad-gateway"),
            },
        ),
        "/api/registry/pending-updates/{pending_id}/reject": _pending_decision(
            "reject",
            "Discard a pending update; the plugin stays where it is",
            {"200": answer("The discarded update.", ref("RejectedUpdate"))},
        ),
        **_policies_and_tenants(),
        plugin + "/migration": {
            "get": operator(
                "getMigration",
                "The plugin's latest migration and earlier ones",
                {
                    "200": answer("State, version, migration, earlier.", ref("MigrationStatus")),
                    "404": PLUGIN_404,
                },
                parameters=[PLUGIN_ID],
            )
        },
        plugin + "/migration/retry": {
            "post": operator(
                "retryMigration",
                "Start another attempt of a migrating plugin's migration",
                {
                    "202": answer(
                        "The attempt runs in the background; poll the Location.",
                        ref("MigrationStatus"),
                        headers=("Location",),
                    ),
                    "404": PLUGIN_404,
                    "409": problem(
                        409,
                        "wrong-state",
                        "conflict",
                        note="Not migrating, nothing to retry, or an attempt is running.",
                    ),
                },
                body=fields_body({}, {}),
                parameters=[PLUGIN_ID],
            )
        },
        "/api/registry/archives": {
            "get": operator(
                "listArchives",
                "Archives written at deregistration, newest first",
                {"200": answer("The archives.", ref("ArchiveList"))},
                parameters=[
                    {
                        "name": "plugin_id",
                        "in": "query",
                        "required": False,
                        "schema": STRING,
                        "description": "Only this plugin's archives.",
                    }
                ],
            )
        },
    }
