"""What every part of the OpenAPI document shares: helpers, problems, headers, parameters."""

from extframework import problems
from extframework.http import Field
from extframework.problems import problem_type
from extframework.services import accounts

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"

PLUGIN_TOKEN = [{"pluginToken": []}]
ENROLMENT_KEY = [{"enrolmentKey": []}]
USER = [{"userJwt": []}, {"session": []}]
USER_OR_PLUGIN = [{"userJwt": []}, {"session": []}, {"pluginToken": []}]

STRING = {"type": "string"}
# A tenant slug (accounts.TENANT_SLUG): what X-Tenant-ID, {tenant} and tenant lists name.
TENANT_SLUG = {"type": "string", "pattern": accounts.TENANT_SLUG.pattern, "maxLength": 64}
# A database id: the router matches 0 … 2^63-1 (what SQLite holds); anything else is 404.
ROW_ID = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
DATE_TIME = {"type": "string", "format": "date-time"}
DATE_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
ANY_OBJECT = {"type": "object", "additionalProperties": True}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def header(name: str) -> dict:
    return {"$ref": f"#/components/headers/{name}"}


def obj(properties: dict, *, required: list[str] | str = "all", **extra) -> dict:
    """A closed object schema; ``required="all"`` requires every property (most answers do)."""
    return {
        "type": "object",
        "required": list(properties) if required == "all" else required,
        "properties": properties,
        "additionalProperties": False,
        **extra,
    }


def array(items: dict, **extra) -> dict:
    return {"type": "array", "items": items, **extra}


def nullable(schema: dict) -> dict:
    return {"oneOf": [schema, {"type": "null"}]}


def path_param(name: str, description: str = "", schema: dict | None = None) -> dict:
    param = {"name": name, "in": "path", "required": True, "schema": schema or STRING}
    return {**param, "description": description} if description else param


PLUGIN_ID = path_param("plugin_id", "The plugin's id.")


def answer(
    description: str, schema: dict | None = None, *, media: str = JSON, headers: tuple = ()
) -> dict:
    """A success response carrying ``Cache-Control`` and the required ``headers`` named."""
    response: dict = {"description": description}
    response["headers"] = {
        "Cache-Control": header("CacheControlNoStore"),
        "X-Request-ID": header("X-Request-ID"),
    }
    response["headers"].update({name: header(name) for name in headers})
    if schema is not None:
        response["content"] = {media: {"schema": schema}}
    return response


def answer_cached(description: str, schema: dict, media: str = JSON) -> dict:
    response = answer(description, schema, media=media)
    response["headers"]["Cache-Control"] = header("CacheControlPublic")
    return response


# --- problems ------------------------------------------------------------------------------

# The headers an error of each status always carries.
ERROR_HEADERS = {
    401: {"WWW-Authenticate": "WWW-Authenticate"},
    405: {"Allow": "Allow"},
    412: {"ETag": "ETagOptional"},
    429: {"Retry-After": "Retry-After"},
    503: {"Retry-After": "Retry-After"},
}
# What an error of each status means here, before the list of its problem types.
STATUS_MEANING = {
    400: "The request is malformed: a body that is not the JSON object this endpoint takes, "
    "or a bad parameter.",
    401: "No credential, or one refused here (RFC 6750).",
    403: "The credential is valid but may not do this.",
    404: "Nothing of that name.",
    405: "This path does not take that method; Allow lists those it does.",
    409: "The request conflicts with the stored state.",
    412: "If-Match names a version that is no longer current.",
    413: "The body is larger than MAX_BODY_BYTES.",
    422: "The data breaks the collection's schema; 'errors' lists each field.",
    429: "Too many attempts; Retry-After says how long to wait.",
    500: "The core failed; 'request_id' names the log entry with the cause; a retry won't help.",
    502: "The plugin did not answer its health check as the core needs.",
    503: "The database is busy (Retry-After: 1), or the plugin's storage is frozen.",
    507: "The database's disk is full; nothing was written.",
}


def kinds_of(status: int) -> list[str]:
    return [slug for slug, kind in problems.PROBLEM_KINDS.items() if kind.status == status]


def problem(status: int, *slugs: str, note: str = "") -> dict:
    """An error response; ``slugs`` narrow the problem types to those this operation answers."""
    for slug in slugs:
        if problems.PROBLEM_KINDS[slug].status != status:
            raise ValueError(f"problem kind {slug!r} is not a {status}")
    listed = ", ".join(f"`{problem_type(s)}`" for s in slugs or kinds_of(status))
    description = " ".join(filter(None, [STATUS_MEANING.get(status, ""), note]))
    response = {
        "description": f"{description} Problem types: {listed}.",
        "content": {PROBLEM_JSON: {"schema": ref("Problem")}},
    }
    headers = {
        "Cache-Control": header("CacheControlNoStore"),
        "X-Request-ID": header("X-Request-ID"),
    }
    headers.update({name: header(c) for name, c in ERROR_HEADERS.get(status, {}).items()})
    response["headers"] = headers
    return response


def error(status: int) -> dict:
    """The shared response of a status, listing every problem type of that status."""
    return {"$ref": f"#/components/responses/Error{status}"}


def error_responses() -> dict:
    """``components.responses``: one per status the API answers errors with."""
    return {f"Error{status}": problem(status) for status in STATUS_MEANING}


def common_errors(*, body: bool = False, auth: bool = True) -> dict:
    """The errors any operation of this kind can answer: 405 and 503 always (every request
    opens its database connection first, so a busy or unreachable database answers anywhere;
    every request may write — a token's last use, the audit log — so a full disk too; and any
    may fail);
    400 and 413 with a body; 401 when it needs a credential."""
    statuses = [405, 500, 503, 507]
    if body:
        statuses += [400, 413]
    if auth:
        statuses.append(401)
    return {str(s): error(s) for s in statuses}


def problem_schema() -> dict:
    type_choices = [
        {"const": problem_type(slug), "title": kind.title, "description": kind.meaning}
        for slug, kind in problems.PROBLEM_KINDS.items()
    ]
    return {
        "type": "object",
        "description": "RFC 9457 problem details; members beyond these are extensions that "
        "some problem types add (listed here).",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "oneOf": type_choices},
            "title": STRING,
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": STRING,
            "errors": array(ref("FieldError"), minItems=1),
            "state": {**STRING, "description": "The plugin's lifecycle state."},
            "allowed": {**array(STRING), "description": "States reachable from 'state'."},
            "allowed_actions": {**array(STRING), "description": "Operator verbs 'state' allows."},
            "diff": {**array(ref("SchemaChange")), "description": "Conflicting schema changes."},
            "parameter": {**STRING, "description": "The query parameter at fault."},
            "index": {"type": "integer", "description": "The failing batch operation."},
            "current_version": {
                "type": ["integer", "string"],
                "description": "The document's current version (412), or the installed "
                "plugin version (409).",
            },
            "tenant": {**STRING, "description": "The tenant at fault."},
            "request_id": {
                **STRING,
                "description": "The request's id in the core's log (500, 507).",
            },
            "collection": {**STRING, "description": "The collection at fault."},
            "purge_tenants": {
                **array(STRING),
                "description": "Tenants whose data deregistering would purge.",
            },
        },
        "additionalProperties": True,
    }


def field_error_schema() -> dict:
    return {
        "type": "object",
        "description": "One failing field of a request body.",
        "required": ["pointer", "keyword", "message"],
        "properties": {
            "pointer": {
                **STRING,
                "description": "RFC 6901 JSON Pointer into the request body ('' is all of it).",
            },
            "keyword": {
                **STRING,
                "description": "The JSON Schema keyword that failed, or a word naming the "
                "rule (docs/errors.md).",
            },
            "message": STRING,
            "index": {"type": "integer", "description": "In a batch: the operation's index."},
        },
        "additionalProperties": True,
    }


def problem_types_table() -> list[dict]:
    return [
        {
            "type": problem_type(slug),
            "status": kind.status,
            "title": kind.title,
            "meaning": kind.meaning,
        }
        for slug, kind in problems.PROBLEM_KINDS.items()
    ]


def problem_types_markdown() -> str:
    rows = "\n".join(
        f"| `{problem_type(slug)}` | {kind.status} | {kind.meaning} |"
        for slug, kind in problems.PROBLEM_KINDS.items()
    )
    return f"| type | status | meaning |\n|---|---|---|\n{rows}"


# --- request bodies ------------------------------------------------------------------------


def fields_body(spec: dict[str, Field], properties: dict[str, dict]) -> dict:
    """The request body of an endpoint that checks its fields with ``http.body_fields``.

    ``properties`` gives each field's schema; the fields, which are required and the refusal
    of unknown fields come from ``spec`` itself, so the document cannot drift from the code.
    """
    required = [name for name, field in spec.items() if field.required]
    schema = {
        "type": "object",
        "properties": {name: properties[name] for name in spec},
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return {"required": bool(required), "content": {JSON: {"schema": schema}}}


def json_body(schema: dict, *, required: bool = True) -> dict:
    return {"required": required, "content": {JSON: {"schema": schema}}}


# --- components ----------------------------------------------------------------------------


def headers() -> dict:
    def h(description: str, schema: dict, required: bool = True) -> dict:
        return {"description": description, "required": required, "schema": schema}

    etag = {"type": "string", "pattern": '^"[0-9]+"$'}
    return {
        "WWW-Authenticate": h(
            'Bearer realm="extframework", error="invalid_request" or "invalid_token", '
            'error_description="…" (RFC 6750 §3).',
            {"type": "string", "pattern": "^Bearer "},
        ),
        "Allow": h("The methods this path takes.", STRING),
        "Retry-After": h(
            "Seconds to wait before trying again.", {"type": "string", "pattern": "^[0-9]+$"}
        ),
        "ETag": h("The document's version, quoted; send it back as If-Match.", etag),
        "ETagOptional": h("The document's current version, when it still exists.", etag, False),
        "Location": h("Where the created or awaited resource is read.", STRING),
        "CacheControlNoStore": h("no-store: API answers are never cached.", STRING),
        "X-Request-ID": h(
            "This request's id: in the core's access log, sent on to the plugin, quoted in "
            "fault panels (docs/operations.md).",
            {"type": "string", "pattern": "^[A-Za-z0-9._-]{8,64}$"},
        ),
        "CacheControlPublic": h("public, max-age=…: this answer may be cached.", STRING),
    }


def security_schemes() -> dict:
    return {
        "metricsToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "EXTFW_METRICS_TOKEN, for GET /metrics from other hosts than loopback.",
        },
        "userJwt": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A user JWT from POST /api/auth/token.",
        },
        "session": {
            "type": "apiKey",
            "in": "cookie",
            "name": "session",
            "description": "A browser session; state-changing calls also need the CSRF token "
            "(X-CSRFToken), or get 400.",
        },
        "pluginToken": {"type": "http", "scheme": "bearer", "description": "efpt_… plugin token"},
        "enrolmentKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "efek_… enrolment key",
        },
    }
