"""`format` is asserted, not just annotated (SPEC §5): a bad value is 422 and nothing is stored."""

import pytest

from extframework.db import database
from extframework.models import Document

PROBLEM = "application/problem+json"
FORMATS = {  # format: (a value it refuses, a value it accepts)
    "uri": ("http://[bad", "https://example.com/a?b=c"),
    "uri-reference": ("http://[bad", "../notes/1"),
    "date-time": ("2024-13-01T00:00:00Z", "2024-01-31T23:59:59+02:00"),
    "date": ("2024-02-30", "2024-02-29"),
    "time": ("25:00:00Z", "12:00:00Z"),
    "duration": ("P1Q", "P1DT2H"),
    "email": ("nobody", "someone@example.com"),
    "hostname": ("-bad-", "example.com"),
    "ipv4": ("999.1.1.1", "192.0.2.1"),
    "ipv6": ("1::2::3", "2001:db8::1"),
    "uuid": ("not-a-uuid", "123e4567-e89b-12d3-a456-426614174000"),
    "json-pointer": ("a/b", "/a/b"),
    "regex": ("(a", "^a+$"),
    "uri-template": ("http://example.com/{a", "http://example.com/{a}"),
}


@pytest.fixture
def api(make_storage_plugin, plugin_api):
    schema = {
        "type": "object",
        "properties": {name: {"type": "string", "format": name} for name in FORMATS},
    }
    _, token = make_storage_plugin("acme-forms", [{"collection": "values", "schema": schema}])
    return plugin_api(token)


def stored(app) -> int:
    with app.app_context(), database.connection_context():
        return Document.select().count()


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_a_value_that_breaks_its_format_is_refused_and_nothing_is_stored(app, api, name):
    bad, _ = FORMATS[name]
    response = api.create("values", {name: bad})
    assert response.status_code == 422, response.get_json()
    assert response.content_type == PROBLEM
    [error] = response.get_json()["errors"]
    assert error["pointer"] == f"/{name}" and error["keyword"] == "format"
    assert stored(app) == 0


def test_values_that_keep_their_formats_are_stored(app, api):
    response = api.create("values", {name: good for name, (_, good) in FORMATS.items()})
    assert response.status_code == 201, response.get_json()
    assert stored(app) == 1


def test_a_patch_is_checked_against_the_format_on_the_merged_document(app, api):
    created = api.create("values", {"uri": "https://example.com/"}).get_json()
    response = api.patch("values", created["id"], {"uri": "http://[bad"})
    assert response.status_code == 422
    assert api.read("values", created["id"]).get_json()["data"] == {"uri": "https://example.com/"}


def test_format_regex_compiles_with_re2_as_patterns_do(api):
    backreference = api.create("values", {"regex": r"(a)\1"})
    assert backreference.status_code == 422
    assert backreference.get_json()["errors"][0]["keyword"] == "format"
