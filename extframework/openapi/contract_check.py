"""The contract checker's paths (blueprints/contract_check.py): the dry run and the probes."""

from extframework.openapi.common import (
    ANY_OBJECT,
    PLUGIN_ID,
    STRING,
    USER_OR_PLUGIN,
    answer,
    array,
    common_errors,
    json_body,
    nullable,
    obj,
    problem,
    ref,
)
from extframework.openapi.registry_operator import op

OUTCOMES = ["new", "compatible", "breaking", "needs-approval", "unchanged", "refused"]
LEVELS = ["pass", "warn", "fail"]


def schemas() -> dict:
    return {
        "ManifestCheck": obj(
            {
                "plugin_id": STRING,
                "installed_version": nullable(STRING),
                "version": STRING,
                "outcome": {"enum": OUTCOMES},
                "status": {
                    "type": "integer",
                    "description": "The status the update (or, for a plugin not installed, "
                    "the registration) would answer.",
                },
                "detail": STRING,
                "diff": array(ref("SchemaChange")),
                "problem": ref("Problem"),
                "migration": obj(
                    {
                        "handler": obj(
                            {"url": STRING, "timeout_s": {"type": "number"}},
                        ),
                        "breaking": array(ref("SchemaChange")),
                        "detail": STRING,
                    }
                ),
            },
            required=["plugin_id", "installed_version", "outcome", "status", "diff"],
            description="What the update would do, applied nowhere. refused and unchanged "
            "carry the problem the update would answer; breaking carries what its migration "
            "needs; diff lists every change (for a refused breaking update, the conflicts).",
        ),
        "ContractCheck": obj(
            {
                "plugin_id": STRING,
                "ok": {"type": "boolean", "description": "No check failed."},
                "checks": array(
                    obj(
                        {
                            "check": STRING,
                            "ok": {"type": "boolean"},
                            "level": {"enum": LEVELS},
                            "route": {
                                **nullable(STRING),
                                "description": "The view probed (GET /path), or null.",
                            },
                            "detail": {**STRING, "description": "What is wrong, what to fix."},
                        }
                    )
                ),
            }
        ),
    }


def _operation(operation_id: str, summary: str, schema: str, description: str) -> dict:
    responses = {
        "200": answer(description, ref(schema)),
        **common_errors(body=True),
        "403": problem(403, "forbidden", note="Not an operator, or another plugin's token."),
    }
    responses["429"] = problem(
        429,
        "too-many-requests",
        note="A check of this kind of this plugin is already running on this server.",
    )
    return {
        "post": op(
            operation_id,
            summary,
            USER_OR_PLUGIN,
            responses,
            parameters=[PLUGIN_ID],
            # Any object: an invalid manifest is judged in the answer (200), not refused.
            requestBody=json_body(
                {
                    **ANY_OBJECT,
                    "description": "A manifest (see Manifest); one that breaks it is judged in "
                    "the answer, as the update would refuse it.",
                }
            ),
        )
    }


def paths() -> dict:
    plugin = "/api/registry/plugins/{plugin_id}"
    return {
        plugin + "/manifest-check": _operation(
            "checkManifest",
            "Dry run: what PUT would do with this manifest, applying nothing",
            "ManifestCheck",
            "The verdict; a refusal is still 200 here, with the problem the update would get.",
        ),
        plugin + "/contract-check": _operation(
            "checkContract",
            "Probe the plugin the manifest describes: health, request JWTs, views, fragments",
            "ContractCheck",
            "One result per check. With a plugin token the manifest's base_url must be the "
            "registered one.",
        ),
    }
