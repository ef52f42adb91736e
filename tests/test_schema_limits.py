"""A collection schema has a cost limit, and a plugin a quota on what it declares (issue 11).

Registration and update refuse schemas the core cannot validate cheaply ($ref cycles,
exponential expansion, patterns RE2 cannot compile) and manifests over the quotas; writes run
patterns through RE2 and under a step budget; query typing is bounded in breadth.
"""

import json
import threading

import pytest
import requests

from extframework import create_app, db
from extframework.db import database
from extframework.models import Collection, Plugin
from tests.support.processes import start_core
from tests.support.registry_fixtures import sample_manifest
from tests.support.storage_fixtures import provision_in_instance, provision_plugin

REDOS = "^(a+)+$"
EVIL = "a" * 40 + "!"
DRAFT_07 = "http://json-schema.org/draft-07/schema#"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def obj(**properties) -> dict:
    return {"type": "object", "properties": properties}


def anyof_ladder(levels: int, width: int = 2) -> dict:
    """Each level is an anyOf of ``width`` references to the next: width**levels to validate."""
    defs = {
        f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i + 1}"} for _ in range(width)]}
        for i in range(levels)
    }
    defs[f"d{levels}"] = {"type": "string"}
    return {
        "type": "object",
        "$defs": defs,
        "properties": {"x": {"$ref": "#/$defs/d0"}, "title": {"type": "string"}},
    }


def ref_chain(length: int) -> dict:
    defs = {f"c{i}": {"$ref": f"#/$defs/c{i + 1}"} for i in range(length)}
    defs[f"c{length}"] = {"type": "string"}
    return {"type": "object", "$defs": defs, "properties": {"x": {"$ref": "#/$defs/c0"}}}


def collection(schema: dict, name: str = "items", indexes: list | None = None) -> dict:
    return {"collection": name, "schema": schema, "indexes": indexes or []}


def many_indexes(count: int) -> list[dict]:
    return [{"fields": [f"f{i}"]} for i in range(count)]


# Each case: the data_schemas of a manifest the core must refuse, where, and what it says.
REFUSED = {
    "backreference": (
        [collection(obj(code={"type": "string", "pattern": "^(a)\\1$"}))],
        "/data_schemas/0/schema/properties/code/pattern",
        "RE2",
    ),
    "lookahead": (
        [collection(obj(code={"type": "string", "pattern": "^(?=a)a+$"}))],
        "/data_schemas/0/schema/properties/code/pattern",
        "RE2",
    ),
    "lookbehind in patternProperties": (
        [collection({"type": "object", "patternProperties": {"(?<=x)y": {"type": "string"}}})],
        "/data_schemas/0/schema/patternProperties/(?<=x)y",
        "RE2",
    ),
    "self reference": (
        [collection({"type": "object", "$ref": "#"})],
        "/data_schemas/0/schema/$ref",
        "cycle",
    ),
    "cycle through $defs": (
        [
            collection(
                {
                    "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}},
                    "properties": {"x": {"$ref": "#/$defs/a"}},
                }
            )
        ],
        "/data_schemas/0/schema/$defs/b/allOf/0/$ref",
        "cycle",
    ),
    "cycle through definitions and an anchor": (
        [
            collection(
                {
                    "definitions": {"n": {"$anchor": "node", "items": {"$ref": "#node"}}},
                    "properties": {"x": {"$ref": "#/definitions/n"}},
                }
            )
        ],
        "/data_schemas/0/schema/definitions/n/items/$ref",
        "cycle",
    ),
    "unresolvable pointer": (
        [collection(obj(x={"$ref": "#/$defs/missing"}))],
        "/data_schemas/0/schema/properties/x/$ref",
        "does not resolve",
    ),
    "unresolvable anchor": (
        [collection(obj(x={"$ref": "#nowhere"}))],
        "/data_schemas/0/schema/properties/x/$ref",
        "does not resolve",
    ),
    "reference to a non-schema": (
        [collection({"properties": {"x": {"$ref": "#/required/0"}}, "required": ["x"]})],
        "/data_schemas/0/schema/properties/x/$ref",
        "not a schema",
    ),
    "24 nested anyOf of two refs": (
        [collection(anyof_ladder(24))],
        "/data_schemas/0/schema",
        "SCHEMA_MAX_NODES",
    ),
    "too many references": (
        [
            collection(
                {
                    "$defs": {"s": {"type": "string"}},
                    "properties": {f"p{i}": {"$ref": "#/$defs/s"} for i in range(300)},
                }
            )
        ],
        "/data_schemas/0/schema",
        "SCHEMA_MAX_REFS",
    ),
    "reference chain too deep": (
        [collection(ref_chain(100))],
        "/data_schemas/0/schema",
        "SCHEMA_MAX_DEPTH",
    ),
    "raw schema too large": (
        [collection(obj(x={"type": "string", "description": "x" * 70_000}))],
        "/data_schemas/0/schema",
        "SCHEMA_MAX_BYTES",
    ),
    "a subschema naming another dialect": (
        [collection(obj(code={"$schema": DRAFT_07, "type": "string", "pattern": REDOS}))],
        "/data_schemas/0/schema/properties/code/$schema",
        "Draft 2020-12",
    ),
    "too many collections": (
        [collection(obj(), name=f"c{i}") for i in range(101)],
        "/data_schemas",
        "too long",  # the manifest schema's maxItems: 100
    ),
    "too many indexes in a collection": (
        [collection(obj(), indexes=many_indexes(17))],
        "/data_schemas/0/indexes",
        "too long",  # the manifest schema's maxItems: 16
    ),
    "too many indexes in a plugin": (
        [collection(obj(), name=f"c{i}", indexes=many_indexes(16)) for i in range(5)],
        "/data_schemas",
        "PLUGIN_MAX_INDEXES",
    ),
    "manifest too large": (
        [
            collection(obj(x={"type": "string", "description": "x" * 60_000}), name=f"c{i}")
            for i in range(5)
        ],
        "",
        "MANIFEST_MAX_BYTES",
    ),
}


def refusal(response, path: str, words: str) -> None:
    assert response.status_code == 400, response.get_json()
    assert response.mimetype == "application/problem+json"
    errors = {e["pointer"]: e["message"] for e in response.get_json()["errors"]}
    assert path in errors, errors
    assert words in errors[path], errors[path]


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_registration_refuses_a_schema_or_manifest_over_its_limits(
    app, client, enrolment_key, case
):
    data_schemas, path, words = REFUSED[case]
    manifest = sample_manifest(data_schemas=data_schemas)
    response = client.post("/api/registry/plugins", json=manifest, headers=bearer(enrolment_key))
    refusal(response, path, words)
    with app.app_context():
        assert Plugin.select().count() == 0 and Collection.select().count() == 0


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_an_update_over_the_limits_is_refused_and_changes_nothing(app, client, make_plugin, case):
    _, token = make_plugin()
    data_schemas, path, words = REFUSED[case]
    manifest = sample_manifest(version="1.1.0", data_schemas=data_schemas)
    if case not in ("too many collections", "too many indexes in a plugin", "manifest too large"):
        # Keep the installed collection so the update is otherwise compatible.
        manifest["data_schemas"] = [sample_manifest()["data_schemas"][0], *data_schemas]
        manifest["data_schemas"][1]["collection"] = "extra"
        path = path.replace("/data_schemas/0", "/data_schemas/1")
    response = client.put("/api/registry/plugins/test-plugin", json=manifest, headers=bearer(token))
    refusal(response, path, words)
    own = client.get("/api/registry/plugins/test-plugin", headers=bearer(token)).get_json()
    assert own["version"] == "1.0.0"
    with app.app_context():
        assert [c.name for c in Collection.select()] == ["items"]


def test_the_refusal_names_the_collection_and_the_limit(client, enrolment_key):
    manifest = sample_manifest(data_schemas=[collection(anyof_ladder(24), name="ledger")])
    response = client.post("/api/registry/plugins", json=manifest, headers=bearer(enrolment_key))
    message = response.get_json()["errors"][0]["message"]
    assert "'ledger'" in message and "10000" in message and "$ref" in message


def test_ordinary_schemas_stay_accepted(make_plugin):
    tree = {
        "type": "object",
        "$defs": {
            "address": obj(street={"type": "string"}, city={"type": "string"}),
            "name": {"$anchor": "name", "type": "string", "pattern": "^[A-Z][a-z]+$"},
        },
        "properties": {
            "home": {"$ref": "#/$defs/address"},
            "work": {"$ref": "#/$defs/address"},
            "first": {"$ref": "#name"},
            "tags": {"type": "array", "items": {"type": "string", "pattern": "^\\w+$"}},
        },
        "patternProperties": {"^x-[a-z]+$": {"type": "string"}},
    }
    data_schemas = [
        collection(tree, indexes=many_indexes(16)),
        *(collection(obj(), name=f"c{i}", indexes=many_indexes(16)) for i in range(3)),
    ]
    plugin, _ = make_plugin(data_schemas=data_schemas)
    assert plugin.version == "1.0.0"


def test_operators_can_raise_a_quota(tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "DATABASE": str(tmp_path / "core.sqlite3"),
            "HEALTH_MONITOR": False,
            "PLUGIN_MAX_INDEXES": 80,
        },
        instance_path=str(tmp_path / "instance"),
    )
    with app.app_context():
        db.upgrade()
        data_schemas = [collection(obj(), name=f"c{i}", indexes=many_indexes(16)) for i in range(5)]
        plugin, _ = provision_plugin("acme-notes", data_schemas)
    assert plugin.plugin_id == "acme-notes"


# --- writes -----------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_redos_pattern_is_matched_by_re2_at_write_time(make_storage_plugin, plugin_api):
    schema = obj(code={"type": "string", "pattern": REDOS})
    _, token = make_storage_plugin(data_schemas=[collection(schema, name="codes")])
    api = plugin_api(token)
    assert api.create("codes", {"code": "aaaa"}).status_code == 201
    response = api.create("codes", {"code": EVIL})
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["pointer"] == "/code"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("closed_by", ["additionalProperties", "unevaluatedProperties"])
def test_a_redos_property_pattern_is_matched_by_re2(make_storage_plugin, plugin_api, closed_by):
    schema = {"type": "object", "patternProperties": {REDOS: {"type": "integer"}}, closed_by: False}
    _, token = make_storage_plugin(data_schemas=[collection(schema, name="codes")])
    api = plugin_api(token)
    assert api.create("codes", {"aaa": 1}).status_code == 201
    response = api.create("codes", {EVIL: 1})
    assert response.status_code == 422
    assert EVIL in json.dumps(response.get_json())


def store_schema_unchecked(app, plugin_id: str, name: str, schema: dict) -> None:
    """Put a schema in place as a core without these limits would have registered it."""
    with app.app_context():
        plugin_row = Collection.select().where(Collection.name == name).get()
        assert plugin_row.plugin.plugin_id == plugin_id
        Collection.update(schema=schema).where(Collection.id == plugin_row.id).execute()


@pytest.mark.timeout(60)
def test_an_exponential_schema_registered_earlier_is_cut_off_by_the_budget(
    app, make_storage_plugin, plugin_api
):
    plugin_id, token = make_storage_plugin(data_schemas=[collection(obj(), name="things")])
    store_schema_unchecked(app, plugin_id, "things", anyof_ladder(24))
    api = plugin_api(token)
    response = api.create("things", {"x": 1})
    assert response.status_code == 422
    assert "VALIDATION_MAX_" in response.get_json()["detail"]  # steps or time, whichever first
    assert api.query("things").get_json()["items"] == []


@pytest.mark.timeout(30)
def test_a_subschema_naming_another_dialect_registered_earlier_is_still_matched_by_re2(
    app, make_storage_plugin, plugin_api
):
    """jsonschema picks a subschema's validator from its own ``$schema``: a plain one would
    match the pattern with Python's backtracking ``re``, outside the step budget."""
    plugin_id, token = make_storage_plugin(data_schemas=[collection(obj(), name="codes")])
    nested = {"$schema": DRAFT_07, "type": "string", "pattern": REDOS}
    store_schema_unchecked(app, plugin_id, "codes", obj(code=nested))
    api = plugin_api(token)
    assert api.create("codes", {"code": "aaaa"}).status_code == 201
    response = api.create("codes", {"code": EVIL})
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["pointer"] == "/code"


@pytest.mark.timeout(60)
def test_a_reference_cycle_registered_earlier_is_a_422_not_a_500(
    app, make_storage_plugin, plugin_api
):
    plugin_id, token = make_storage_plugin(data_schemas=[collection(obj(), name="things")])
    store_schema_unchecked(app, plugin_id, "things", {"type": "object", "$ref": "#"})
    response = plugin_api(token).create("things", {"x": 1})
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"


@pytest.fixture
def small_budget_app(tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "DATABASE": str(tmp_path / "core.sqlite3"),
            "HEALTH_MONITOR": False,
            "VALIDATION_MAX_STEPS": 300,
            "VALIDATION_MAX_MS": 60_000,  # the steps run out first, however loaded the machine
        },
        instance_path=str(tmp_path / "instance"),
    )
    with app.app_context():
        db.upgrade()
    return app


def test_a_document_over_the_step_budget_is_refused_and_nothing_is_stored(small_budget_app):
    schema = anyof_ladder(8)  # 2**8 branches: within the static limits, over 300 steps
    with small_budget_app.app_context():
        _, token = provision_plugin("acme-notes", [collection(schema, name="things")])
    client = small_budget_app.test_client()
    cheap = client.post("/api/storage/things", json={"title": "ok"}, headers=bearer(token))
    assert cheap.status_code == 201, cheap.get_json()
    costly = client.post("/api/storage/things", json={"x": 1}, headers=bearer(token))
    assert costly.status_code == 422
    assert costly.mimetype == "application/problem+json"
    body = costly.get_json()
    assert "'things'" in body["detail"] and "VALIDATION_MAX_STEPS" in body["detail"]
    assert body["errors"][0]["keyword"] == "budget"
    doc_id = cheap.get_json()["id"]
    patched = client.patch(f"/api/storage/things/{doc_id}", json={"x": 1}, headers=bearer(token))
    assert patched.status_code == 422
    items = client.get("/api/storage/things", headers=bearer(token)).get_json()["items"]
    assert [item["data"] for item in items] == [{"title": "ok"}]


def test_a_long_array_is_refused_by_the_budget_too(small_budget_app):
    schema = obj(tags={"type": "array", "items": {"type": "string", "minLength": 1}})
    with small_budget_app.app_context():
        _, token = provision_plugin("acme-notes", [collection(schema, name="things")])
    client = small_budget_app.test_client()
    response = client.post(
        "/api/storage/things", json={"tags": ["t"] * 1000}, headers=bearer(token)
    )
    assert response.status_code == 422
    assert "VALIDATION_MAX_STEPS" in response.get_json()["detail"]


@pytest.mark.timeout(60)
def test_unique_items_over_many_distinct_objects_answers(make_storage_plugin, plugin_api):
    schema = obj(rows={"type": "array", "uniqueItems": True})
    _, token = make_storage_plugin(data_schemas=[collection(schema, name="grid")])
    rows = [{"a": i} for i in range(30_000)]
    response = plugin_api(token).create("grid", {"rows": [*rows, {"a": 0}]})
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["keyword"] == "uniqueItems"


# --- queries ----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_query_typing_over_a_wide_deep_anyof_answers(app, make_storage_plugin, plugin_api):
    plugin_id, token = make_storage_plugin(data_schemas=[collection(obj(), name="things")])
    ladder = anyof_ladder(16, width=8)
    ladder["$defs"]["d16"] = obj(n={"type": "integer"})
    store_schema_unchecked(app, plugin_id, "things", ladder)
    response = plugin_api(token).query("things", {"x.n": "3"})
    assert response.status_code == 200, response.get_json()


def test_query_typing_refuses_too_many_alternatives(app, make_storage_plugin, plugin_api):
    plugin_id, token = make_storage_plugin(data_schemas=[collection(obj(), name="things")])
    wide = {"type": "object", "anyOf": [obj(n={"type": "integer"}) for _ in range(1500)]}
    store_schema_unchecked(app, plugin_id, "things", wide)
    response = plugin_api(token).query("things", {"n": "3"})
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert "alternatives" in response.get_json()["detail"]


def test_index_quota_counts_a_plugins_collections_together(app):
    with app.app_context(), database.connection_context():
        from extframework.errors import BadRequest
        from extframework.services.manifest import validate_manifest

        ok = sample_manifest(
            data_schemas=[
                collection(obj(), name=f"c{i}", indexes=many_indexes(16)) for i in range(4)
            ]
        )
        validate_manifest(ok)
        over = sample_manifest(
            data_schemas=[
                *ok["data_schemas"],
                collection(obj(), name="c9", indexes=many_indexes(1)),
            ]
        )
        with pytest.raises(BadRequest) as caught:
            validate_manifest(over)
        assert "65" in caught.value.errors[0]["message"]


# --- a real core ------------------------------------------------------------------


def store_in_instance(instance, collection_name: str, schema: dict) -> None:
    """Swap a collection's schema in a real core's database, bypassing registration."""
    app = create_app(
        {"DATABASE": str(instance / "extframework.sqlite3"), "HEALTH_MONITOR": False},
        instance_path=str(instance),
    )
    with app.app_context():
        Collection.update(schema=schema).where(Collection.name == collection_name).execute()


@pytest.mark.timeout(180)
def test_a_gunicorn_core_keeps_answering_while_a_plugin_sends_costly_writes(tmp_path):
    core = start_core(tmp_path, workers=2)
    try:
        instance = tmp_path / "instance"
        codes = collection(obj(code={"type": "string", "pattern": REDOS}), name="codes")
        token = provision_in_instance(
            instance, "hostile", [codes, collection(obj(), name="things")]
        )
        store_in_instance(instance, "things", anyof_ladder(24))
        statuses: list[int] = []

        def attack(path: str, body: dict) -> None:
            response = requests.post(core.url + path, json=body, headers=bearer(token), timeout=90)
            statuses.append(response.status_code)

        attacks = [("/api/storage/codes", {"code": EVIL}), ("/api/storage/things", {"x": 1})] * 2
        threads = [threading.Thread(target=attack, args=a) for a in attacks]
        for thread in threads:
            thread.start()
        for _ in range(3):  # a liveness bound, not a benchmark
            assert requests.get(core.url + "/healthz", timeout=2).status_code == 200
        for thread in threads:
            thread.join(timeout=90)
        assert sorted(statuses) == [422] * len(attacks)
    finally:
        core.stop()
