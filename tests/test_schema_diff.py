"""The schema diff classifies every change per SPEC §7; unclassifiable changes are breaking."""

import json

import pytest
from jsonschema import Draft4Validator, Draft202012Validator

from extframework.errors import BadRequest
from extframework.services.schema_diff import (
    BREAKING_KINDS,
    COMPATIBLE_KINDS,
    Change,
    breaking_changes,
    diff_collections,
    diff_schemas,
)


def obj(properties: dict, required: list | None = None, **keywords) -> dict:
    schema = {"type": "object", "properties": properties, **keywords}
    if required is not None:
        schema["required"] = required
    return schema


STR = {"type": "string"}
INT = {"type": "integer"}
NUM = {"type": "number"}
ORDER = obj(
    {
        "id": STR,
        "status": {"type": "string", "enum": ["open", "paid"]},
        "customer": obj({"name": STR, "address": obj({"city": STR})}),
        "lines": {"type": "array", "items": obj({"sku": STR, "qty": INT}, ["sku"])},
        "tags": {"type": "array"},
    },
    ["id"],
)


def order(**changes) -> dict:
    """Return the ORDER schema with some top-level properties replaced (None removes one)."""
    properties = {k: v for k, v in {**ORDER["properties"], **changes}.items() if v is not None}
    return {**ORDER, "properties": properties}


# (id, old schema, new schema, expected [(path, kind)], a document the old schema accepts:
#  for a breaking diff the new schema must reject it, for a compatible one it must accept it)
SCHEMA_CASES = [
    ("identical", ORDER, json.loads(json.dumps(ORDER)), [], {"id": "1"}),
    (
        "reordered keywords, enum, required, type list and annotations",
        obj({"a": {"enum": ["x", "y"], "type": ["string", "null"]}, "b": STR}, ["a", "b"]),
        {
            "required": ["b", "a"],
            "title": "Renamed title",
            "properties": {
                "b": {"type": "string", "description": "new words"},
                "a": {"type": ["null", "string"], "enum": ["y", "x", "y"]},
            },
            "type": "object",
        },
        [],
        {"a": "x", "b": "z"},
    ),
    (
        "1 and 1.0 are the same number",
        obj({"n": {"maximum": 1}}),
        obj({"n": {"maximum": 1.0}}),
        [],
        {"n": 1},
    ),
    (
        "default value spelled out",
        obj({"s": STR}),
        obj({"s": {"type": "string", "minLength": 0}}),
        [],
        {"s": ""},
    ),
    (
        "optional property added",
        ORDER,
        order(note=STR),
        [("$.note", "property_added")],
        {"id": "1"},
    ),
    (
        "new property that is required",
        ORDER,
        {**order(note=STR), "required": ["id", "note"]},
        [("$.note", "property_required")],
        {"id": "1"},
    ),
    ("property removed", ORDER, order(tags=None), [("$.tags", "property_removed")], None),
    (
        "required property removed entirely",
        ORDER,
        {**order(id=None), "required": []},
        [("$.id", "property_removed")],
        None,
    ),
    (
        "existing property made required",
        ORDER,
        {**ORDER, "required": ["id", "status"]},
        [("$.status", "property_required")],
        {"id": "1"},
    ),
    (
        "required property made optional",
        ORDER,
        {**ORDER, "required": []},
        [("$.id", "constraint_relaxed")],
        {"id": "1"},
    ),
    (
        "required keyword without properties",
        {"type": "object"},
        {"type": "object", "required": ["id"]},
        [("$.id", "property_required")],
        {},
    ),
    ("string to integer", obj({"v": STR}), obj({"v": INT}), [("$.v", "type_changed")], {"v": "1"}),
    (
        "string to enum",
        ORDER,
        order(id={"type": "string", "enum": ["a", "b"]}),
        [("$.id", "type_narrowed")],
        {"id": "c"},
    ),
    ("number to integer", obj({"v": NUM}), obj({"v": INT}), [("$.v", "type_narrowed")], {"v": 1.5}),
    (
        "integer to number",
        obj({"v": INT}),
        obj({"v": NUM}),
        [("$.v", "constraint_relaxed")],
        {"v": 2},
    ),
    (
        "nullable string to string",
        obj({"v": {"type": ["string", "null"]}}),
        obj({"v": STR}),
        [("$.v", "type_narrowed")],
        {"v": None},
    ),
    (
        "string to nullable string",
        obj({"v": STR}),
        obj({"v": {"type": ["string", "null"]}}),
        [("$.v", "constraint_relaxed")],
        {"v": "x"},
    ),
    (
        "type list swapping a member",
        obj({"v": {"type": ["string", "integer"]}}),
        obj({"v": {"type": ["string", "boolean"]}}),
        [("$.v", "type_changed")],
        {"v": 3},
    ),
    (
        "untyped property gets a type",
        obj({"v": {}}),
        obj({"v": STR}),
        [("$.v", "type_narrowed")],
        {"v": 1},
    ),
    ("type dropped", obj({"v": STR}), obj({"v": {}}), [("$.v", "constraint_relaxed")], {"v": "x"}),
    (
        "enum widened",
        ORDER,
        order(status={"type": "string", "enum": ["open", "paid", "void"]}),
        [("$.status", "enum_widened")],
        {"id": "1", "status": "paid"},
    ),
    (
        "enum narrowed",
        ORDER,
        order(status={"type": "string", "enum": ["open"]}),
        [("$.status", "enum_narrowed")],
        {"id": "1", "status": "paid"},
    ),
    (
        "enum value replaced",
        ORDER,
        order(status={"type": "string", "enum": ["open", "void"]}),
        [("$.status", "enum_narrowed")],
        {"id": "1", "status": "paid"},
    ),
    (
        "enum dropped",
        ORDER,
        order(status=STR),
        [("$.status", "enum_widened")],
        {"id": "1", "status": "paid"},
    ),
    (
        "const widened into an enum",
        obj({"v": {"const": "a"}}),
        obj({"v": {"enum": ["a", "b"]}}),
        [("$.v", "enum_widened")],
        {"v": "a"},
    ),
    (
        "true is not 1 in an enum",
        obj({"v": {"enum": [1]}}),
        obj({"v": {"enum": [True]}}),
        [("$.v", "enum_narrowed")],
        {"v": 1},
    ),
    (
        "maxLength raised",
        obj({"v": {"type": "string", "maxLength": 5}}),
        obj({"v": {"type": "string", "maxLength": 10}}),
        [("$.v", "constraint_relaxed")],
        {"v": "abcde"},
    ),
    (
        "maxLength lowered",
        obj({"v": {"type": "string", "maxLength": 10}}),
        obj({"v": {"type": "string", "maxLength": 5}}),
        [("$.v", "constraint_tightened")],
        {"v": "abcdefgh"},
    ),
    (
        "minimum added",
        obj({"v": NUM}),
        obj({"v": {"type": "number", "minimum": 0}}),
        [("$.v", "constraint_tightened")],
        {"v": -1},
    ),
    (
        "minimum removed",
        obj({"v": {"minimum": 0}}),
        obj({"v": {}}),
        [("$.v", "constraint_relaxed")],
        {"v": 3},
    ),
    (
        "minItems raised",
        obj({"v": {"type": "array", "minItems": 1}}),
        obj({"v": {"type": "array", "minItems": 2}}),
        [("$.v", "constraint_tightened")],
        {"v": [1]},
    ),
    (
        "multipleOf 2 to 4",
        obj({"v": {"multipleOf": 2}}),
        obj({"v": {"multipleOf": 4}}),
        [("$.v", "constraint_tightened")],
        {"v": 6},
    ),
    (
        "multipleOf 4 to 2",
        obj({"v": {"multipleOf": 4}}),
        obj({"v": {"multipleOf": 2}}),
        [("$.v", "constraint_relaxed")],
        {"v": 8},
    ),
    (
        "multipleOf 0.3 to 0.1",
        obj({"v": {"multipleOf": 0.3}}),
        obj({"v": {"multipleOf": 0.1}}),
        [("$.v", "constraint_relaxed")],
        None,
    ),
    (
        "uniqueItems turned on",
        obj({"v": {"type": "array"}}),
        obj({"v": {"type": "array", "uniqueItems": True}}),
        [("$.v", "constraint_tightened")],
        {"v": [1, 1]},
    ),
    (
        "format added",
        obj({"v": STR}),
        obj({"v": {"type": "string", "format": "email"}}),
        [("$.v", "constraint_tightened")],
        None,  # jsonschema does not assert format by default, so no witness
    ),
    (
        "pattern changed",
        obj({"v": {"type": "string", "pattern": "^a"}}),
        obj({"v": {"type": "string", "pattern": "^b"}}),
        [("$.v", "unclassified")],
        {"v": "abc"},
    ),
    (
        "pattern removed",
        obj({"v": {"type": "string", "pattern": "^a"}}),
        obj({"v": STR}),
        [("$.v", "constraint_relaxed")],
        {"v": "abc"},
    ),
    (
        "$ref changed",
        {**obj({"v": {"$ref": "#/$defs/a"}}), "$defs": {"a": STR, "b": INT}},
        {**obj({"v": {"$ref": "#/$defs/b"}}), "$defs": {"a": STR, "b": INT}},
        [("$.v", "unclassified")],
        {"v": "x"},
    ),
    ("$defs changed", {"$defs": {"a": STR}}, {"$defs": {"a": INT}}, [("$", "unclassified")], None),
    (
        "anyOf added",
        obj({"v": {}}),
        obj({"v": {"anyOf": [STR, INT]}}),
        [("$.v", "unclassified")],
        {"v": True},
    ),
    (
        "anyOf branches reordered",
        obj({"v": {"anyOf": [STR, INT]}}),
        obj({"v": {"anyOf": [INT, STR]}}),
        [],
        {"v": 1},
    ),
    (
        "patternProperties added",
        obj({}),
        obj({}, patternProperties={"^x": INT}),
        [("$", "unclassified")],
        {"xa": "s"},
    ),
    (
        "additionalProperties becomes false",
        obj({"a": STR}),
        obj({"a": STR}, additionalProperties=False),
        [("$.*", "unclassified")],
        {"a": "x", "b": 1},
    ),
    (
        "additionalProperties false removed",
        obj({"a": STR}, additionalProperties=False),
        obj({"a": STR}),
        [("$.*", "constraint_relaxed")],
        {"a": "x"},
    ),
    (
        "additionalProperties gets a type",
        obj({"a": STR}),
        obj({"a": STR}, additionalProperties=STR),
        [("$.*", "type_narrowed")],
        {"a": "x", "b": 1},
    ),
    (
        "property schema becomes false",
        obj({"a": STR}),
        obj({"a": False}),
        [("$.a", "unclassified")],
        {"a": "x"},
    ),
    (
        "nested optional property added",
        ORDER,
        order(customer=obj({"name": STR, "address": obj({"city": STR, "zip": STR})})),
        [("$.customer.address.zip", "property_added")],
        {"id": "1", "customer": {"address": {"city": "Oslo"}}},
    ),
    (
        "nested property removed and another made required",
        ORDER,
        order(customer=obj({"name": STR, "address": obj({})}, ["name"])),
        [("$.customer.address.city", "property_removed"), ("$.customer.name", "property_required")],
        {"id": "1", "customer": {}},
    ),
    (
        "array item property type changed",
        ORDER,
        order(lines={"type": "array", "items": obj({"sku": STR, "qty": STR}, ["sku"])}),
        [("$.lines[*].qty", "type_changed")],
        {"id": "1", "lines": [{"sku": "a", "qty": 2}]},
    ),
    (
        "array item property made required",
        ORDER,
        order(lines={"type": "array", "items": obj({"sku": STR, "qty": INT}, ["qty", "sku"])}),
        [("$.lines[*].qty", "property_required")],
        {"id": "1", "lines": [{"sku": "a"}]},
    ),
    (
        "untyped array gets item type",
        ORDER,
        order(tags={"type": "array", "items": STR}),
        [("$.tags[*]", "type_narrowed")],
        {"id": "1", "tags": [1]},
    ),
    (
        "array of strings gains null items",
        obj({"t": {"type": "array", "items": STR}}),
        obj({"t": {"type": "array", "items": {"type": ["string", "null"]}}}),
        [("$.t[*]", "constraint_relaxed")],
        {"t": ["a"]},
    ),
    (
        "tuple items changed",
        obj({"t": {"type": "array", "items": [STR]}}),
        obj({"t": {"type": "array", "items": [INT]}}),
        [("$.t", "unclassified")],
        None,  # tuple items are only valid in older drafts
    ),
    (
        "draft-4 boolean exclusiveMinimum",
        obj({"v": {"minimum": 0, "exclusiveMinimum": True}}),
        obj({"v": {"minimum": 0, "exclusiveMinimum": 1}}),
        [("$.v", "unclassified")],
        None,
    ),
    (
        "property name that is not an identifier",
        obj({"full name": STR}),
        obj({"full name": INT}),
        [('$["full name"]', "type_changed")],
        {"full name": "Ada"},
    ),
    (
        "several changes come out in a stable order",
        obj({"b": STR, "a": STR}),
        obj({"c": STR, "a": INT}, ["c"]),
        [("$.a", "type_changed"), ("$.b", "property_removed"), ("$.c", "property_required")],
        {"a": "x", "b": "y"},
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "expected", "document"),
    [case[1:] for case in SCHEMA_CASES],
    ids=[case[0] for case in SCHEMA_CASES],
)
def test_diff_schemas_classifies_each_change(old, new, expected, document):
    changes = diff_schemas("orders", old, new)

    assert [(c.path, c.kind) for c in changes] == expected
    assert all(c.collection == "orders" for c in changes)
    assert all(c.breaking == (c.kind in BREAKING_KINDS) for c in changes)
    if document is not None:
        assert Draft202012Validator(old).is_valid(document)
        assert Draft202012Validator(new).is_valid(document) == (not breaking_changes(changes))


INVOICES = {"collection": "invoices", "schema": obj({"n": INT}), "indexes": [{"fields": ["n"]}]}
NOTES = {"collection": "notes", "schema": obj({"text": STR})}

# (id, old data_schemas, new data_schemas, renames, expected [(collection, path, kind)])
COLLECTION_CASES = [
    ("unchanged", [INVOICES, NOTES], [NOTES, INVOICES], None, []),
    ("collection added", [INVOICES], [INVOICES, NOTES], None, [("notes", "$", "collection_added")]),
    (
        "collection removed",
        [INVOICES, NOTES],
        [INVOICES],
        None,
        [("notes", "$", "collection_removed")],
    ),
    (
        "collection renamed",
        [INVOICES, NOTES],
        [INVOICES, {**NOTES, "collection": "memos"}],
        {"memos": "notes"},
        [("memos", "$", "collection_renamed")],
    ),
    (
        "collection renamed and changed",
        [NOTES],
        [{"collection": "memos", "schema": obj({"text": STR, "pinned": {"type": "boolean"}})}],
        {"memos": "notes"},
        [("memos", "$", "collection_renamed"), ("memos", "$.pinned", "property_added")],
    ),
    (
        "renamed without saying so is a removal and an addition",
        [NOTES],
        [{**NOTES, "collection": "memos"}],
        None,
        [("notes", "$", "collection_removed"), ("memos", "$", "collection_added")],
    ),
    (
        "index added",
        [INVOICES],
        [{**INVOICES, "indexes": [{"fields": ["n"]}, {"fields": ["m", "n"]}]}],
        None,
        [("invoices", "$", "index_added")],
    ),
    (
        "index removed",
        [INVOICES],
        [{**INVOICES, "indexes": []}],
        None,
        [("invoices", "$", "index_removed")],
    ),
    (
        "index fields reordered",
        [{**INVOICES, "indexes": [{"fields": ["a", "b"]}]}],
        [{**INVOICES, "indexes": [{"fields": ["b", "a"]}]}],
        None,
        [("invoices", "$", "index_removed"), ("invoices", "$", "index_added")],
    ),
    (
        "index with an unknown option",
        [INVOICES],
        [{**INVOICES, "indexes": [{"fields": ["n"]}, {"fields": ["n"], "unique": True}]}],
        None,
        [("invoices", "$", "unclassified")],
    ),
    (
        "schema change inside a kept collection",
        [INVOICES, NOTES],
        [INVOICES, {**NOTES, "schema": obj({})}],
        None,
        [("notes", "$.text", "property_removed")],
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "renames", "expected"),
    [case[1:] for case in COLLECTION_CASES],
    ids=[case[0] for case in COLLECTION_CASES],
)
def test_diff_collections_classifies_each_change(old, new, renames, expected):
    changes = diff_collections(old, new, renames=renames)

    assert [(c.collection, c.path, c.kind) for c in changes] == expected
    assert all(c.breaking == (c.kind in BREAKING_KINDS) for c in changes)


def test_every_kind_is_exercised_by_the_tables():
    kinds = {kind for *_, expected, _doc in SCHEMA_CASES for _path, kind in expected}
    kinds |= {kind for *_, expected in COLLECTION_CASES for *_where, kind in expected}

    assert kinds == COMPATIBLE_KINDS | BREAKING_KINDS
    assert not COMPATIBLE_KINDS & BREAKING_KINDS


def test_rename_and_removal_carry_old_and_new():
    removed, renamed = diff_collections(
        [NOTES, INVOICES], [{**NOTES, "collection": "memos"}], renames={"memos": "notes"}
    )

    assert (removed.kind, removed.old, removed.new) == (
        "collection_removed",
        INVOICES["schema"],
        None,
    )
    assert (renamed.kind, renamed.old, renamed.new, renamed.breaking) == (
        "collection_renamed",
        "notes",
        "memos",
        True,
    )


def test_changes_carry_the_keyword_fragments():
    [narrowed] = diff_schemas("orders", ORDER, order(status={"type": "string", "enum": ["open"]}))
    [added] = diff_schemas("orders", ORDER, order(note=STR))

    assert (narrowed.old, narrowed.new) == ({"enum": ["open", "paid"]}, {"enum": ["open"]})
    assert (added.old, added.new, added.breaking) == (None, STR, False)


@pytest.mark.parametrize(
    "renames",
    [
        {"memos": "missing"},
        {"absent": "notes"},
        {"invoices": "notes"},
        {"memos": "notes", "more": "notes"},
    ],
)
def test_inconsistent_renames_are_refused(renames):
    new = [INVOICES, {**NOTES, "collection": "memos"}, {**NOTES, "collection": "more"}]

    with pytest.raises(BadRequest) as caught:
        diff_collections([INVOICES, NOTES], new, renames=renames)

    assert caught.value.errors and all(e["pointer"] == "/data_schemas" for e in caught.value.errors)


def test_to_dict_is_json_serialisable():
    old = [INVOICES, NOTES]
    new = [
        {**INVOICES, "schema": obj({"n": {"type": "integer", "maximum": 2.0}}), "indexes": []},
        {"collection": "memos", "schema": obj({"text": INT}, ["text"])},
    ]
    changes = diff_collections(old, new, renames={"memos": "notes"})

    encoded = json.loads(json.dumps([c.to_dict() for c in changes]))

    assert {e["kind"] for e in encoded} >= {"collection_renamed", "type_changed", "index_removed"}
    assert all(set(e) == {"collection", "path", "kind", "breaking", "old", "new"} for e in encoded)
    assert {
        "collection": "invoices",
        "path": "$.n",
        "kind": "constraint_tightened",
        "breaking": True,
        "old": None,
        "new": {"maximum": 2},
    } in encoded


def test_breaking_changes_keeps_only_breaking():
    changes = [
        Change("c", "$.a", "property_added", False, None, STR),
        Change("c", "$.b", "unclassified", True, STR, INT),
    ]

    assert breaking_changes(changes) == [changes[1]]
    assert breaking_changes([]) == []


def test_draft4_schema_witness_for_boolean_exclusive_minimum():
    old = obj({"v": {"minimum": 0, "exclusiveMinimum": False}})
    new = obj({"v": {"minimum": 0, "exclusiveMinimum": True}})

    [change] = diff_schemas("c", old, new)

    assert change.kind == "unclassified" and change.breaking
    assert Draft4Validator(old).is_valid({"v": 0}) and not Draft4Validator(new).is_valid({"v": 0})
