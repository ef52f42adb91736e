"""Domain errors and the one renderer that turns any error into problem+json or a page."""

import logging
from collections.abc import Iterable

from flask import Flask, Response, g, has_request_context, jsonify, render_template, request
from peewee import OperationalError
from werkzeug.exceptions import HTTPException

from .problems import PROBLEM_KINDS, problem_type

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


def json_pointer(parts: Iterable[object]) -> str:
    """Render keys and indexes as an RFC 6901 JSON Pointer (``/data_schemas/0/collection``)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def field_error(parts: Iterable[object], keyword: str, message: str) -> dict:
    """One field error in the one shape every endpoint uses (SPEC §5, docs/errors.md).

    ``parts`` are the keys and indexes leading to the field in the request body (none: the
    whole body); ``keyword`` is the JSON Schema keyword that failed, or a documented word
    for a rule no schema keyword states (``unique``, ``exists``, ``confirm``, ...).
    """
    return {"pointer": json_pointer(parts), "keyword": keyword, "message": message}


class DomainError(Exception):
    """An error a service raises; it carries its HTTP status and what the caller should fix."""

    status = 400
    title = "Bad request"
    slug = "bad-request"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict] | None = None,
        headers: dict[str, str] | None = None,
        kind: str | None = None,
        **extra: object,
    ) -> None:
        """``kind`` names a row of ``problems.PROBLEM_KINDS`` more precise than the class's."""
        super().__init__(detail)
        if kind is not None:
            if PROBLEM_KINDS[kind].status != self.status:
                raise ValueError(f"problem kind {kind!r} is not a {self.status}")
            self.slug = kind
            self.title = PROBLEM_KINDS[kind].title
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra


class BadRequest(DomainError):
    pass


class Unauthorized(DomainError):
    status, title, slug = 401, "Unauthorized", "unauthorized"


def bearer_challenge(detail: str) -> str:
    """The ``WWW-Authenticate`` value of a 401 (RFC 6750 §3).

    ``invalid_token`` when a bearer token was sent (unknown, expired, revoked, or the wrong
    kind for this endpoint); ``invalid_request`` when none was, or the header is malformed.
    """
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    error = "invalid_token" if scheme.lower() == "bearer" and token.strip() else "invalid_request"
    # error_description allows printable ASCII but '"' and '\\' (RFC 6750 §3).
    description = "".join(c for c in detail if " " <= c <= "~" and c not in '"\\')
    return f'Bearer realm="extframework", error="{error}", error_description="{description}"'


class Forbidden(DomainError):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(DomainError):
    status, title, slug = 404, "Not found", "not-found"


class Conflict(DomainError):
    status, title, slug = 409, "Conflict", "conflict"


class PreconditionFailed(DomainError):
    status, title, slug = 412, "Precondition failed", "stale-if-match"


class TooLarge(DomainError):
    status, title, slug = 413, "Too large", "too-large"


class Invalid(DomainError):
    status, title, slug = 422, "Validation failed", "validation-failed"


class TooManyRequests(DomainError):
    status, title, slug = 429, "Too many requests", "too-many-requests"


class InsufficientStorage(DomainError):
    status, title, slug = 507, "Insufficient storage", "storage-full"


class Unavailable(DomainError):
    status, title, slug = 503, "Service unavailable", "unavailable"


class BadGateway(DomainError):
    status, title, slug = 502, "Bad gateway", "bad-gateway"


def problem_response(
    status: int,
    title: str,
    detail: str,
    slug: str | None,
    *,
    errors: list[dict] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict | None = None,
) -> Response:
    """Render a problem; a ``slug`` of None is RFC 9457's ``about:blank`` (see HTTP_SLUGS)."""
    body: dict[str, object] = {
        "type": problem_type(slug) if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    if extra:
        body.update(extra)
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_JSON
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def wants_problem_json() -> bool:
    """API paths always answer in JSON; pages answer in HTML."""
    path = request.path
    return path.startswith("/api/") or path.startswith("/.well-known/") or path == "/healthz"


HTTP_DETAILS = {
    400: "The request could not be understood.",
    404: "Nothing lives at this URL.",
    405: "This URL does not accept that method.",
    413: "The request body is larger than this server accepts.",
}


# Werkzeug's own errors (routing, body limits, CSRF) and the kind each one is. A status not
# listed here cannot be raised by the core; should one ever be, it goes out as about:blank
# (RFC 9457 §4.2.1: nothing to say beyond the status) rather than as an undocumented type.
HTTP_SLUGS = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    413: "too-large",
    500: "internal-error",
}
JSON_DECODE_FAILURE = "Failed to decode JSON object"  # Flask's Request.on_json_loading_failed


def http_slug(status: int, error: HTTPException) -> str | None:
    """The catalogued kind of one of Werkzeug's HTTP errors."""
    if status == 400 and (error.description or "").startswith(JSON_DECODE_FAILURE):
        return "invalid-body"
    return HTTP_SLUGS.get(status)


BUSY_MESSAGES = ("database is locked", "unable to open", "busy")
FULL_MESSAGES = ("database or disk is full", "disk is full")


def database_error_kind(error: Exception) -> str:
    """``unavailable`` (retry), ``storage-full`` (507) or ``internal-error`` (a bug)."""
    message = str(error).lower()
    if any(text in message for text in FULL_MESSAGES):
        return "storage-full"
    if any(text in message for text in BUSY_MESSAGES):
        return "unavailable"
    return "internal-error"


class InternalError(DomainError):
    status, title, slug = 500, "Internal server error", "internal-error"

    def __init__(self, request_id: str) -> None:
        super().__init__(
            "The core failed on this request; an operator finds why in its log under "
            f"request id {request_id}.",
            request_id=request_id,
        )


def request_id() -> str:
    """This request's id ("" outside a request; observability sets it): logs, plugins, fault
    panels and 5xx bodies carry it."""
    return g.get("request_id", "") if has_request_context() else ""


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(error: DomainError):
        if error.status >= 500:
            log.warning("%s %s: %s", request.method, request.path, error.detail)
        if isinstance(error, Unauthorized) and "WWW-Authenticate" not in error.headers:
            error.headers["WWW-Authenticate"] = bearer_challenge(error.detail)
        if wants_problem_json():
            return problem_response(
                error.status,
                error.title,
                error.detail,
                error.slug,
                errors=error.errors,
                headers=error.headers,
                extra=error.extra,
            )
        return _page(error.status, error.title, error.detail, error.headers)

    @app.errorhandler(OperationalError)
    def _database_error(error: OperationalError):
        """Only a busy or unreachable database is worth a retry; a full disk is 507; the
        rest (a broken query, a missing table) is the core's bug: 500, logged with its id."""
        kind = database_error_kind(error)
        where = f"{request.method} {request.path} (request id {request_id()})"
        if kind == "unavailable":
            log.error("database unavailable on %s: %s", where, error)
            return _domain(
                Unavailable(
                    "The database is busy or unreachable; try again shortly.",
                    headers={"Retry-After": "1"},
                )
            )
        if kind == "storage-full":
            log.critical("database disk full on %s: %s", where, error)
            return _domain(
                InsufficientStorage(
                    "The database's disk is full; nothing was written. An operator must free "
                    "space; reads still work.",
                    request_id=request_id(),
                )
            )
        log.exception("database error on %s", where)
        return _domain(InternalError(request_id()))

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        status = error.code or 500
        detail = HTTP_DETAILS.get(status, error.description or error.name)
        if status == 400 and error.description:
            detail = error.description
        elif status == 413:
            detail = (
                f"The request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes; "
                "send less data (the limit is MAX_BODY_BYTES)."
            )
        headers = dict(error.get_headers()) if status == 405 else None
        allow = {"Allow": headers["Allow"]} if headers and "Allow" in headers else None
        extra = None
        if status == 500:  # Flask logged the traceback; the id ties it to this answer
            log.error(
                "internal error on %s %s: request id %s",
                request.method,
                request.path,
                request_id(),
            )
            detail = InternalError(request_id()).detail
            extra = {"request_id": request_id()}
        if wants_problem_json():
            slug = http_slug(status, error)
            title = PROBLEM_KINDS[slug].title if slug else error.name
            return problem_response(status, title, detail, slug, headers=allow, extra=extra)
        return _page(status, error.name, detail, allow)


def _page(status: int, title: str, detail: str, headers: dict | None):
    try:
        body = render_template("error.html", status=status, title=title, detail=detail)
    except Exception:  # the template itself failed: fall back to plain text
        log.exception("error page failed to render")
        body = f"{status} {title}\n\n{detail}\n"
        return Response(body, status, headers, mimetype="text/plain")
    return Response(body, status, headers)
