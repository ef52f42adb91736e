"""Request-body helpers shared by the API blueprints."""

import json

from flask import request

from extframework.errors import BadRequest


def json_body(*, expect: type = dict) -> object:
    """Parse the request body as JSON of the expected type, or raise a 400 that says why."""
    if not request.mimetype or not request.mimetype.endswith("json"):
        raise BadRequest(
            f"Send the body as JSON with 'Content-Type: application/json' "
            f"(got {request.mimetype or 'no content type'!r})."
        )
    raw = request.get_data(cache=True)
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}.") from None
    if not isinstance(value, expect):
        raise BadRequest(f"The body must be a JSON {_json_name(expect)}.")
    return value


def _json_name(kind: type) -> str:
    return {dict: "object", list: "array"}.get(kind, kind.__name__)
