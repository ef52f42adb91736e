"""The manifest meta-schema and the checks beyond it (SPEC §2): every error, with its pointer."""

import pytest
from jsonschema import Draft202012Validator

from extframework.errors import BadRequest
from extframework.services.manifest import meta_schema, validate_manifest
from tests.support.registry_fixtures import sample_manifest

SPEC_EXAMPLE = {
    "plugin_id": "acme-billing",
    "name": "Acme Billing",
    "version": "1.2.0",
    "base_url": "http://127.0.0.1:9001/plugin",
    "menu_items": [
        {
            "id": "invoices",
            "label": "Invoices",
            "view": {"method": "GET", "path": "/invoices"},
            "actions": [
                {"id": "create", "method": "POST", "path": "/invoices"},
                {"id": "void", "method": "DELETE", "path": "/invoices/:id"},
            ],
        }
    ],
    "data_schemas": [
        {
            "collection": "invoices",
            "schema": {"type": "object", "properties": {"customer_id": {"type": "string"}}},
            "indexes": [{"fields": ["customer_id"]}],
        }
    ],
    "migration": {"path": "/migrations/1.2.0", "timeout_s": 300},
}


def errors_of(manifest) -> dict[str, str]:
    with pytest.raises(BadRequest) as caught:
        validate_manifest(manifest)
    assert caught.value.status == 400 and caught.value.slug == "invalid-manifest"
    assert all(set(e) == {"pointer", "keyword", "message"} for e in caught.value.errors)
    return {e["pointer"]: e["message"] for e in caught.value.errors}


def test_meta_schema_is_itself_a_valid_2020_12_schema():
    Draft202012Validator.check_schema(meta_schema())
    assert meta_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_spec_example_is_valid_and_gets_defaults():
    manifest = validate_manifest(SPEC_EXAMPLE)
    assert manifest["menu_items"][0]["view"]["mode"] == "inline"
    assert manifest["data_schemas"][0]["indexes"] == [{"fields": ["customer_id"]}]
    assert SPEC_EXAMPLE["menu_items"][0]["view"] == {"method": "GET", "path": "/invoices"}


def test_menus_and_schemas_are_optional():
    manifest = validate_manifest(
        {"plugin_id": "bare", "name": "Bare", "version": "0.1.0", "base_url": "https://x.test"}
    )
    assert manifest["menu_items"] == [] and manifest["data_schemas"] == []


def test_every_error_is_listed_with_its_path():
    manifest = sample_manifest(
        plugin_id="Bad_Id",
        version="1.2",
        base_url="ftp://example.test",
        colour="blue",
    )
    del manifest["name"]
    manifest["menu_items"][0]["view"]["path"] = "/items/../secret"
    manifest["menu_items"][0]["actions"][0]["method"] = "GET"
    manifest["data_schemas"][0]["indexes"] = [{"fields": ["a b"]}]
    errors = errors_of(manifest)
    assert set(errors) == {
        "/plugin_id",
        "/version",
        "/base_url",
        "/colour",
        "/name",
        "/menu_items/0/view/path",
        "/menu_items/0/actions/0/method",
        "/data_schemas/0/indexes/0/fields/0",
    }
    assert "semantic version" in errors["/version"]
    assert errors["/name"] == "is required"
    assert "not a known field" in errors["/colour"]


@pytest.mark.parametrize(
    ("schema_patch", "path", "message"),
    [
        ({"type": "strin"}, "/data_schemas/0/schema/type", "is not valid"),
        (
            {"properties": {"title": {"minLength": -1}}},
            "/data_schemas/0/schema/properties/title/minLength",
            "",
        ),
        (
            {"properties": {"code": {"pattern": "(unclosed"}}},
            "/data_schemas/0/schema/properties/code/pattern",
            "regex",
        ),
        (
            {"properties": {"x": {"$ref": "https://evil.test/schema.json"}}},
            "/data_schemas/0/schema/properties/x/$ref",
            "local references",
        ),
        ({"$id": "https://evil.test/base"}, "/data_schemas/0/schema/$id", "not allowed"),
        (
            {"$schema": "http://json-schema.org/draft-07/schema#"},
            "/data_schemas/0/schema/$schema",
            "2020-12",
        ),
    ],
)
def test_an_invalid_embedded_schema_is_named_by_its_path(schema_patch, path, message):
    manifest = sample_manifest()
    manifest["data_schemas"][0]["schema"].update(schema_patch)
    errors = errors_of(manifest)
    assert path in errors, errors
    assert message in errors[path]


def test_local_references_are_fine():
    manifest = sample_manifest()
    manifest["data_schemas"][0]["schema"] = {
        "type": "object",
        "$defs": {"name": {"type": "string"}},
        "properties": {"title": {"$ref": "#/$defs/name"}},
    }
    validate_manifest(manifest)


def test_duplicate_ids_routes_collections_and_indexes_are_errors():
    manifest = sample_manifest()
    item = manifest["menu_items"][0]
    manifest["menu_items"].append({"id": "items", "label": "Again", "view": {"path": "/other"}})
    item["actions"].append({"id": "create", "method": "POST", "path": "/elsewhere"})
    item["actions"].append({"id": "remove", "method": "DELETE", "path": "/items/:key"})
    entry = manifest["data_schemas"][0]
    entry["indexes"].append({"fields": ["title"]})
    manifest["data_schemas"].append({"collection": "items", "schema": {}})
    errors = errors_of(manifest)
    assert "duplicate menu item id 'items'" in errors["/menu_items/1/id"]
    assert "duplicate action id 'create'" in errors["/menu_items/0/actions/2/id"]
    assert "already declared" in errors["/menu_items/0/actions/3/path"]
    assert "duplicate index" in errors["/data_schemas/0/indexes/1"]
    assert "duplicate collection 'items'" in errors["/data_schemas/1/collection"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("plugin_id", "acme-billing\n"),
        ("plugin_id", "acme--billing"),
        ("plugin_id", "a" * 65),
        ("base_url", "http://user:pw@127.0.0.1/x"),
        ("base_url", "http://127.0.0.1/x?debug=1"),
        ("base_url", "javascript:alert(1)"),
        ("version", "01.0.0"),
        ("version", "1.0.0\n"),
    ],
)
def test_identifiers_urls_and_versions_follow_the_spec(field, value):
    assert f"/{field}" in errors_of(sample_manifest(**{field: value}))


def test_replaces_and_migration_are_accepted():
    manifest = sample_manifest(migration={"path": "/migrate/2.0.0", "timeout_s": 60})
    manifest["data_schemas"][0]["replaces"] = "things"
    validate_manifest(manifest)
    manifest["data_schemas"][0]["replaces"] = "items"
    assert "/data_schemas/0/replaces" in errors_of(manifest)


@pytest.mark.parametrize("value", [None, [], "manifest", 3, {"plugin_id": []}])
def test_non_objects_and_wrong_types_are_400_not_crashes(value):
    errors = errors_of(value)
    assert errors


def test_deep_nesting_is_refused_without_recursion():
    deep: dict = {}
    node = deep
    for _ in range(5000):
        node["x"] = {}
        node = node["x"]
    manifest = sample_manifest()
    manifest["data_schemas"][0]["schema"] = {"type": "object", "properties": {"x": deep}}
    errors = errors_of(manifest)
    assert any("nested deeper" in message for message in errors.values())
