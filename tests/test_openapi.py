"""The OpenAPI document is valid, lists every API route the app serves, and is precise.

Precise: the manifest is the published meta-schema, problem types come from the catalog, every
operation declares the statuses and headers the API can answer with, and request bodies say
exactly which fields each endpoint takes. ``tests/test_openapi_responses.py`` checks real
answers against it.
"""

import re

import pytest
from openapi_spec_validator import validate

from extframework.blueprints import auth, registry
from extframework.openapi import openapi_document
from extframework.problems import PROBLEM_KINDS, problem_type
from extframework.services.manifest import meta_schema

OPENAPI_METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def document() -> dict:
    return openapi_document()


def operations(document: dict):
    for path, item in document["paths"].items():
        for method in OPENAPI_METHODS:
            if method in item:
                yield path, method, item[method]


def follow(document: dict, node: dict) -> dict:
    """Follow ``$ref``s (components only) until a concrete object."""
    while isinstance(node, dict) and "$ref" in node:
        target = document
        for part in node["$ref"][2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def test_openapi_document_is_valid_openapi_3_1(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    validate(document)


def expand_any_converters(rule: str) -> list[str]:
    """Turn ``<any(a, b):verb>`` into one literal path per choice."""
    match = re.search(r"<any\(([^)]*)\):[^>]+>", rule)
    if not match:
        return [rule]
    choices = [c.strip() for c in match.group(1).split(",")]
    return [p for c in choices for p in expand_any_converters(rule.replace(match.group(0), c, 1))]


def test_every_api_route_is_documented_with_exactly_its_methods(app, document):
    documented = {(path, method.upper()) for path, method, _ in operations(document)}
    served = set()
    for rule in app.url_map.iter_rules():
        api = rule.rule.startswith(("/api/", "/.well-known/")) or rule.rule == "/healthz"
        if not api or rule.rule == "/api/bench/noop":  # only with BENCH_ROUTES
            continue
        for path in expand_any_converters(rule.rule):
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", path)
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                served.add((path, method))
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"


def inline_refs(schema: object, lookup) -> object:
    """Replace every ``$ref`` by what it names (the manifest schema has no recursion)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            return {**inline_refs(lookup(schema["$ref"]), lookup), **inline_refs(rest, lookup)}
        return {k: inline_refs(v, lookup) for k, v in schema.items()}
    if isinstance(schema, list):
        return [inline_refs(v, lookup) for v in schema]
    return schema


def test_manifest_is_the_published_meta_schema(document):
    published = meta_schema()
    expected = inline_refs(
        {k: v for k, v in published.items() if k not in ("$schema", "$id", "$defs")},
        lambda ref: published["$defs"][ref.removeprefix("#/$defs/")],
    )
    embedded = document["components"]["schemas"]["Manifest"]
    actual = inline_refs(embedded, lambda ref: follow(document, {"$ref": ref}))
    assert actual == expected
    for path, method in [
        ("/api/registry/plugins", "post"),
        ("/api/registry/plugins/{plugin_id}", "put"),
    ]:
        body = document["paths"][path][method]["requestBody"]["content"]["application/json"]
        assert body["schema"] == {"$ref": "#/components/schemas/Manifest"}


def test_problem_types_are_the_catalog(document):
    problem = document["components"]["schemas"]["Problem"]
    listed = problem["properties"]["type"]["oneOf"]
    assert {entry["const"] for entry in listed} == {problem_type(s) for s in PROBLEM_KINDS}
    table = document["x-problem-types"]
    assert {row["type"]: row["status"] for row in table} == {
        problem_type(slug): kind.status for slug, kind in PROBLEM_KINDS.items()
    }
    for slug in PROBLEM_KINDS:
        assert problem_type(slug) in document["info"]["description"]
    error = follow(document, problem["properties"]["errors"]["items"])
    assert set(error["required"]) == {"pointer", "keyword", "message"}
    assert set(error["properties"]) >= {"pointer", "keyword", "message", "index"}


def declared(document: dict, operation: dict, status: int) -> dict | None:
    response = operation["responses"].get(str(status))
    return None if response is None else follow(document, response)


def test_every_operation_declares_the_errors_it_can_answer(document):
    missing = []
    for path, method, operation in operations(document):
        wanted = {405, 503}  # every request opens a database connection first
        if operation.get("security", document.get("security")):
            wanted.add(401)
        if "requestBody" in operation:
            wanted |= {400, 413}
        missing += [
            f"{method} {path}: {s}" for s in sorted(wanted) if not declared(document, operation, s)
        ]
    assert missing == []


def test_error_responses_declare_their_headers(document):
    wrong = []
    needs = {401: "WWW-Authenticate", 405: "Allow", 429: "Retry-After"}
    for path, method, operation in operations(document):
        for status, header in needs.items():
            response = declared(document, operation, status)
            given = follow(document, (response or {}).get("headers", {}).get(header, {}))
            if response is not None and not given.get("required"):
                wrong.append(f"{method} {path} {status} lacks a required {header}")
        for status, response in operation["responses"].items():
            response = follow(document, response)
            if status.startswith(("4", "5")):
                media = set(response.get("content", {}))
                if media != {"application/problem+json"}:
                    wrong.append(f"{method} {path} {status} is not problem+json: {media}")
        unavailable = declared(document, operation, 503)
        if unavailable is not None and "Retry-After" not in unavailable.get("headers", {}):
            wrong.append(f"{method} {path} 503 lacks Retry-After")
    assert wrong == []


def test_answers_declare_location_etag_and_cache_control(document):
    paths = document["paths"]
    created = follow(document, paths["/api/storage/{collection}"]["post"]["responses"]["201"])

    def required(response: dict, name: str) -> bool:
        return follow(document, response["headers"][name])["required"]

    assert required(created, "Location") and required(created, "ETag")
    registered = follow(document, paths["/api/registry/plugins"]["post"]["responses"]["201"])
    assert required(registered, "Location")
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            assert required(follow(document, response), "Cache-Control"), (path, method, status)
    for method in ("get", "patch"):
        doc = follow(
            document, paths["/api/storage/{collection}/{doc_id}"][method]["responses"]["200"]
        )
        assert required(doc, "ETag")


def open_objects(schema: object, where: str = "") -> list[str]:
    """Object schemas that say nothing of their members: neither properties nor a rule for
    additional ones (an intentionally open object says ``additionalProperties: true``)."""
    found = []
    if isinstance(schema, dict):
        if schema.get("type") == "object" and not {
            "properties",
            "additionalProperties",
            "$ref",
        } & set(schema):
            found.append(where or "(root)")
        for key, value in schema.items():
            found += open_objects(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            found += open_objects(value, f"{where}/{i}")
    return found


def test_no_schema_is_a_bare_object(document):
    # The manifest's components are the published meta-schema, checked above as it is.
    ours = {k: v for k, v in document["components"]["schemas"].items() if "Manifest" not in k}
    assert open_objects(ours, "#/components/schemas") == []
    assert open_objects(document["paths"], "#/paths") == []


def test_every_success_answer_has_a_schema_with_required_members(document):
    vague = []
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            response = follow(document, response)
            if not status.startswith("2") or "content" not in response:
                continue
            for media, content in response["content"].items():
                schema = follow(document, content.get("schema", {}))
                if media != "application/x-ndjson" and not schema.get("required"):
                    vague.append(f"{method} {path} {status} {media}")
    assert vague == []


# The request bodies the blueprints check field by field (extframework.http.body_fields).
BODY_FIELDS = [
    ("/api/auth/token", "post", auth.CREDENTIALS),
    ("/api/registry/plugins/{plugin_id}/disable", "post", registry.STATE_CHANGE),
    ("/api/registry/plugins/{plugin_id}/enable", "post", registry.STATE_CHANGE),
    ("/api/registry/plugins/{plugin_id}/deregister", "post", registry.STATE_CHANGE),
    ("/api/registry/pending-updates/{pending_id}/approve", "post", registry.REASON),
    ("/api/registry/pending-updates/{pending_id}/reject", "post", registry.REASON),
    ("/api/registry/plugins/{plugin_id}/tenants", "put", registry.TENANTS),
    ("/api/registry/plugins/{plugin_id}/tenants/{tenant}/uninstall-policy", "put", registry.POLICY),
    ("/api/registry/plugins/{plugin_id}/migration/retry", "post", {}),
]


@pytest.mark.parametrize(("path", "method", "fields"), BODY_FIELDS)
def test_request_bodies_name_exactly_the_fields_the_endpoint_takes(document, path, method, fields):
    body = document["paths"][path][method]["requestBody"]
    schema = follow(document, body["content"]["application/json"]["schema"])
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert set(schema.get("properties", {})) == set(fields)
    assert set(schema.get("required", [])) == {n for n, f in fields.items() if f.required}
    assert body["required"] == any(f.required for f in fields.values())


def test_problem_types_are_read_from_the_catalog_when_the_document_is_built(monkeypatch):
    from extframework import problems

    kinds = {**problems.PROBLEM_KINDS, "new-kind": problems.ProblemKind(409, "New", "Added.")}
    monkeypatch.setattr(problems, "PROBLEM_KINDS", kinds)
    fresh = openapi_document.__wrapped__()
    choices = fresh["components"]["schemas"]["Problem"]["properties"]["type"]["oneOf"]
    assert {"const": problem_type("new-kind"), "title": "New", "description": "Added."} in choices
    assert problem_type("new-kind") in fresh["info"]["description"]
    conflict = fresh["paths"]["/api/registry/plugins/{plugin_id}/enable"]["post"]["responses"]
    assert "new-kind" not in conflict["409"]["description"]  # narrowed to what enable answers
    retry = fresh["paths"]["/api/registry/pending-updates/{pending_id}/approve"]["post"]
    assert problem_type("new-kind") in retry["responses"]["409"]["description"]  # every 409


# Values the API refuses with 400 (or 404 from the router) that the document must call invalid,
# so a client generating "valid" requests from it never sends them (Schemathesis ST202).
REFUSED_PARAMETERS = [
    ("/api/storage/{collection}", "get", "X-Tenant-ID", ""),
    ("/api/storage/{collection}/{doc_id}", "delete", "X-Tenant-ID", "  "),
    ("/api/storage/{collection}", "get", "sort", ""),
    ("/api/storage/{collection}", "get", "sort", "title,,count"),
    ("/api/storage/{collection}", "get", "cursor", ""),
    ("/api/registry/plugins/{plugin_id}/diff", "get", "from", ""),
    ("/api/registry/pending-updates/{pending_id}/approve", "post", "pending_id", 2**63),
    ("/api/registry/plugins/{plugin_id}/tenants/{tenant}/uninstall-policy", "put", "tenant", ""),
]


@pytest.mark.parametrize(("path", "method", "name", "value"), REFUSED_PARAMETERS)
def test_parameters_the_api_refuses_are_invalid_in_the_document(
    document, path, method, name, value
):
    from tests.support.openapi_check import schema_errors

    parameters = document["paths"][path][method]["parameters"]
    index = next(i for i, p in enumerate(parameters) if p["name"] == name)
    pointer = ["paths", path.replace("/", "~1"), method, "parameters", str(index), "schema"]
    assert schema_errors(document, pointer, value)


def test_a_tenant_list_naming_a_blank_tenant_is_invalid_in_the_document(document):
    from tests.support.openapi_check import schema_errors

    path = "/api/registry/plugins/{plugin_id}/tenants".replace("/", "~1")
    pointer = ["paths", path, "put", "requestBody", "content", "application~1json", "schema"]
    assert schema_errors(document, pointer, {"tenants": [""]})
    assert not schema_errors(document, pointer, {"tenants": ["default", "acme"]})
    assert not schema_errors(document, pointer, {"tenants": None})
