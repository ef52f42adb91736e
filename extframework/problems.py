"""Every kind of error the HTTP API answers with, one row each (SPEC §5).

A client branches on a problem's ``type`` (``urn:extframework:problem:{slug}``), never on its
prose, so a slug, once published, keeps its meaning. ``docs/errors.md`` and the OpenAPI
document list this table; a test keeps the three in step.
"""

from dataclasses import dataclass

TYPE_PREFIX = "urn:extframework:problem:"


@dataclass(frozen=True)
class ProblemKind:
    status: int
    title: str
    meaning: str


PROBLEM_KINDS: dict[str, ProblemKind] = {
    # 400
    "bad-request": ProblemKind(400, "Bad request", "The request could not be understood."),
    "invalid-body": ProblemKind(
        400,
        "Invalid body",
        "The body is not JSON, not sent as application/json, nested too deeply, or not the "
        "shape this endpoint takes; 'errors' names each field.",
    ),
    "invalid-manifest": ProblemKind(
        400,
        "Invalid manifest",
        "The manifest breaks the meta-schema, a cost limit or a registry rule; 'errors' names "
        "each field.",
    ),
    "invalid-query": ProblemKind(
        400,
        "Invalid query",
        "A query parameter (filter, sort, limit, cursor) cannot be used; 'parameter' names it.",
    ),
    "confirmation-required": ProblemKind(
        400,
        "Confirmation required",
        "The action deletes data and the body does not confirm it.",
    ),
    # 401
    "unauthorized": ProblemKind(
        401,
        "Unauthorized",
        "No credential, a malformed one, or one that is unknown, expired, revoked or of the "
        "wrong kind for this endpoint. WWW-Authenticate says which.",
    ),
    # 403
    "forbidden": ProblemKind(403, "Forbidden", "The caller's role or identity may not do this."),
    "storage-closed": ProblemKind(
        403,
        "Storage closed",
        "The plugin's lifecycle state closes its storage to this call (disabled plugins read "
        "only; registered and deregistered plugins neither); 'state' names it.",
    ),
    "not-installed": ProblemKind(
        403, "Not installed", "The plugin is not installed in the tenant X-Tenant-ID names."
    ),
    # 404
    "not-found": ProblemKind(404, "Not found", "Nothing lives at this URL, or the record is gone."),
    "unknown-collection": ProblemKind(
        404, "Unknown collection", "The plugin's manifest declares no collection of this name."
    ),
    # 405
    "method-not-allowed": ProblemKind(
        405, "Method not allowed", "This URL does not take that method; Allow lists those it does."
    ),
    # 409
    "conflict": ProblemKind(409, "Conflict", "The request conflicts with what is stored."),
    "already-exists": ProblemKind(
        409, "Already exists", "A tenant or user with this slug or email exists already."
    ),
    "plugin-id-taken": ProblemKind(
        409, "plugin_id taken", "Another registered plugin holds this plugin_id."
    ),
    "version-not-higher": ProblemKind(
        409, "Version not higher", "An update must carry a higher semantic version."
    ),
    "version-manifest-changed": ProblemKind(
        409,
        "Version already recorded",
        "This version number already holds a different manifest (the installed one, or an "
        "earlier one); send the change under a new version.",
    ),
    "breaking-change": ProblemKind(
        409,
        "Breaking change",
        "The update changes a collection's schema in a breaking way and declares no "
        "migration; 'diff' lists each change.",
    ),
    "wrong-state": ProblemKind(
        409,
        "Wrong lifecycle state",
        "The plugin's lifecycle state does not allow this call; 'state' names it and, for a "
        "refused transition, 'allowed' lists the states it may move to.",
    ),
    "migration-running": ProblemKind(
        409,
        "Migration running",
        "An attempt of the plugin's migration is still running; wait for it to end (GET "
        ".../migration) before retrying.",
    ),
    "edit-conflict": ProblemKind(
        409, "Edit conflict", "The document kept changing while this update was applied; retry."
    ),
    "data-retained": ProblemKind(
        409,
        "Data retained",
        "A deregistered plugin's data is still held; registering its plugin_id again needs an "
        "operator's decision.",
    ),
    # 412
    "stale-if-match": ProblemKind(
        412,
        "Precondition failed",
        "If-Match names a version that is no longer current; read the document again.",
    ),
    # 413
    "too-large": ProblemKind(
        413,
        "Too large",
        "The body is larger than MAX_BODY_BYTES, or a batch has more than 1000 operations.",
    ),
    # 422
    "validation-failed": ProblemKind(
        422,
        "Validation failed",
        "The data does not match the collection's schema (or a form's rules); 'errors' names "
        "each failing field.",
    ),
    # 429
    "too-many-requests": ProblemKind(
        429, "Too many requests", "Slow down; Retry-After says for how long."
    ),
    # 500
    "internal-error": ProblemKind(
        500,
        "Internal server error",
        "The core failed; the request id in the logs finds the cause. Nothing a client sent "
        "can fix it.",
    ),
    "storage-full": ProblemKind(
        507,
        "Insufficient storage",
        "The database's disk is full; nothing was written. An operator must free space.",
    ),
    # 502, 503, 504
    "bad-gateway": ProblemKind(
        502,
        "Bad gateway",
        "The plugin did not answer, or answered something the core refuses (a failed health "
        "probe at registration, a broken page behind the shell).",
    ),
    "unavailable": ProblemKind(
        503,
        "Service unavailable",
        "The database is busy or the plugin cannot be opened now; Retry-After says when to "
        "try again.",
    ),
    "upgrade-needed": ProblemKind(
        503,
        "Upgrade needed",
        "GET /healthz: the database's schema is older than this release; run init-db.",
    ),
    "schema-too-new": ProblemKind(
        503,
        "Schema too new",
        "GET /healthz: a newer release upgraded the database; this one must not serve it.",
    ),
    "health-monitor-stopped": ProblemKind(
        503,
        "Health monitor stopped",
        "GET /healthz: this process's health monitor died; plugins are not probed.",
    ),
    "namespace-frozen": ProblemKind(
        503,
        "Namespace frozen",
        "The plugin is migrating its data; its storage is frozen until the migration ends.",
    ),
    "gateway-timeout": ProblemKind(504, "Gateway timeout", "The plugin did not answer in time."),
}


def problem_type(slug: str) -> str:
    return TYPE_PREFIX + slug


def kind(slug: str) -> ProblemKind:
    """The catalogued kind of ``slug``; a KeyError means an error type nobody documented."""
    return PROBLEM_KINDS[slug]
