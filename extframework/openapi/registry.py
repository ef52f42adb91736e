"""The package manager's paths (blueprints/registry.py): registration, updates, lifecycle.

The operator-only paths are in ``registry_operator``; the answers' schemas in
``registry_schemas``.
"""

from extframework.blueprints.registry import STATE_CHANGE
from extframework.openapi import registry_operator
from extframework.openapi.common import (
    ENROLMENT_KEY,
    PLUGIN_ID,
    PLUGIN_TOKEN,
    USER_OR_PLUGIN,
    answer,
    answer_cached,
    common_errors,
    fields_body,
    json_body,
    problem,
    ref,
)
from extframework.openapi.registry_operator import (
    META_SCHEMA,
    OPERATOR_403,
    PLUGIN_404,
    READ_403,
    REASON_SCHEMA,
    op,
    operator,
    read,
)
from extframework.services.manifest import meta_schema


def _lifecycle(verb: str, summary: str) -> dict:
    body = fields_body(
        STATE_CHANGE,
        {
            "reason": REASON_SCHEMA,
            "confirm": {
                "type": ["string", "null"],
                "description": "The plugin_id; deregister needs it when a tenant whose "
                "uninstall policy is purge holds data.",
            },
        },
    )
    conflict = problem(
        409, "wrong-state", "conflict", note="'allowed_actions' lists the verbs its state allows."
    )
    responses = {
        "200": answer("The plugin after the transition.", ref("PluginAfterVerb")),
        "404": PLUGIN_404,
        "409": conflict,
    }
    if verb == "deregister":
        responses["400"] = problem(400, "invalid-body", "bad-request", "confirmation-required")
    return {
        "post": operator(f"{verb}Plugin", summary, responses, body=body, parameters=[PLUGIN_ID])
    }


def _registration() -> dict:
    manifest_400 = problem(
        400,
        "invalid-body",
        "invalid-manifest",
        "bad-request",
        note="'errors' lists each failing field of the manifest.",
    )
    return {
        "post": op(
            "registerPlugin",
            "Register a plugin with an enrolment key",
            ENROLMENT_KEY,
            {
                "201": answer(
                    "Registered; the token is shown once.",
                    ref("Registration"),
                    headers=("Location",),
                ),
                **common_errors(body=True),
                "400": manifest_400,
                "403": problem(403, "forbidden", note="The key is for another plugin_id."),
                "409": problem(
                    409,
                    "plugin-id-taken",
                    "data-retained",
                    "breaking-change",
                    "version-manifest-changed",
                    "conflict",
                ),
                "502": problem(502, "bad-gateway"),
            },
            requestBody=json_body(ref("Manifest")),
        ),
        "get": op(
            "listPlugins",
            "List plugins (operators; a plugin token lists only its own)",
            USER_OR_PLUGIN,
            {
                "200": answer("Every plugin, without document counts.", ref("PluginList")),
                **common_errors(),
                "403": OPERATOR_403,
            },
        ),
    }


def _one_plugin() -> dict:
    return {
        **read(
            "getPlugin",
            "One plugin (operators, or the plugin itself)",
            "PluginSummary",
            "The plugin.",
        ),
        "put": op(
            "updatePlugin",
            "Update the manifest (a higher version, with the plugin token)",
            PLUGIN_TOKEN,
            {
                "200": answer("Applied at once.", ref("UpdateResult")),
                "202": answer(
                    "Accepted, not applied yet: a migration runs (`migration`), or the new "
                    "base_url is on another origin and awaits an operator's approval "
                    "(`pending_update`). Poll the Location.",
                    ref("UpdateResult"),
                    headers=("Location",),
                ),
                **common_errors(body=True),
                "400": problem(400, "invalid-body", "invalid-manifest", "bad-request"),
                "403": problem(403, "forbidden", note="Another plugin's token."),
                "409": problem(
                    409,
                    "version-not-higher",
                    "breaking-change",
                    "version-manifest-changed",
                    "wrong-state",
                    "conflict",
                    note="A breaking change lists 'diff'.",
                ),
                "502": problem(502, "bad-gateway", note="A moved base_url failed its probe."),
            },
            parameters=[PLUGIN_ID],
            requestBody=json_body(ref("Manifest")),
        ),
    }


def _rotation() -> dict:
    body = json_body(
        {
            "type": "object",
            "properties": {
                "revoke_now": {
                    "type": "boolean",
                    "default": False,
                    "description": "End the old tokens now (a leak).",
                }
            },
            "additionalProperties": False,
        },
        required=False,
    )
    responses = {
        "200": answer("The new token, shown once.", ref("TokenRotation")),
        **common_errors(body=True),
        "403": READ_403,
        "404": PLUGIN_404,
        "409": problem(409, "wrong-state", "conflict", note="A deregistered plugin."),
    }
    return {
        "post": op(
            "rotatePluginToken",
            "Replace the plugin token; the old one works for the grace period",
            USER_OR_PLUGIN,
            responses,
            parameters=[PLUGIN_ID],
            requestBody=body,
            description="An operator, or the plugin itself with any live token of its own, gets a "
            "new token. The replaced token keeps working for EXTFW_TOKEN_GRACE_S (default 3600 s) "
            "unless revoke_now is true. An empty body is a rotation with the grace period.",
        )
    }


OPENAPI_DOCUMENT = {
    "type": "object",
    "required": ["openapi", "info", "paths", "components"],
    "properties": {"openapi": {"const": "3.1.0"}},
    "additionalProperties": True,
}


def paths() -> dict:
    plugin = "/api/registry/plugins/{plugin_id}"
    return {
        "/api/registry/manifest-schema": {
            "get": op(
                "manifestSchema",
                "The manifest's JSON Schema (Draft 2020-12)",
                [],
                {
                    "200": answer_cached(
                        "The meta-schema; the Manifest component is the same schema.",
                        META_SCHEMA,
                        media="application/schema+json",
                    ),
                    **common_errors(auth=False),
                },
            )
        },
        "/api/openapi.json": {
            "get": op(
                "openapiDocument",
                "This description of the API (OpenAPI 3.1)",
                [],
                {
                    "200": answer_cached("The OpenAPI document.", OPENAPI_DOCUMENT),
                    **common_errors(auth=False),
                },
            )
        },
        "/api/registry/plugins": _registration(),
        plugin: _one_plugin(),
        plugin + "/pending-update": read(
            "getPendingUpdate",
            "The plugin's update awaiting approval, if any",
            "PendingUpdateStatus",
            "The installed version; pending_update is null when nothing awaits approval.",
        ),
        plugin + "/disable": _lifecycle("disable", "Disable (from active or degraded)"),
        plugin + "/enable": _lifecycle("enable", "Re-enable a disabled plugin"),
        plugin + "/deregister": _lifecycle(
            "deregister",
            "Remove a disabled or never-healthy plugin; each tenant's uninstall policy decides "
            "its data",
        ),
        plugin + "/rotate-token": _rotation(),
        plugin + "/versions": read(
            "listPluginVersions",
            "Every recorded manifest version of the plugin",
            "VersionList",
            "plugin_id and versions, newest first.",
        ),
        plugin + "/diff": _diff(),
        **registry_operator.paths(),
    }


def _diff() -> dict:
    version = {"type": "string", "pattern": meta_schema()["properties"]["version"]["pattern"]}
    versions = [
        {
            "name": name,
            "in": "query",
            "required": True,
            "schema": version,
            "description": f"A recorded version (the {side} side); one never recorded is 404.",
        }
        for name, side in (("from", "old"), ("to", "new"))
    ]
    item = read(
        "diffPluginVersions",
        "The schema diff between two recorded versions",
        "VersionDiff",
        "One entry per change, each classified.",
        parameters=versions,
    )
    item["get"]["responses"]["400"] = problem(
        400, "invalid-query", "bad-request", note="from or to is missing."
    )
    item["get"]["responses"]["404"] = problem(
        404, "not-found", note="No such plugin or recorded version."
    )
    return item
