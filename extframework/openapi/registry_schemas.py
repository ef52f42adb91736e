"""The package manager's answers as schemas: what services/catalog.py and friends return."""

from extframework.models import ROLES, UNINSTALL_POLICIES
from extframework.openapi.common import (
    ANY_OBJECT,
    DATE_TIME,
    DATE_TIME_OR_NULL,
    STRING,
    array,
    nullable,
    obj,
    ref,
)
from extframework.services.lifecycle import STATES

STATE = {"enum": list(STATES)}
ROLE = {"enum": list(ROLES)}
POLICY = {"enum": list(UNINSTALL_POLICIES)}
INTEGER = {"type": "integer"}


def _plugin_parts() -> dict:
    return {
        "HealthCheck": obj(
            {
                "at": DATE_TIME,
                "ok": {"type": "boolean"},
                "status_code": {"type": ["integer", "null"]},
                "latency_ms": {"type": ["number", "null"]},
                "detail": STRING,
            }
        ),
        "Transition": obj(
            {
                "at": DATE_TIME,
                "from": {"oneOf": [STATE, {"type": "null"}]},
                "to": STATE,
                "cause": STRING,
                "actor": STRING,
            }
        ),
        "CollectionSummary": obj(
            {"name": STRING, "indexes": array(obj({"fields": array(STRING, minItems=1)}))}
        ),
        "Menu": obj(
            {
                "id": STRING,
                "label": STRING,
                "path": STRING,
                "role": ROLE,
                "mode": {"enum": ["inline", "iframe"]},
                "actions": array(
                    obj(
                        {
                            "id": STRING,
                            "label": STRING,
                            "method": {"enum": ["POST", "PUT", "PATCH", "DELETE"]},
                            "path": STRING,
                            "role": ROLE,
                        }
                    )
                ),
            }
        ),
        "UninstallPolicy": obj(
            {
                "tenant": STRING,
                "policy": POLICY,
                "documents": {
                    **INTEGER,
                    "description": "The plugin's documents in the tenant; left out of lists.",
                },
            },
            required=["tenant", "policy"],
        ),
        "PluginToken": obj(
            {
                "fingerprint": {
                    **STRING,
                    "description": "The first 12 hex digits of the token's SHA-256.",
                },
                "current": {"type": "boolean"},
                "created_at": DATE_TIME,
                "created_by": STRING,
                "expires_at": {
                    **DATE_TIME_OR_NULL,
                    "description": "null for the current token; else when its grace ends.",
                },
                "last_used_at": {
                    **DATE_TIME_OR_NULL,
                    "description": "Recorded at most once a minute.",
                },
            },
            description="A live plugin token, never its secret.",
        ),
    }


def _migration_parts() -> dict:
    run = {
        "id": INTEGER,
        "from_version": STRING,
        "to_version": STRING,
        "state": {"enum": ["running", "failed", "succeeded"]},
        "interrupted": {
            "type": "boolean",
            "description": "Its process died mid-attempt; retry it.",
        },
        "attempts": INTEGER,
        "last_error": STRING,
        "report": {
            **ANY_OBJECT,
            "description": "What the last attempt found: renamed collections, the failing "
            "stage, documents invalid under the new schemas (docs/migrations.md).",
        },
        "diff": array(ref("SchemaChange")),
        "handler": obj(
            {"url": STRING, "timeout_s": {"type": ["number", "null"]}},
        ),
        "created_by": STRING,
        "created_at": DATE_TIME,
        "started_at": DATE_TIME_OR_NULL,
        "finished_at": DATE_TIME_OR_NULL,
    }
    brief = {k: v for k, v in run.items() if k not in ("report", "diff")}
    return {
        "MigrationRun": obj(run),
        "MigrationStatus": obj(
            {
                "plugin_id": STRING,
                "state": STATE,
                "version": STRING,
                "migration": nullable(ref("MigrationRun")),
                "earlier": {
                    **array(obj(brief)),
                    "description": "Earlier runs, newest first, without report and diff.",
                },
            }
        ),
        "SchemaChange": obj(
            {
                "collection": STRING,
                "path": {**STRING, "description": "Where in the collection's schema."},
                "kind": STRING,
                "breaking": {"type": "boolean"},
                "old": {"description": "The old value (any JSON)."},
                "new": {"description": "The new value (any JSON)."},
            },
            description="One classified difference between two versions' collections.",
        ),
    }


def _summary() -> dict:
    return {
        "plugin_id": STRING,
        "name": STRING,
        "version": STRING,
        "state": STATE,
        "base_url": STRING,
        "allowed_transitions": array(STATE),
        "last_health": nullable(ref("HealthCheck")),
        "consecutive_failures": INTEGER,
        "state_history": array(ref("Transition")),
        "collections": array(ref("CollectionSummary")),
        "menus": array(ref("Menu")),
        "versions": {**array(STRING), "description": "Recorded versions, newest first."},
        "tenants": {
            "type": ["array", "null"],
            "items": STRING,
            "description": "null: installed in every tenant; else only these.",
        },
        "uninstall_policies": array(ref("UninstallPolicy")),
        "migration": nullable(ref("MigrationRun")),
        "token_rotated_at": DATE_TIME_OR_NULL,
        "tokens": array(ref("PluginToken")),
        "created_at": DATE_TIME,
        "updated_at": DATE_TIME,
    }


def _update_parts() -> dict:
    pending = {
        "id": INTEGER,
        "plugin_id": STRING,
        "version": STRING,
        "previous_version": STRING,
        "base_url": STRING,
        "previous_base_url": STRING,
        "origin": STRING,
        "previous_origin": STRING,
        "breaking": {"type": "boolean"},
        "changes": array(ref("SchemaChange")),
        "requested_by": STRING,
        "requested_at": DATE_TIME,
    }
    return {
        "PendingUpdate": obj(
            pending,
            description="An update moving base_url to another origin, awaiting an operator.",
        ),
        "PendingUpdateStatus": obj(
            {
                "plugin_id": STRING,
                "version": {**STRING, "description": "The installed version."},
                "base_url": STRING,
                "pending_update": nullable(ref("PendingUpdate")),
            }
        ),
        "UpdateResult": obj(
            {
                "plugin_id": STRING,
                "version": STRING,
                "previous_version": STRING,
                "state": STATE,
                "changes": array(ref("SchemaChange")),
                "migration": ref("MigrationRun"),
                "detail": STRING,
                "pending_update": ref("PendingUpdate"),
            },
            required=["plugin_id", "version", "state"],
            description="Applied: previous_version and changes. A migration started: also "
            "migration. Awaiting approval: detail and pending_update instead.",
        ),
    }


def _admin_parts() -> dict:
    uninstall = obj(
        {
            "plugin_id": STRING,
            "tenants": {
                "type": "object",
                "description": "Per tenant that held data: its policy, the documents, and "
                "the archive file when archived.",
                "additionalProperties": obj(
                    {"policy": POLICY, "documents": INTEGER, "archive": STRING},
                    required=["policy", "documents"],
                ),
            },
        }
    )
    archive = obj(
        {
            "id": INTEGER,
            "plugin_id": STRING,
            "tenant": STRING,
            "path": {**STRING, "description": "Relative to <instance>/archives."},
            "sha256": STRING,
            "documents": INTEGER,
            "size_bytes": INTEGER,
            "created_by": STRING,
            "created_at": DATE_TIME,
            "restored_at": DATE_TIME_OR_NULL,
            "restored_by": {"type": ["string", "null"]},
        }
    )
    return {"UninstallOutcome": uninstall, "ArchiveList": obj({"archives": array(archive)})}


def schemas() -> dict:
    summary = _summary()
    return {
        **_plugin_parts(),
        **_migration_parts(),
        **_update_parts(),
        **_admin_parts(),
        "PluginSummary": obj(summary),
        "PluginAfterVerb": obj(
            {**summary, "uninstall": ref("UninstallOutcome")},
            required=list(summary),
            description="The plugin after the verb; deregister adds what became of its data.",
        ),
        "PluginList": obj({"plugins": array(ref("PluginSummary"))}),
        "Registration": obj(
            {
                "plugin_id": STRING,
                "plugin_token": {**STRING, "description": "Shown once; store it."},
                "state": STATE,
            }
        ),
        "TokenRotation": obj(
            {
                "plugin_id": STRING,
                "plugin_token": {**STRING, "description": "The new token, shown once."},
                "old_token_expires_at": {
                    **DATE_TIME_OR_NULL,
                    "description": "When the replaced token stops working; null: already.",
                },
                "tokens": array(ref("PluginToken")),
            }
        ),
        "PendingUpdateList": obj({"pending_updates": array(ref("PendingUpdate"))}),
        "RejectedUpdate": obj({"rejected": ref("PendingUpdate")}),
        "VersionList": obj(
            {
                "plugin_id": STRING,
                "versions": array(
                    obj(
                        {
                            "version": STRING,
                            "created_at": DATE_TIME,
                            "manifest": {
                                **ANY_OBJECT,
                                "description": "The manifest as recorded then (a Manifest).",
                            },
                        }
                    )
                ),
            }
        ),
        "VersionDiff": obj(
            {
                "plugin_id": STRING,
                "from": STRING,
                "to": STRING,
                "breaking": {"type": "boolean"},
                "changes": array(ref("SchemaChange")),
            }
        ),
        "UninstallPolicies": obj(
            {"plugin_id": STRING, "uninstall_policies": array(ref("UninstallPolicy"))}
        ),
    }
