"""Each kind of error has its own stable problem type; field errors have one shape (SPEC §5)."""

import re
from pathlib import Path

import pytest
from flask import abort

from extframework import errors as error_module
from extframework.problems import PROBLEM_KINDS, TYPE_PREFIX
from extframework.services import proxy
from extframework_sdk import EnrolmentError, StorageClient, StorageError, register_or_update
from tests.support.registry_fixtures import ITEMS_SCHEMA, sample_manifest

ROOT = Path(__file__).resolve().parent.parent
FIELD_ERROR_KEYS = {"pointer", "keyword", "message"}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def slug_of(response) -> str:
    body = response.get_json()
    assert response.mimetype == "application/problem+json", body
    assert body["type"].startswith(TYPE_PREFIX), body
    return body["type"].removeprefix(TYPE_PREFIX)


def resolve(document: object, pointer: str) -> object:
    """Follow an RFC 6901 pointer into ``document``; KeyError/IndexError if it does not resolve."""
    if pointer == "":
        return document
    assert pointer.startswith("/"), pointer
    node = document
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def assert_field_errors(response, body: object) -> list[dict]:
    """Every item is {pointer, keyword, message} and its pointer resolves into ``body``.

    A missing field (``required``) cannot resolve itself: its parent must.
    """
    problem = response.get_json()
    assert problem["errors"], problem
    for item in problem["errors"]:
        assert set(item) == FIELD_ERROR_KEYS, item
        assert isinstance(item["keyword"], str) and re.fullmatch(r"[a-zA-Z]+", item["keyword"])
        assert isinstance(item["message"], str) and item["message"]
        pointer = item["pointer"]
        if item["keyword"] == "required":
            resolve(body, pointer.rsplit("/", 1)[0])
        else:
            resolve(body, pointer)
    return problem["errors"]


@pytest.fixture
def operator(make_user, login):
    make_user("ops@example.com", role="admin", operator=True)
    login("ops@example.com")


# --- one type per kind of refusal ----------------------------------------------------------


def test_not_higher_breaking_and_taken_are_three_types(client, enrolment_key, plugin_server):
    server = plugin_server("healthy")
    manifest = sample_manifest(base_url=server.url)
    first = client.post("/api/registry/plugins", json=manifest, headers=bearer(enrolment_key))
    assert first.status_code == 201, first.get_json()
    token = first.get_json()["plugin_token"]

    taken = client.post("/api/registry/plugins", json=manifest, headers=bearer(enrolment_key))
    not_higher = client.put(
        "/api/registry/plugins/test-plugin", json=manifest, headers=bearer(token)
    )
    narrowed = {**ITEMS_SCHEMA, "required": ["title", "count"]}
    breaking = client.put(
        "/api/registry/plugins/test-plugin",
        json=sample_manifest(
            base_url=server.url,
            version="2.0.0",
            data_schemas=[{"collection": "items", "schema": narrowed}],
        ),
        headers=bearer(token),
    )
    assert [r.status_code for r in (taken, not_higher, breaking)] == [409, 409, 409]
    assert slug_of(taken) == "plugin-id-taken"
    assert slug_of(not_higher) == "version-not-higher"
    assert slug_of(breaking) == "breaking-change"
    assert breaking.get_json()["diff"], "the breaking-change refusal keeps its diff"


def test_a_stale_if_match_is_its_own_type(make_storage_plugin, plugin_api):
    _, token = make_storage_plugin()
    api = plugin_api(token)
    doc = api.create("notes", {"title": "a"}).get_json()
    api.patch("notes", doc["id"], {"title": "b"})
    stale = api.patch("notes", doc["id"], {"title": "c"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert slug_of(stale) == "stale-if-match"


def test_a_migrating_plugins_write_is_namespace_frozen(make_storage_plugin, plugin_api):
    _, token = make_storage_plugin(state="migrating")
    frozen = plugin_api(token).create("notes", {"title": "a"})
    assert frozen.status_code == 503
    assert slug_of(frozen) == "namespace-frozen"
    assert frozen.get_json()["state"] == "migrating"


def test_a_disabled_plugins_write_is_storage_closed(make_storage_plugin, plugin_api):
    _, token = make_storage_plugin(state="disabled")
    closed = plugin_api(token).create("notes", {"title": "a"})
    assert closed.status_code == 403
    assert slug_of(closed) == "storage-closed"


def test_an_undeclared_collection_is_unknown_collection(make_storage_plugin, plugin_api):
    _, token = make_storage_plugin()
    missing = plugin_api(token).create("nope", {"title": "a"})
    assert missing.status_code == 404
    assert slug_of(missing) == "unknown-collection"


def test_a_bad_query_parameter_is_invalid_query(make_storage_plugin, plugin_api):
    _, token = make_storage_plugin()
    bad = plugin_api(token).query("notes", {"limit": "0"})
    assert bad.status_code == 400
    assert slug_of(bad) == "invalid-query"
    assert bad.get_json()["parameter"] == "limit"


def test_a_refused_lifecycle_verb_is_wrong_state(client, make_plugin, operator):
    make_plugin(state="active")
    refused = client.post("/api/registry/plugins/test-plugin/enable")
    assert refused.status_code == 409
    assert slug_of(refused) == "wrong-state"
    assert "allowed" in refused.get_json()


# --- malformed bodies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, content_type",
    [
        ("{not json", "application/json"),
        ('{"title": "a"}', "text/plain"),
        ('["a list"]', "application/json"),
        ("{}", "application/json"),
    ],
    ids=["not-json", "wrong-content-type", "an-array", "missing-field"],
)
def test_a_malformed_body_is_invalid_body(client, make_plugin, operator, data, content_type):
    make_plugin(state="active")
    response = client.put(
        "/api/registry/plugins/test-plugin/tenants", data=data, content_type=content_type
    )
    assert response.status_code == 400
    assert slug_of(response) == "invalid-body"


def test_a_malformed_storage_body_is_invalid_body(make_storage_plugin, client):
    _, token = make_storage_plugin()
    response = client.post(
        "/api/storage/notes",
        data="{not json",
        content_type="application/json",
        headers=bearer(token),
    )
    assert response.status_code == 400
    assert slug_of(response) == "invalid-body"


# --- one shape of field errors --------------------------------------------------------------


def test_manifest_errors_are_pointers_with_keywords(client, enrolment_key):
    manifest = sample_manifest(base_url="ftp://example", version="one")
    del manifest["name"]
    manifest["menu_items"][0]["actions"][1]["method"] = "FETCH"
    manifest["data_schemas"][0]["collection"] = "Bad Name"
    manifest["data_schemas"][0]["schema"] = {"type": "nonsense"}
    response = client.post("/api/registry/plugins", json=manifest, headers=bearer(enrolment_key))
    assert response.status_code == 400
    assert slug_of(response) == "invalid-manifest"
    errors = assert_field_errors(response, manifest)
    by_pointer = {e["pointer"]: e["keyword"] for e in errors}
    assert by_pointer["/name"] == "required"
    assert by_pointer["/version"] == "pattern"
    assert by_pointer["/base_url"] == "pattern"
    assert by_pointer["/menu_items/0/actions/1/method"] == "enum"
    assert by_pointer["/data_schemas/0/collection"] == "pattern"
    assert "/data_schemas/0/schema/type" in by_pointer


def test_a_duplicate_in_a_manifest_names_its_rule(client, enrolment_key):
    manifest = sample_manifest()
    manifest["data_schemas"].append(manifest["data_schemas"][0])
    response = client.post("/api/registry/plugins", json=manifest, headers=bearer(enrolment_key))
    assert response.status_code == 400
    errors = assert_field_errors(response, manifest)
    assert [(e["pointer"], e["keyword"]) for e in errors] == [
        ("/data_schemas/1/collection", "unique")
    ]


def test_a_storage_422_lists_pointers_with_keywords(make_storage_plugin, plugin_api):
    _, token = make_storage_plugin()
    document = {"count": -1, "status": "maybe", "meta": {"owner": 3}, "extra": 1}
    response = plugin_api(token).create("notes", document)
    assert response.status_code == 422
    assert slug_of(response) == "validation-failed"
    errors = assert_field_errors(response, document)
    assert {(e["pointer"], e["keyword"]) for e in errors} == {
        ("/title", "required"),
        ("/count", "minimum"),
        ("/status", "enum"),
        ("/meta/owner", "type"),
        ("/extra", "additionalProperties"),
    }


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"tenants": ["default", "nowhere"]}, {("/tenants/1", "exists")}),
        ({"tenants": "default"}, {("/tenants", "type")}),
        ({"tenants": None, "extra": 1}, {("/extra", "additionalProperties")}),
    ],
    ids=["unknown-tenant", "not-a-list", "unknown-field"],
)
def test_put_tenants_errors_point_into_the_body(client, make_plugin, operator, body, expected):
    make_plugin(state="active")
    response = client.put("/api/registry/plugins/test-plugin/tenants", json=body)
    assert response.status_code == 400, response.get_json()
    errors = assert_field_errors(response, body)
    assert {(e["pointer"], e["keyword"]) for e in errors} == expected


def test_rotate_token_body_errors_point_into_the_body(client, make_plugin, operator):
    make_plugin(state="active")
    body = {"revoke_now": "yes", "grace": 10}
    response = client.post("/api/registry/plugins/test-plugin/rotate-token", json=body)
    assert response.status_code == 400
    assert slug_of(response) == "invalid-body"
    errors = assert_field_errors(response, body)
    assert {(e["pointer"], e["keyword"]) for e in errors} == {
        ("/revoke_now", "type"),
        ("/grace", "additionalProperties"),
    }


def test_a_purge_without_confirmation_points_at_confirm(
    client, make_storage_plugin, plugin_api, operator
):
    plugin_id, token = make_storage_plugin()
    assert plugin_api(token).create("notes", {"title": "kept"}).status_code == 201
    base = f"/api/registry/plugins/{plugin_id}"
    assert client.post(f"{base}/disable").status_code == 200
    policy = client.put(f"{base}/tenants/default/uninstall-policy", json={"policy": "purge"})
    assert policy.status_code == 200, policy.get_json()
    body = {"confirm": "wrong"}
    response = client.post(f"{base}/deregister", json=body)
    assert response.status_code == 400
    assert slug_of(response) == "confirmation-required"
    errors = assert_field_errors(response, body)
    assert [(e["pointer"], e["keyword"]) for e in errors] == [("/confirm", "confirm")]


# --- werkzeug's own errors ------------------------------------------------------------------


def test_werkzeug_errors_map_onto_catalogued_types(app, client):
    assert slug_of(client.get("/api/nothing-here")) == "not-found"
    wrong_method = client.put("/.well-known/jwks.json")
    assert wrong_method.status_code == 405
    assert slug_of(wrong_method) == "method-not-allowed"
    app.config["MAX_CONTENT_LENGTH"] = 10
    too_big = client.post("/api/auth/token", data="x" * 100, content_type="application/json")
    assert too_big.status_code == 413
    assert slug_of(too_big) == "too-large"


def test_a_crash_is_internal_error_and_an_uncatalogued_status_is_about_blank(app, client):
    def crash():
        raise RuntimeError("a bug")

    app.add_url_rule("/api/test-crash", view_func=crash)
    app.add_url_rule("/api/test-teapot", view_func=lambda: abort(418))
    app.config["PROPAGATE_EXCEPTIONS"] = False  # TESTING would re-raise the bug instead
    crashed = client.get("/api/test-crash")
    assert crashed.status_code == 500
    assert slug_of(crashed) == "internal-error"
    teapot = client.get("/api/test-teapot")
    assert teapot.status_code == 418 and teapot.mimetype == "application/problem+json"
    assert teapot.get_json()["type"] == "about:blank"


# --- the catalog, the code and the docs agree ----------------------------------------------


def documented_kinds() -> list[tuple[str, int]]:
    text = (ROOT / "docs" / "errors.md").read_text()
    return [
        (slug, int(status))
        for slug, status in re.findall(r"^\| `([a-z0-9-]+)` \| (\d{3}) \|", text, re.M)
    ]


def test_docs_list_every_problem_kind_once_with_its_status():
    documented = documented_kinds()
    slugs = [slug for slug, _ in documented]
    assert len(slugs) == len(set(slugs)), "a slug is listed twice"
    assert dict(documented) == {slug: kind.status for slug, kind in PROBLEM_KINDS.items()}


def test_every_kind_literal_in_the_code_is_catalogued():
    found = set()
    for path in (ROOT / "extframework").rglob("*.py"):
        found |= set(re.findall(r"\bkind=\"([^\"]+)\"", path.read_text()))
    assert found, "the code names no precise kinds"
    assert found - set(PROBLEM_KINDS) == set()


def test_every_class_default_and_http_slug_is_catalogued():
    classes = [
        cls
        for cls in vars(error_module).values()
        if isinstance(cls, type) and issubclass(cls, error_module.DomainError)
    ]
    for cls in classes:
        assert PROBLEM_KINDS[cls.slug].status == cls.status, cls
    for status, slug in error_module.HTTP_SLUGS.items():
        assert PROBLEM_KINDS[slug].status == status, (status, slug)
    for status, slug in proxy.FAULT_KINDS.items():
        assert PROBLEM_KINDS[slug].status == status, (status, slug)
    statuses = {status for status, *_ in proxy.FAULTS.values()}
    assert statuses <= set(proxy.FAULT_KINDS), "a fault status has no problem type"


# --- the SDK branches on the type -----------------------------------------------------------


def test_the_sdk_surfaces_a_breaking_change_and_accepts_a_restart(
    tmp_path, live_server, enrolment_key, plugin_server
):
    server = plugin_server("healthy")
    token_file = tmp_path / "token"
    manifest = sample_manifest(base_url=server.url)
    token = register_or_update(
        live_server, manifest, token_file=token_file, enrolment_key=enrolment_key, attempts=1
    )
    # A restart at the same version and manifest is nothing to do.
    assert register_or_update(live_server, manifest, token_file=token_file, attempts=1) == token

    narrowed = {**ITEMS_SCHEMA, "required": ["title", "count"]}
    breaking = sample_manifest(
        base_url=server.url,
        version="2.0.0",
        data_schemas=[{"collection": "items", "schema": narrowed}],
    )
    with pytest.raises(EnrolmentError) as refused:
        register_or_update(live_server, breaking, token_file=token_file, attempts=1)
    assert refused.value.kind == "breaking-change"
    assert refused.value.status == 409 and refused.value.problem["diff"]

    changed = sample_manifest(base_url=server.url, name="Renamed without a new version")
    with pytest.raises(EnrolmentError) as same_version:
        register_or_update(live_server, changed, token_file=token_file, attempts=1)
    assert same_version.value.kind == "version-manifest-changed"

    older = sample_manifest(base_url=server.url, version="0.9.0")
    with pytest.raises(EnrolmentError) as downgrade:
        register_or_update(live_server, older, token_file=token_file, attempts=1)
    assert downgrade.value.kind == "version-not-higher"


def test_the_sdk_storage_error_names_its_kind_and_pointers(app, live_server, make_storage_plugin):
    _, token = make_storage_plugin()
    storage = StorageClient(live_server, token)
    with pytest.raises(StorageError) as invalid:
        storage.create("notes", {"count": "many"}, tenant="default")
    assert invalid.value.kind == "validation-failed"
    assert {e["pointer"] for e in invalid.value.errors} == {"/title", "/count"}
    with pytest.raises(StorageError) as missing:
        storage.create("nope", {"title": "a"}, tenant="default")
    assert missing.value.kind == "unknown-collection"
