"""The OpenAPI document is valid and lists every API route the app serves."""

import re

from openapi_spec_validator import validate

OPENAPI_METHODS = {"get", "post", "put", "patch", "delete"}


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


def test_every_api_route_is_documented_and_nothing_else(app, client):
    documented = {
        (path, method.upper())
        for path, item in client.get("/api/openapi.json").get_json()["paths"].items()
        for method in item
        if method in OPENAPI_METHODS
    }
    served = set()
    for rule in app.url_map.iter_rules():
        if not (rule.rule.startswith("/api/") or rule.rule.startswith("/.well-known/")):
            continue
        if rule.rule in ("/api/openapi.json", "/api/bench/noop"):
            continue
        for path in expand_any_converters(rule.rule):
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", path)
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                served.add((path, method))
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"
