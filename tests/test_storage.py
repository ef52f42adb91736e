"""The storage API's documents: shape, validation, ETags, merge patch, lifecycle gating, export."""

import json

import pytest

from extframework.db import database
from extframework.errors import Forbidden
from extframework.models import AuditEvent, Document, Plugin
from extframework.services import storage
from tests.support.storage_fixtures import set_state

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_engines

PROBLEM = "application/problem+json"


@pytest.fixture
def api(make_storage_plugin, plugin_api):
    _, token = make_storage_plugin("acme-notes")
    return plugin_api(token)


def stored_count(app) -> int:
    with app.app_context(), database.connection_context():
        return Document.select().count()


def test_create_returns_201_with_location_etag_and_document_shape(api):
    response = api.create("notes", {"title": "hello", "count": 2})
    assert response.status_code == 201
    doc = response.get_json()
    assert set(doc) == {"id", "version", "created_at", "updated_at", "data"}
    assert doc["version"] == 1
    assert doc["data"] == {"title": "hello", "count": 2}
    assert doc["created_at"].endswith("Z") and doc["created_at"] == doc["updated_at"]
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"] == f"/api/storage/notes/{doc['id']}"

    read = api.read("notes", doc["id"])
    assert read.status_code == 200
    assert read.get_json() == doc
    assert read.headers["ETag"] == '"1"'


def test_invalid_document_gets_422_with_one_entry_per_field_and_nothing_is_stored(app, api):
    response = api.create(
        "notes", {"count": -1, "done": "yes", "meta": {"score": "high"}, "colour": "red"}
    )
    assert response.status_code == 422
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == 422 and body["title"] and body["detail"]
    by_pointer = {e["pointer"]: e for e in body["errors"]}
    assert set(by_pointer) == {"/title", "/count", "/done", "/meta/score", "/colour"}
    assert by_pointer["/title"]["message"] == "is required"
    assert by_pointer["/meta/score"]["keyword"] == "type"
    assert by_pointer["/count"]["keyword"] == "minimum"
    assert all(set(e) == {"pointer", "keyword", "message"} for e in body["errors"])
    assert stored_count(app) == 0


@pytest.mark.parametrize(
    "body, content_type, detail",
    [
        (b'{"title": ', "application/json", "not valid JSON"),
        (b'["a list"]', "application/json", "JSON object"),
        (b'{"title": "x"}', "text/plain", "Content-Type"),
        (b'{"title": NaN}', "application/json", "NaN"),
        (b"[" * 5000 + b"]" * 5000, "application/json", ""),
    ],
)
def test_malformed_bodies_get_400_and_nothing_is_stored(
    app, client, make_storage_plugin, body, content_type, detail
):
    _, token = make_storage_plugin()
    response = client.post(
        "/api/storage/notes",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
    )
    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    assert detail in response.get_json()["detail"]
    assert stored_count(app) == 0


def test_body_over_the_limit_gets_413(app, api):
    big = {"title": "x" * (app.config["MAX_CONTENT_LENGTH"] + 10)}
    response = api.create("notes", big)
    assert response.status_code == 413
    assert response.mimetype == PROBLEM
    assert str(app.config["MAX_CONTENT_LENGTH"]) in response.get_json()["detail"]
    assert stored_count(app) == 0


def test_undeclared_collection_is_404_for_every_method(api):
    for response in (
        api.create("ghosts", {"title": "x"}),
        api.query("ghosts"),
        api.read("ghosts", "abc"),
        api.patch("ghosts", "abc", {"title": "y"}),
        api.delete("ghosts", "abc"),
    ):
        assert response.status_code == 404
        assert response.mimetype == PROBLEM
        assert "ghosts" in response.get_json()["detail"]


def test_patch_is_a_merge_patch_validated_on_the_merged_result(app, api):
    doc = api.create("notes", {"title": "a", "note": "n", "meta": {"owner": "ann", "score": 1}})
    doc_id = doc.get_json()["id"]

    response = api.patch("notes", doc_id, {"note": None, "meta": {"score": 2.5}, "count": 3})
    assert response.status_code == 200
    body = response.get_json()
    assert body["data"] == {"title": "a", "count": 3, "meta": {"owner": "ann", "score": 2.5}}
    assert body["version"] == 2
    assert response.headers["ETag"] == '"2"'
    assert body["updated_at"] > body["created_at"]

    # the patch alone is valid JSON, but the merged document would lose its required title
    response = api.patch("notes", doc_id, {"title": None})
    assert response.status_code == 422
    assert [e["pointer"] for e in response.get_json()["errors"]] == ["/title"]
    assert api.read("notes", doc_id).get_json() == body


# RFC 7396, Appendix A
@pytest.mark.parametrize(
    "target, patch, result",
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_follows_rfc_7396(target, patch, result):
    assert storage.merge_patch(target, patch) == result


@pytest.mark.parametrize("tag", ['"1"', "1", '"7", "1"', "*"])
def test_if_match_accepts_quoted_bare_list_and_star(api, tag):
    doc_id = api.create("notes", {"title": "a"}).get_json()["id"]
    response = api.patch("notes", doc_id, {"count": 1}, headers={"If-Match": tag})
    assert response.status_code == 200
    assert response.get_json()["version"] == 2


@pytest.mark.parametrize("tag", ['"2"', "2", 'W/"1"', '"x"', ""])
def test_stale_if_match_gets_412_and_changes_nothing(api, tag):
    doc_id = api.create("notes", {"title": "a"}).get_json()["id"]
    for response in (
        api.patch("notes", doc_id, {"count": 1}, headers={"If-Match": tag}),
        api.delete("notes", doc_id, headers={"If-Match": tag}),
    ):
        assert response.status_code == 412
        assert response.mimetype == PROBLEM
        assert response.get_json()["current_version"] == 1
        assert response.headers["ETag"] == '"1"'
    assert api.read("notes", doc_id).get_json()["version"] == 1


def test_delete_removes_the_document(api):
    doc_id = api.create("notes", {"title": "a"}).get_json()["id"]
    response = api.delete("notes", doc_id, headers={"If-Match": '"1"'})
    assert response.status_code == 204
    assert api.read("notes", doc_id).status_code == 404
    assert api.delete("notes", doc_id).status_code == 404
    assert api.patch("notes", doc_id, {"count": 1}).status_code == 404


# --- lifecycle gating (SPEC §6) ---------------------------------------------------


def calls(api, doc_id):
    return {
        "create": api.create("notes", {"title": "new"}),
        "query": api.query("notes"),
        "read": api.read("notes", doc_id),
        "patch": api.patch("notes", doc_id, {"count": 5}),
        "delete": api.delete("notes", doc_id),
    }


@pytest.mark.parametrize("state", ["active", "degraded"])
def test_active_and_degraded_storage_is_open(api, state):
    doc_id = api.create("notes", {"title": "a"}).get_json()["id"]
    set_state("acme-notes", state)
    statuses = {name: r.status_code for name, r in calls(api, doc_id).items()}
    assert statuses == {"create": 201, "query": 200, "read": 200, "patch": 200, "delete": 204}


def test_disabled_plugin_can_read_but_not_write(app, api):
    doc_id = api.create("notes", {"title": "a"}).get_json()["id"]
    set_state("acme-notes", "disabled")
    results = calls(api, doc_id)
    assert results["read"].status_code == 200
    assert results["query"].status_code == 200
    for name in ("create", "patch", "delete"):
        response = results[name]
        assert response.status_code == 403, name
        assert response.mimetype == PROBLEM
        assert "disabled" in response.get_json()["detail"]
        assert "read-only" in response.get_json()["detail"]
        assert response.get_json()["state"] == "disabled"
    assert stored_count(app) == 1
    assert api.read("notes", doc_id).get_json()["version"] == 1


@pytest.mark.parametrize(
    "state, status, reason",
    [
        ("registered", 403, "not yet active"),
        ("deregistered", 403, "closed"),
        ("migrating", 503, "migrating"),
    ],
)
def test_closed_states_refuse_every_call_and_say_why(app, api, state, status, reason):
    doc_id = api.create("notes", {"title": "a"}).get_json()["id"]
    set_state("acme-notes", state)
    for name, response in calls(api, doc_id).items():
        assert response.status_code == status, name
        assert response.mimetype == PROBLEM
        assert reason in response.get_json()["detail"]
        assert response.get_json()["state"] == state
        if state == "migrating":
            assert response.headers["Retry-After"] == str(storage.MIGRATING_RETRY_AFTER_S)
    assert stored_count(app) == 1


def test_migration_context_may_read_and_write_while_migrating(app, make_storage_plugin):
    make_storage_plugin("mig-plugin", state="migrating")
    with app.app_context(), database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == "mig-plugin")
        storage.check_access(plugin, write=True, migration_context=True)
        ns = storage.open_collection(plugin, None, "notes", write=True, migration_context=True)
        doc = storage.create_document(ns, {"title": "rewritten"})
        assert storage.get_document(ns, doc["id"])["data"] == {"title": "rewritten"}
        set_state("mig-plugin", "registered")
        plugin = Plugin.get(Plugin.plugin_id == "mig-plugin")
        with pytest.raises(Forbidden):
            storage.check_access(plugin, write=False, migration_context=True)


# --- tenants ------------------------------------------------------------------------


def test_tenant_comes_from_x_tenant_id_and_defaults_to_default(
    app, make_user, make_storage_plugin, plugin_api
):
    make_user("b@example.com", tenant="beta")
    _, token = make_storage_plugin()
    default, beta = plugin_api(token), plugin_api(token, tenant="beta")
    doc_id = default.create("notes", {"title": "in default"}).get_json()["id"]
    assert beta.read("notes", doc_id).status_code == 404
    assert beta.query("notes").get_json()["items"] == []
    beta.create("notes", {"title": "in beta"})
    assert [d["data"]["title"] for d in default.query("notes").get_json()["items"]] == [
        "in default"
    ]
    assert plugin_api(token, tenant="").create("notes", {"title": "x"}).status_code == 400


# --- export ---------------------------------------------------------------------------


def test_operator_exports_every_document_per_tenant_and_collection_as_json_lines(
    app, client, make_user, user_token, make_storage_plugin, plugin_api
):
    make_user("op@example.com", operator=True, role="admin")
    make_user("b@example.com", tenant="beta")
    make_user("m@example.com")
    _, token = make_storage_plugin(
        "exp-plugin",
        [
            {"collection": "notes", "schema": {"type": "object"}},
            {"collection": "archive", "schema": {"type": "object"}},
        ],
    )
    _, other = make_storage_plugin("other-plugin", [{"collection": "notes", "schema": {}}])
    plugin_api(other).create("notes", {"secret": "not exported"})
    default, beta = plugin_api(token), plugin_api(token, tenant="beta")
    expected = [
        default.create("notes", {"n": 1}).get_json(),
        default.create("archive", {"n": 2}).get_json(),
        beta.create("notes", {"n": 3}).get_json(),
        default.create("notes", {"n": 4}).get_json(),
    ]
    set_state("exp-plugin", "disabled")  # export works whatever the state

    response = client.get(
        "/api/registry/plugins/exp-plugin/export",
        headers={"Authorization": f"Bearer {user_token('op@example.com')}"},
    )
    assert response.status_code == 200
    assert response.mimetype == "application/x-ndjson"
    lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert [(x["tenant"], x["collection"], x["data"]["n"]) for x in lines] == [
        ("beta", "notes", 3),
        ("default", "archive", 2),
        ("default", "notes", 1),
        ("default", "notes", 4),
    ]
    by_id = {d["id"]: d for d in expected}
    for line in lines:
        doc = by_id[line["id"]]
        assert {k: line[k] for k in doc} == doc
    with app.app_context(), database.connection_context():
        assert AuditEvent.get(AuditEvent.action == "plugin.export").actor == "op@example.com"

    member = client.get(
        "/api/registry/plugins/exp-plugin/export",
        headers={"Authorization": f"Bearer {user_token('m@example.com')}"},
    )
    assert member.status_code == 403
    plugin_token = client.get(
        "/api/registry/plugins/exp-plugin/export", headers={"Authorization": f"Bearer {token}"}
    )
    assert plugin_token.status_code == 401
    missing = client.get(
        "/api/registry/plugins/nope/export",
        headers={"Authorization": f"Bearer {user_token('op@example.com')}"},
    )
    assert missing.status_code == 404


def test_documents_come_back_with_their_keys_in_the_order_written(
    app, make_storage_plugin, plugin_api, client, make_user, user_token
):
    """Byte for byte on both engines (PostgreSQL's jsonb would sort keys by length).

    The API's JSON responses sort keys (Flask's default), so the service's dicts and the
    export's lines, which splice the stored text, are what keep the order.
    """
    _, token = make_storage_plugin("keys-plugin", [{"collection": "docs", "schema": {}}])
    written = '{"zeta":1,"a":{"yy":2,"b":[{"k2":1,"k1":2}]},"mid":"x","a2":null}'
    created = client.post(
        "/api/storage/docs",
        data=written,
        headers=plugin_api(token).headers({"Content-Type": "application/json"}),
    )
    assert created.status_code == 201
    doc_id = created.get_json()["id"]

    def compact(value) -> str:
        return json.dumps(value, separators=(",", ":"))

    with app.app_context(), database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == "keys-plugin")
        ns = storage.open_collection(plugin, None, "docs", write=True)
        assert compact(storage.get_document(ns, doc_id)["data"]) == written
        page = storage.query_documents(ns, [], secret_key=b"k")
        assert compact(page["items"][0]["data"]) == written
        patched = storage.patch_document(ns, doc_id, {"mid": "y", "new": 1}, if_match=None)
        expected = written.replace('"x"', '"y"')[:-1] + ',"new":1}'
        assert compact(patched["data"]) == expected
        assert compact(storage.get_document(ns, doc_id)["data"]) == expected
    make_user("op@example.com", operator=True, role="admin")
    export = client.get(
        "/api/registry/plugins/keys-plugin/export",
        headers={"Authorization": f"Bearer {user_token('op@example.com')}"},
    )
    assert export.get_data(as_text=True).rstrip("\n").endswith(f'"data":{expected}}}')


def test_nul_is_refused_in_documents_filter_values_and_ids(
    api, app, client, make_storage_plugin, plugin_api
):
    """U+0000: PostgreSQL cannot read a JSON path of a document holding it, SQLite's json_extract
    ends the text there; so neither engine stores it (400), and an id or filter holding it
    matches nothing."""
    kept = api.create("notes", {"title": "kept"}).get_json()["id"]
    for doc in (
        {"title": "a\u0000b"},
        {"title": "t", "tags": ["\u0000"]},
        {"title": "t", "a\u0000": 1},
    ):
        refused = api.create("notes", doc)
        assert refused.status_code == 400 and refused.mimetype == PROBLEM, refused.get_json()
        assert "U+0000" in refused.get_json()["detail"]
    assert api.create("notes", {"title": "a\\u0000b"}).status_code == 201  # backslash, u0000
    assert api.patch("notes", kept, {"note": "x\u0000"}).status_code == 400
    batch = client.post(
        "/api/storage/notes/_batch",
        json={"operations": [{"op": "create", "data": {"title": "\u0000"}}]},
        headers=api.headers(),
    )
    assert batch.status_code == 400
    assert stored_count(app) == 2
    refused = api.query("notes", {"title": "x\u0000y"})
    assert refused.status_code == 400 and "U+0000" in refused.get_json()["detail"]
    assert api.read("notes", kept + "\u0000").status_code == 404
    assert api.patch("notes", kept + "\u0000", {"title": "t"}).status_code == 404
    assert api.delete("notes", kept + "\u0000").status_code == 404
    batch = client.post(
        "/api/storage/notes/_batch",
        json={"operations": [{"op": "delete", "id": kept + "\u0000"}]},
        headers=api.headers(),
    )
    assert batch.status_code == 404, batch.get_json()
    assert api.read("notes", kept).get_json()["data"] == {"title": "kept"}


def test_export_orders_namespaces_in_byte_order_whatever_the_collation(
    client, make_user, user_token, make_storage_plugin, plugin_api
):
    """Bytes put "a1" before "a_b" ("1" < "_"); ICU English puts punctuation first."""
    names = ["a_b", "a1", "ab"]
    _, token = make_storage_plugin(
        "order-plugin", [{"collection": name, "schema": {}} for name in names]
    )
    api = plugin_api(token)
    for name in names:
        assert api.create(name, {"n": name}).status_code == 201
    make_user("op@example.com", operator=True, role="admin")
    export = client.get(
        "/api/registry/plugins/order-plugin/export",
        headers={"Authorization": f"Bearer {user_token('op@example.com')}"},
    )
    lines = [json.loads(line) for line in export.get_data(as_text=True).splitlines()]
    assert [line["collection"] for line in lines] == sorted(names, key=str.encode)
