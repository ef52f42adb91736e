"""``POST /api/storage/{collection}/_batch`` (SPEC §5, issue 14): all-or-nothing, in order."""

import pytest

from extframework import observability
from extframework.db import database
from extframework.models import Document, MigrationRun, Plugin
from extframework.services import batch as batches
from extframework.services import migrations, storage
from extframework.services.secrets import MIGRATION_TOKEN_PREFIX, new_secret
from extframework_sdk import StorageClient, StorageError
from tests.support.storage_fixtures import set_state

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_engines

PROBLEM = "application/problem+json"


@pytest.fixture
def api(make_storage_plugin, plugin_api):
    _, token = make_storage_plugin("acme-notes")
    return plugin_api(token)


def batch(client, token, operations, *, collection="notes", tenant=None, body=None):
    headers = {"Authorization": f"Bearer {token}"}
    if tenant is not None:
        headers["X-Tenant-ID"] = tenant
    payload = {"operations": operations} if body is None else body
    return client.post(f"/api/storage/{collection}/_batch", json=payload, headers=headers)


def stored(app) -> dict[str, tuple[int, dict]]:
    with app.app_context(), database.connection_context():
        return {d.doc_id: (d.version, d.data) for d in Document.select()}


def problem(response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.get_json()
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["type"] == f"urn:extframework:problem:{kind}"
    return body


def test_results_come_in_order_with_versions_and_every_operation_is_applied(app, client, api):
    first = api.create("notes", {"title": "first", "count": 1}).get_json()["id"]
    second = api.create("notes", {"title": "second"}).get_json()["id"]
    response = batch(
        client,
        api.token,
        [
            {"op": "create", "data": {"title": "new"}},
            {"op": "patch", "id": first, "data": {"count": 2}, "if_match": "1"},
            {"op": "delete", "id": second},
            {"op": "patch", "id": first, "data": {"count": 2}},  # no change: no new version
            {"op": "patch", "id": first, "data": {"count": None}, "if_match": 2},
        ],
    )
    assert response.status_code == 200, response.get_json()
    results = response.get_json()["results"]
    assert len(results) == 5
    created = results[0]["id"]
    assert results[0] == {"id": created, "version": 1}
    assert results[1:] == [
        {"id": first, "version": 2},
        {"deleted": second},
        {"id": first, "version": 2},
        {"id": first, "version": 3},
    ]
    assert stored(app) == {created: (1, {"title": "new"}), first: (3, {"title": "first"})}
    read = api.read("notes", first)
    assert read.headers["ETag"] == '"3"' and read.get_json()["data"] == {"title": "first"}


def test_a_patch_then_a_delete_of_one_document_apply_in_order(app, client, api):
    doc_id = api.create("notes", {"title": "a"}).get_json()["id"]
    response = batch(
        client,
        api.token,
        [
            {"op": "patch", "id": doc_id, "data": {"title": "b"}},
            {"op": "patch", "id": doc_id, "data": {"count": 3}, "if_match": "2"},
            {"op": "delete", "id": doc_id, "if_match": "3"},
        ],
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["results"] == [
        {"id": doc_id, "version": 2},
        {"id": doc_id, "version": 3},
        {"deleted": doc_id},
    ]
    assert stored(app) == {}


def test_an_operation_after_a_delete_of_its_document_is_404_and_nothing_applies(app, client, api):
    doc_id = api.create("notes", {"title": "a"}).get_json()["id"]
    response = batch(
        client,
        api.token,
        [{"op": "delete", "id": doc_id}, {"op": "patch", "id": doc_id, "data": {"count": 1}}],
    )
    body = problem(response, 404, "not-found")
    assert body["index"] == 1 and doc_id in body["detail"]
    assert stored(app) == {doc_id: (1, {"title": "a"})}


def test_one_invalid_operation_fails_the_batch_with_its_index_and_pointers(app, client, api):
    doc_id = api.create("notes", {"title": "kept"}).get_json()["id"]
    before = stored(app)
    response = batch(
        client,
        api.token,
        [
            {"op": "create", "data": {"title": "would be new"}},
            {"op": "patch", "id": doc_id, "data": {"title": "changed"}},
            {"op": "create", "data": {"title": "", "count": -1}},
            {"op": "create", "data": {"count": "also bad"}},  # only the first failure answers
        ],
    )
    body = problem(response, 422, "validation-failed")
    assert body["index"] == 2
    assert {e["pointer"]: e["keyword"] for e in body["errors"]} == {
        "/operations/2/data/title": "minLength",
        "/operations/2/data/count": "minimum",
    }
    assert stored(app) == before


def test_a_patch_is_validated_on_the_merged_document(app, client, api):
    doc_id = api.create("notes", {"title": "kept"}).get_json()["id"]
    response = batch(
        client,
        api.token,
        [
            {"op": "create", "data": {"title": "x"}},
            {"op": "patch", "id": doc_id, "data": {"title": None}},
        ],
    )
    body = problem(response, 422, "validation-failed")
    assert body["index"] == 1
    assert body["errors"] == [
        {"pointer": "/operations/1/data/title", "keyword": "required", "message": "is required"}
    ]
    assert len(stored(app)) == 1


def test_a_stale_if_match_is_412_with_its_index_and_nothing_applies(app, client, api):
    doc_id = api.create("notes", {"title": "a"}).get_json()["id"]
    api.patch("notes", doc_id, {"title": "b"})
    before = stored(app)
    response = batch(
        client,
        api.token,
        [
            {"op": "create", "data": {"title": "new"}},
            {"op": "patch", "id": doc_id, "data": {"title": "c"}, "if_match": "1"},
        ],
    )
    body = problem(response, 412, "stale-if-match")
    assert body["index"] == 1 and body["current_version"] == 2
    assert stored(app) == before
    response = batch(client, api.token, [{"op": "delete", "id": doc_id, "if_match": '"1"'}])
    assert problem(response, 412, "stale-if-match")["index"] == 0
    assert stored(app) == before


def test_a_delete_of_a_missing_document_is_404_with_its_index(app, client, api):
    response = batch(
        client,
        api.token,
        [{"op": "create", "data": {"title": "new"}}, {"op": "delete", "id": "0" * 32}],
    )
    assert problem(response, 404, "not-found")["index"] == 1
    assert stored(app) == {}


def test_another_plugins_document_is_404_in_a_batch(app, client, api, make_storage_plugin):
    _, other_token = make_storage_plugin("other-notes")
    theirs = batch(client, other_token, [{"op": "create", "data": {"title": "theirs"}}])
    their_id = theirs.get_json()["results"][0]["id"]
    for operation in (
        {"op": "patch", "id": their_id, "data": {"title": "mine now"}},
        {"op": "delete", "id": their_id},
    ):
        assert problem(batch(client, api.token, [operation]), 404, "not-found")["index"] == 0
    assert stored(app) == {their_id: (1, {"title": "theirs"})}


def test_another_tenants_document_is_404_in_a_batch(app, client, api, make_user):
    make_user("b@example.com", tenant="beta")
    doc_id = api.create("notes", {"title": "default's"}).get_json()["id"]
    response = batch(client, api.token, [{"op": "delete", "id": doc_id}], tenant="beta")
    assert problem(response, 404, "not-found")["index"] == 0
    assert doc_id in stored(app)


def test_an_undeclared_collection_is_404(client, api):
    response = batch(client, api.token, [{"op": "create", "data": {}}], collection="ghosts")
    problem(response, 404, "unknown-collection")


def test_a_thousand_operations_pass_and_a_thousand_and_one_are_413(app, client, api):
    operations = [{"op": "create", "data": {"title": f"n{n}", "count": n}} for n in range(1000)]
    response = batch(client, api.token, operations)
    assert response.status_code == 200, response.get_json()
    results = response.get_json()["results"]
    assert len(results) == 1000 and len({r["id"] for r in results}) == 1000
    assert len(stored(app)) == 1000

    # Too many is refused before any operation is looked at, even a malformed one.
    response = batch(client, api.token, [*operations, {"op": "explode"}])
    body = problem(response, 413, "too-large")
    assert "1000" in body["detail"]
    assert len(stored(app)) == 1000


def test_an_empty_batch_answers_no_results(client, api):
    response = batch(client, api.token, [])
    assert response.status_code == 200 and response.get_json() == {"results": []}


@pytest.mark.parametrize(
    "body, pointer",
    [
        ({}, "/operations"),
        ({"operations": {"op": "create"}}, "/operations"),
        ({"operations": [], "atomic": True}, "/atomic"),
        ({"operations": ["create"]}, "/operations/0"),
        ({"operations": [{"data": {}}]}, "/operations/0/op"),
        ({"operations": [{"op": "upsert", "data": {}}]}, "/operations/0/op"),
        ({"operations": [{"op": "create"}]}, "/operations/0/data"),
        ({"operations": [{"op": "create", "data": []}]}, "/operations/0/data"),
        ({"operations": [{"op": "create", "data": {}, "id": "x"}]}, "/operations/0/id"),
        ({"operations": [{"op": "create", "data": {}, "if_match": 1}]}, "/operations/0/if_match"),
        ({"operations": [{"op": "patch", "data": {}}]}, "/operations/0/id"),
        ({"operations": [{"op": "patch", "id": 7, "data": {}}]}, "/operations/0/id"),
        ({"operations": [{"op": "patch", "id": "x"}]}, "/operations/0/data"),
        ({"operations": [{"op": "delete", "id": "x", "if_match": 1.5}]}, "/operations/0/if_match"),
        ({"operations": [{"op": "delete", "id": "x", "if_match": True}]}, "/operations/0/if_match"),
        ({"operations": [{"op": "delete", "id": "x", "data": {}}]}, "/operations/0/data"),
        ({"operations": [{"op": "delete", "id": "x", "if_match": None}]}, "/operations/0/if_match"),
    ],
)
def test_a_malformed_body_is_400_with_a_pointer_and_nothing_applies(
    app, client, api, body, pointer
):
    response = batch(client, api.token, None, body=body)
    problem_body = problem(response, 400, "invalid-body")
    assert pointer in [e["pointer"] for e in problem_body["errors"]]
    assert stored(app) == {}


def test_a_body_that_is_not_an_object_is_400(client, api):
    response = client.post(
        "/api/storage/notes/_batch", json=[], headers={"Authorization": f"Bearer {api.token}"}
    )
    problem(response, 400, "invalid-body")


@pytest.mark.parametrize(
    "state, status, kind",
    [
        ("disabled", 403, "storage-closed"),
        ("registered", 403, "storage-closed"),
        ("migrating", 503, "namespace-frozen"),
    ],
)
def test_lifecycle_states_gate_a_batch_like_single_writes(app, client, api, state, status, kind):
    doc_id = api.create("notes", {"title": "a"}).get_json()["id"]
    set_state("acme-notes", state)
    response = batch(client, api.token, [{"op": "delete", "id": doc_id}])
    assert problem(response, status, kind)["state"] == state
    assert doc_id in stored(app)


def test_a_user_token_or_no_token_is_401(client, api):
    response = client.post("/api/storage/notes/_batch", json={"operations": []})
    problem(response, 401, "unauthorized")


def test_the_migration_credential_may_batch_while_migrating(app, client, api):
    doc_id = api.create("notes", {"title": "old"}).get_json()["id"]
    set_state("acme-notes", "migrating")
    credential = new_secret(MIGRATION_TOKEN_PREFIX)
    with app.app_context(), database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == "acme-notes")
        MigrationRun.create(
            plugin=plugin,
            from_version="1.0.0",
            to_version="2.0.0",
            manifest={},
            **migrations._attempt(credential, 60),
        )
    operations = [
        {"op": "patch", "id": doc_id, "data": {"title": "rewritten"}},
        {"op": "create", "data": {"title": "added"}},
    ]
    frozen = batch(client, api.token, operations)
    problem(frozen, 503, "namespace-frozen")
    response = batch(client, credential, operations)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["results"][0] == {"id": doc_id, "version": 2}
    assert stored(app)[doc_id] == (2, {"title": "rewritten"})


def test_the_batch_counts_as_one_storage_operation_in_the_metrics(client, api):
    counter = observability.STORAGE_OPERATIONS.labels("acme-notes", "batch", "200")
    before = counter._value.get()
    batch(client, api.token, [{"op": "create", "data": {"title": n}} for n in "abc"])
    assert counter._value.get() == before + 1


def test_the_sdk_batches_and_names_the_failing_operation(app, live_server, make_storage_plugin):
    _, token = make_storage_plugin("acme-notes")
    storage = StorageClient(live_server, token)
    created = storage.batch("notes", [{"op": "create", "data": {"title": "a"}}], tenant="default")
    doc_id = created[0]["id"]
    assert created == [{"id": doc_id, "version": 1}]
    with pytest.raises(StorageError) as stale:
        storage.batch(
            "notes",
            [
                {"op": "patch", "id": doc_id, "data": {"title": "b"}},
                {"op": "delete", "id": doc_id, "if_match": "1"},
            ],
            tenant="default",
        )
    assert stale.value.status == 412 and stale.value.kind == "stale-if-match"
    assert stale.value.index == 1
    assert storage.get("notes", doc_id, tenant="default")["data"] == {"title": "a"}


def test_the_batch_url_answers_only_post(client, api):
    answer = client.options("/api/storage/notes/_batch")
    assert set(answer.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    refused = client.get(
        "/api/storage/notes/_batch", headers={"Authorization": f"Bearer {api.token}"}
    )
    problem(refused, 405, "method-not-allowed")


@pytest.fixture
def write_before_the_lock(app, monkeypatch):
    """Make a single-document patch land between a batch's plan and its write transaction,
    as a concurrent writer would; the batch must then plan again on what is stored."""

    def arm(doc_id, change):
        planned = []
        original = batches.plan

        def plan_then_interleave(*args):
            result = original(*args)
            if not planned:  # only after the plan made outside the lock
                ns = args[0]
                storage.patch_document(ns, doc_id, change, if_match=None)
            planned.append(result)
            return result

        monkeypatch.setattr(batches, "plan", plan_then_interleave)
        return planned

    return arm


def test_a_write_between_plan_and_lock_makes_the_batch_plan_again(
    app, client, api, write_before_the_lock
):
    doc_id = api.create("notes", {"title": "a", "count": 1}).get_json()["id"]
    planned = write_before_the_lock(doc_id, {"count": 5})
    response = batch(client, api.token, [{"op": "patch", "id": doc_id, "data": {"title": "b"}}])
    assert response.status_code == 200, response.get_json()
    assert len(planned) == 2  # planned again inside the lock
    assert response.get_json()["results"] == [{"id": doc_id, "version": 3}]
    assert stored(app)[doc_id] == (3, {"title": "b", "count": 5})  # the other write kept


def test_a_write_between_plan_and_lock_makes_a_stale_if_match_412(
    app, client, api, write_before_the_lock
):
    doc_id = api.create("notes", {"title": "a"}).get_json()["id"]
    write_before_the_lock(doc_id, {"count": 5})
    response = batch(
        client,
        api.token,
        [
            {"op": "create", "data": {"title": "new"}},
            {"op": "delete", "id": doc_id, "if_match": "1"},
        ],
    )
    body = problem(response, 412, "stale-if-match")
    assert body["index"] == 1 and body["current_version"] == 2
    assert stored(app) == {doc_id: (2, {"title": "a", "count": 5})}
