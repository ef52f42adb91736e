"""Check a real response against what the OpenAPI document declares for it.

``check_response(document, "/api/storage/{collection}", "post", response)`` fails the test when
the status is not declared for that operation, when the body does not validate against the
documented schema for that status and media type (JSON Schema 2020-12, formats asserted, every
``$ref`` resolved inside the document), or when a header the document marks required is missing
or does not match its schema.
"""

import json

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

BASE = "urn:extframework:openapi"


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


def _follow(document: dict, node: dict, pointer: list[str]) -> tuple[dict, list[str]]:
    """Follow an OpenAPI (not JSON Schema) ``$ref`` to a component; return it and its pointer."""
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        pointer = ref[2:].split("/")
        node = document
        for part in pointer:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node, pointer


def _validator(document: dict, pointer: list[str]) -> Draft202012Validator:
    registry = Registry().with_resource(BASE, Resource(document, DRAFT202012))
    ref = {"$ref": BASE + "#/" + "/".join(pointer)}
    return Draft202012Validator(
        ref, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def schema_errors(document: dict, pointer: list[str], instance: object) -> list[str]:
    """Messages of everything wrong with ``instance`` against the schema at ``pointer``."""
    validator = _validator(document, pointer)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in validator.iter_errors(instance)
    ]


def declared_response(document: dict, path: str, method: str, status: int):
    """The response object the document declares, and its pointer; fail when undeclared."""
    item = document["paths"][path]
    if method not in item:  # a 405: every operation of the path declares the same one
        method = next(m for m in ("get", "post", "put", "patch", "delete") if m in item)
    responses = item[method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path}: {status} is not declared"
    pointer = ["paths", _escape(path), method, "responses", str(status)]
    return _follow(document, responses[str(status)], pointer)


def check_response(document: dict, path: str, method: str, response) -> None:
    """Fail unless ``response`` is what the document says ``method path`` answers."""
    declared, pointer = declared_response(document, path, method.lower(), response.status_code)
    where = f"{method.upper()} {path} -> {response.status_code}"
    content = declared.get("content")
    if content:
        media = response.mimetype
        assert media in content, f"{where}: {media!r} is not declared ({sorted(content)})"
        schema = content[media].get("schema")
        if "x-line-schema" in content[media]:  # JSON lines: each line has the schema
            at = pointer + ["content", _escape(media), "x-line-schema"]
            for line in response.get_data(as_text=True).splitlines():
                errors = schema_errors(document, at, json.loads(line))
                assert not errors, f"{where}: a line does not match its schema: {errors}"
        elif schema is not None and media.endswith("json"):
            body = response.get_json(force=True)
            at = pointer + ["content", _escape(media), "schema"]
            errors = schema_errors(document, at, body)
            assert not errors, f"{where}: body does not match its schema: {errors}\n{body}"
    else:
        assert not response.get_data(), f"{where}: a body the document does not declare"
    for name, header in declared.get("headers", {}).items():
        header, header_at = _follow(document, header, pointer + ["headers", name])
        value = response.headers.get(name)
        if value is None:
            assert not header.get("required"), f"{where}: required header {name} is missing"
            continue
        if "schema" in header:
            errors = schema_errors(document, header_at + ["schema"], value)
            assert not errors, f"{where}: header {name}: {value!r}: {errors}"
