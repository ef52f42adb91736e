"""Request-body helpers shared by the API blueprints."""

import json
from collections.abc import Callable
from dataclasses import dataclass

from flask import request
from werkzeug.routing import BaseConverter, IntegerConverter

from extframework.errors import BadRequest, field_error

# Deeper bodies are refused up front: parsing, validating and storing them recurses.
MAX_JSON_DEPTH = 64
TOO_DEEP = f"The body is nested more than {MAX_JSON_DEPTH} levels deep."


class RowIdConverter(IntegerConverter):
    """``<int:…>`` matching only ids SQLite can hold: a larger one names nothing (404, not 500)."""

    def __init__(self, map, *args, **kwargs) -> None:
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(map, *args, **kwargs)


def json_body(*, expect: type = dict) -> object:
    """Parse the request body as JSON of the expected type, or raise a 400 that says why."""
    if not request.mimetype or not request.mimetype.endswith("json"):
        raise BadRequest(
            f"Send the body as JSON with 'Content-Type: application/json' "
            f"(got {request.mimetype or 'no content type'!r}).",
            kind="invalid-body",
        )
    raw = request.get_data(cache=True)
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}.", kind="invalid-body") from None
    except RecursionError:
        raise BadRequest(TOO_DEEP, kind="invalid-body") from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise BadRequest(TOO_DEEP, kind="invalid-body")
    if not isinstance(value, expect):
        raise BadRequest(f"The body must be a JSON {_json_name(expect)}.", kind="invalid-body")
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


def optional_json_object() -> dict:
    """Parse an optional body: none at all is ``{}``; anything sent must be a JSON object."""
    if not request.get_data(cache=True):
        return {}
    return json_body(expect=dict)


class DocIdConverter(BaseConverter):
    """A document id: never one starting with ``_``, which names collection operations
    (``…/{collection}/_batch``), so those URLs answer only their own methods (405, Allow)."""

    regex = r"[^/_][^/]*"


@dataclass(frozen=True)
class Field:
    """One field of a request body: what it must be (said in the 400) and how to check it."""

    expected: str
    check: Callable[[object], bool]
    required: bool = False
    keyword: str = "type"  # the JSON Schema keyword a failed check stands for


def string_field(*, required: bool = False) -> Field:
    return Field("a string", lambda value: isinstance(value, str), required)


def body_fields(body: dict, spec: dict[str, Field]) -> dict:
    """Check a body's fields against ``spec``; return them (absent optional ones as None).

    Unknown fields are refused too: a misspelt optional field would otherwise be ignored.
    Every problem is listed in ``errors`` as ``{"pointer", "keyword", "message"}``.
    """
    errors = [
        _field_error(name, "additionalProperties", "is not a field of this request")
        for name in body
        if name not in spec
    ]
    for name, field in spec.items():
        if name not in body:
            if field.required:
                errors.append(_field_error(name, "required", f"is required: {field.expected}"))
        elif not field.check(body[name]):
            errors.append(_field_error(name, field.keyword, f"must be {field.expected}"))
    if errors:
        wanted = ", ".join(
            f"'{name}' ({field.expected}{'' if field.required else ', optional'})"
            for name, field in spec.items()
        )
        takes = f"a JSON object with {wanted}" if spec else "no body, or an empty JSON object"
        found = "; ".join(f"{e['pointer']} {e['message']}" for e in errors)
        raise BadRequest(
            f"This request takes {takes}: {found}.", errors=errors, kind="invalid-body"
        )
    return {name: body.get(name) for name in spec}


def _field_error(name: str, keyword: str, message: str) -> dict:
    return field_error([name], keyword, message)
