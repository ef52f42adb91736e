"""Request-body helpers shared by the API blueprints."""

import json

from flask import request

from extframework.errors import BadRequest

# Deeper bodies are refused up front: parsing, validating and storing them recurses.
MAX_JSON_DEPTH = 64
TOO_DEEP = f"The body is nested more than {MAX_JSON_DEPTH} levels deep."


def json_body(*, expect: type = dict) -> object:
    """Parse the request body as JSON of the expected type, or raise a 400 that says why."""
    if not request.mimetype or not request.mimetype.endswith("json"):
        raise BadRequest(
            f"Send the body as JSON with 'Content-Type: application/json' "
            f"(got {request.mimetype or 'no content type'!r})."
        )
    raw = request.get_data(cache=True)
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}.") from None
    except RecursionError:
        raise BadRequest(TOO_DEEP) from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise BadRequest(TOO_DEEP)
    if not isinstance(value, expect):
        raise BadRequest(f"The body must be a JSON {_json_name(expect)}.")
    return value


def _refuse_constant(name: str) -> None:
    raise json.JSONDecodeError(f"{name} is not a JSON number; send finite numbers", name, 0)


def json_depth(value: object) -> int:
    """Return how deeply arrays and objects nest in a parsed JSON value, without recursing."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _json_name(kind: type) -> str:
    return {dict: "object", list: "array"}.get(kind, kind.__name__)
