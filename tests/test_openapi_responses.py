"""Real answers of the API match what the OpenAPI document declares for them.

Each call's status must be declared for its operation, its body must validate against the
documented schema (formats asserted), and the headers the document requires must be there.
"""

import pytest

from extframework.openapi import openapi_document
from tests.support.openapi_check import check_response, schema_errors
from tests.support.registry_fixtures import sample_manifest

PLUGIN = "/api/registry/plugins/{plugin_id}"


@pytest.fixture(scope="module")
def document() -> dict:
    return openapi_document()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def operator(make_user, user_token) -> dict:
    make_user("op@example.com", role="admin", operator=True)
    return bearer(user_token("op@example.com"))


def test_identity_answers_match_the_document(client, document, operator, make_user):
    check_response(document, "/.well-known/jwks.json", "get", client.get("/.well-known/jwks.json"))
    check_response(document, "/healthz", "get", client.get("/healthz"))
    check_response(document, "/api/openapi.json", "get", client.get("/api/openapi.json"))
    schema = client.get("/api/registry/manifest-schema")
    check_response(document, "/api/registry/manifest-schema", "get", schema)
    check_response(document, "/api/auth/me", "get", client.get("/api/auth/me", headers=operator))
    check_response(document, "/api/auth/me", "get", client.get("/api/auth/me"))  # 401
    good = client.post(
        "/api/auth/token", json={"email": "op@example.com", "password": "correct horse battery"}
    )
    check_response(document, "/api/auth/token", "post", good)
    wrong = client.post("/api/auth/token", json={"email": "op@example.com", "password": "nope"})
    assert wrong.status_code == 401
    check_response(document, "/api/auth/token", "post", wrong)
    malformed = client.post(
        "/api/auth/token", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    check_response(document, "/api/auth/token", "post", malformed)
    put = client.put("/.well-known/jwks.json")
    assert put.status_code == 405
    check_response(document, "/.well-known/jwks.json", "put", put)


def test_storage_answers_match_the_document(client, document, make_storage_plugin):
    _, token = make_storage_plugin()
    auth = bearer(token)
    one, many = "/api/storage/{collection}/{doc_id}", "/api/storage/{collection}"
    created = client.post("/api/storage/notes", json={"title": "a", "count": 1}, headers=auth)
    assert created.status_code == 201
    check_response(document, many, "post", created)
    doc_id = created.get_json()["id"]
    url = f"/api/storage/notes/{doc_id}"
    check_response(document, one, "get", client.get(url, headers=auth))
    page = client.get("/api/storage/notes", query_string={"limit": 1}, headers=auth)
    check_response(document, many, "get", page)
    patched = client.patch(url, json={"count": 2}, headers={**auth, "If-Match": '"1"'})
    assert patched.status_code == 200
    check_response(document, one, "patch", patched)
    stale = client.patch(url, json={"count": 3}, headers={**auth, "If-Match": '"1"'})
    assert stale.status_code == 412
    check_response(document, one, "patch", stale)
    invalid = client.post("/api/storage/notes", json={"count": -1}, headers=auth)
    assert invalid.status_code == 422
    check_response(document, many, "post", invalid)
    bad_query = client.get("/api/storage/notes", query_string={"limit": "x"}, headers=auth)
    assert bad_query.status_code == 400
    check_response(document, many, "get", bad_query)
    anonymous = client.get(url)
    assert anonymous.status_code == 401
    check_response(document, one, "get", anonymous)
    deleted = client.delete(url, headers=auth)
    assert deleted.status_code == 204
    check_response(document, one, "delete", deleted)
    gone = client.get(url, headers=auth)
    assert gone.status_code == 404
    check_response(document, one, "get", gone)
    unknown = client.post("/api/storage/nothing", json={}, headers=auth)
    assert unknown.status_code == 404
    check_response(document, many, "post", unknown)
    put = client.put(url, json={}, headers=auth)
    assert put.status_code == 405
    check_response(document, one, "put", put)


def test_batch_answers_and_requests_match_the_document(client, document, make_storage_plugin):
    _, token = make_storage_plugin()
    auth, path = bearer(token), "/api/storage/{collection}/_batch"
    body_pointer = ["components", "schemas", "Batch"]

    def send(operations):
        body = {"operations": operations}
        if len(operations) <= 1000:
            assert schema_errors(document, body_pointer, body) == []
        response = client.post("/api/storage/notes/_batch", json=body, headers=auth)
        check_response(document, path, "post", response)
        return response

    done = send(
        [{"op": "create", "data": {"title": "a"}}, {"op": "create", "data": {"title": "b"}}]
    )
    assert done.status_code == 200
    first, second = (r["id"] for r in done.get_json()["results"])
    changed = send(
        [
            {"op": "patch", "id": first, "data": {"count": 1}, "if_match": "1"},
            {"op": "delete", "id": second, "if_match": 1},
        ]
    )
    assert changed.status_code == 200
    assert send([{"op": "patch", "id": first, "data": {}, "if_match": "1"}]).status_code == 412
    assert send([{"op": "create", "data": {"count": -1}}]).status_code == 422
    assert send([{"op": "delete", "id": second}]).status_code == 404
    assert send([{"op": "create", "data": {"title": "x"}}] * 1001).status_code == 413
    malformed = client.post("/api/storage/notes/_batch", json={"operations": [{}]}, headers=auth)
    assert malformed.status_code == 400
    check_response(document, path, "post", malformed)
    assert schema_errors(document, body_pointer, {"operations": [{}]}) != []


def test_storage_of_a_migrating_plugin_answers_a_documented_503(
    client, document, make_storage_plugin
):
    _, token = make_storage_plugin(state="migrating")
    frozen = client.get("/api/storage/notes", headers=bearer(token))
    assert frozen.status_code == 503
    check_response(document, "/api/storage/{collection}", "get", frozen)


def test_registry_answers_match_the_document(
    client, document, operator, enrolment_key, healthy_plugin_server
):
    manifest = sample_manifest(base_url=healthy_plugin_server.url)
    registered = client.post("/api/registry/plugins", json=manifest, headers=bearer(enrolment_key))
    assert registered.status_code == 201, registered.get_json()
    check_response(document, "/api/registry/plugins", "post", registered)
    token = registered.get_json()["plugin_token"]
    again = client.post("/api/registry/plugins", json=manifest, headers=bearer(enrolment_key))
    assert again.status_code == 409
    check_response(document, "/api/registry/plugins", "post", again)

    reads = [
        ("/api/registry/plugins", {}),
        (PLUGIN, {}),
        (PLUGIN + "/versions", {}),
        (PLUGIN + "/pending-update", {}),
        (PLUGIN + "/migration", {}),
        ("/api/registry/pending-updates", {}),
        ("/api/registry/archives", {}),
    ]
    for path, query in reads:
        answer = client.get(
            path.format(plugin_id="test-plugin"), query_string=query, headers=operator
        )
        assert answer.status_code == 200, (path, answer.get_json())
        check_response(document, path, "get", answer)
    own = client.get("/api/registry/plugins", headers=bearer(token))
    check_response(document, "/api/registry/plugins", "get", own)
    missing = client.get("/api/registry/plugins/nobody", headers=operator)
    assert missing.status_code == 404
    check_response(document, PLUGIN, "get", missing)

    update = sample_manifest(base_url=healthy_plugin_server.url, version="1.1.0")
    update["data_schemas"].append({"collection": "extra", "schema": {"type": "object"}})
    updated = client.put("/api/registry/plugins/test-plugin", json=update, headers=bearer(token))
    assert updated.status_code == 200, updated.get_json()
    check_response(document, PLUGIN, "put", updated)
    stale = client.put("/api/registry/plugins/test-plugin", json=update, headers=bearer(token))
    assert stale.status_code == 409
    check_response(document, PLUGIN, "put", stale)
    diff = client.get(
        "/api/registry/plugins/test-plugin/diff",
        query_string={"from": "1.0.0", "to": "1.1.0"},
        headers=operator,
    )
    assert diff.status_code == 200
    check_response(document, PLUGIN + "/diff", "get", diff)
    no_versions = client.get("/api/registry/plugins/test-plugin/diff", headers=operator)
    assert no_versions.status_code == 400
    check_response(document, PLUGIN + "/diff", "get", no_versions)

    rotated = client.post("/api/registry/plugins/test-plugin/rotate-token", headers=bearer(token))
    assert rotated.status_code == 200
    check_response(document, PLUGIN + "/rotate-token", "post", rotated)
    token = rotated.get_json()["plugin_token"]

    tenants = client.put(
        "/api/registry/plugins/test-plugin/tenants", json={"tenants": None}, headers=operator
    )
    assert tenants.status_code == 200
    check_response(document, PLUGIN + "/tenants", "put", tenants)
    policy_path = PLUGIN + "/tenants/{tenant}/uninstall-policy"
    policy = client.put(
        "/api/registry/plugins/test-plugin/tenants/default/uninstall-policy",
        json={"policy": "archive"},
        headers=operator,
    )
    assert policy.status_code == 200
    check_response(document, policy_path, "put", policy)
    retry = client.post("/api/registry/plugins/test-plugin/migration/retry", headers=operator)
    assert retry.status_code == 409
    check_response(document, PLUGIN + "/migration/retry", "post", retry)

    verbs = "/api/registry/plugins/test-plugin/{}"
    malformed = client.post(
        verbs.format("disable"),
        data="{not json",
        headers={**operator, "Content-Type": "application/json"},
    )
    assert malformed.status_code == 400
    check_response(document, PLUGIN + "/disable", "post", malformed)
    wrong_state = client.post(verbs.format("enable"), headers=operator)
    assert wrong_state.status_code == 409
    check_response(document, PLUGIN + "/enable", "post", wrong_state)
    removed = client.post(verbs.format("deregister"), json={"reason": "test"}, headers=operator)
    assert removed.status_code == 200, removed.get_json()  # never healthy: registered -> gone
    check_response(document, PLUGIN + "/deregister", "post", removed)
    forbidden = client.get("/api/registry/pending-updates", headers=bearer(token))
    assert forbidden.status_code in (401, 403)
    check_response(document, "/api/registry/pending-updates", "get", forbidden)


def test_a_manifest_refusal_matches_the_document(client, document, enrolment_key):
    invalid = client.post(
        "/api/registry/plugins", json={"plugin_id": "X"}, headers=bearer(enrolment_key)
    )
    assert invalid.status_code == 400
    check_response(document, "/api/registry/plugins", "post", invalid)


def test_a_body_too_large_matches_the_document(app, client, document):
    app.config["MAX_CONTENT_LENGTH"] = 100
    large = client.post(
        "/api/auth/token", data="x" * 5000, headers={"Content-Type": "application/json"}
    )
    assert large.status_code == 413
    check_response(document, "/api/auth/token", "post", large)
