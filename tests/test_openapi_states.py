"""Answers from plugins in every interesting state match the OpenAPI document.

``test_openapi_responses.py`` covers fresh plugins; here the records carry what only later
states fill in: health checks, a migration (failed, then retried), a pending move to another
server, an uninstall with an archive, a login throttle, refused credentials.
"""

import pytest

from extframework.db import database
from extframework.openapi import openapi_document
from extframework.services import health
from tests.support.migration_fixtures import (
    ENUM_STATUS,
    STRING_STATUS,
    migration_manifest,
    wait_for,
)
from tests.support.openapi_check import check_response
from tests.support.registry_fixtures import sample_manifest

PLUGIN = "/api/registry/plugins/{plugin_id}"


@pytest.fixture(scope="module")
def document() -> dict:
    return openapi_document()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def operator_headers(make_user, user_token) -> dict:
    make_user("op@example.com", role="admin", operator=True)
    return bearer(user_token("op@example.com"))


def test_a_migration_failed_and_retried_matches_the_document(
    app, client, document, live_core, migrating_plugin, make_plugin, make_user, user_token
):
    operator = operator_headers(make_user, user_token)  # after live_core set the issuer
    process = migrating_plugin(live_core, "fail")
    _, token = make_plugin(migration_manifest("1.0.0", process.url, STRING_STATUS))
    created = client.post("/api/storage/items", json={"title": "a"}, headers=bearer(token))
    assert created.status_code == 201
    v2 = migration_manifest("2.0.0", process.url, ENUM_STATUS)
    started = client.put("/api/registry/plugins/test-plugin", json=v2, headers=bearer(token))
    assert started.status_code == 202, started.get_json()
    check_response(document, PLUGIN, "put", started)

    def status() -> dict:
        answer = client.get("/api/registry/plugins/test-plugin/migration", headers=operator)
        check_response(document, PLUGIN + "/migration", "get", answer)
        return answer.get_json()

    wait_for(lambda: status()["migration"]["state"] == "failed")
    summary = client.get("/api/registry/plugins/test-plugin", headers=operator)
    assert summary.get_json()["migration"]["state"] == "failed"
    check_response(document, PLUGIN, "get", summary)
    frozen = client.post("/api/storage/items", json={"title": "b"}, headers=bearer(token))
    assert frozen.status_code == 503
    check_response(document, "/api/storage/{collection}", "post", frozen)
    enable = client.post("/api/registry/plugins/test-plugin/enable", headers=operator)
    assert enable.status_code == 409
    check_response(document, PLUGIN + "/enable", "post", enable)

    process.set_mode("succeed")
    retried = client.post("/api/registry/plugins/test-plugin/migration/retry", headers=operator)
    assert retried.status_code == 202, retried.get_json()
    check_response(document, PLUGIN + "/migration/retry", "post", retried)
    wait_for(lambda: status()["migration"]["state"] == "succeeded")
    assert len(status()["earlier"]) == 0  # one run, two attempts


def test_a_move_to_another_server_matches_the_document(
    app, client, document, enrolment_key, plugin_server, make_user, user_token
):
    operator = operator_headers(make_user, user_token)
    first, second = plugin_server(), plugin_server()
    manifest = sample_manifest(base_url=first.url)
    token = client.post(
        "/api/registry/plugins", json=manifest, headers=bearer(enrolment_key)
    ).get_json()["plugin_token"]
    with app.app_context(), database.connection_context():
        health.sweep(app.config)  # active, with a health check on record
    summary = client.get("/api/registry/plugins/test-plugin", headers=bearer(token))
    assert summary.get_json()["last_health"]["ok"] is True
    check_response(document, PLUGIN, "get", summary)

    for version, verb in (("1.1.0", "reject"), ("1.2.0", "approve")):
        moved = sample_manifest(base_url=second.url, version=version)
        answer = client.put("/api/registry/plugins/test-plugin", json=moved, headers=bearer(token))
        assert answer.status_code == 202, answer.get_json()
        check_response(document, PLUGIN, "put", answer)
        polled = client.get("/api/registry/plugins/test-plugin/pending-update", headers=operator)
        check_response(document, PLUGIN + "/pending-update", "get", polled)
        listed = client.get("/api/registry/pending-updates", headers=operator)
        check_response(document, "/api/registry/pending-updates", "get", listed)
        [pending] = listed.get_json()["pending_updates"]
        decided = client.post(
            f"/api/registry/pending-updates/{pending['id']}/{verb}",
            json={"reason": "test"},
            headers=operator,
        )
        assert decided.status_code == 200, decided.get_json()
        check_response(
            document, f"/api/registry/pending-updates/{{pending_id}}/{verb}", "post", decided
        )
    gone = client.post("/api/registry/pending-updates/999/approve", headers=operator)
    assert gone.status_code == 404
    check_response(document, "/api/registry/pending-updates/{pending_id}/approve", "post", gone)


def test_an_uninstall_with_an_archive_matches_the_document(
    client, document, make_storage_plugin, make_user, user_token
):
    operator = operator_headers(make_user, user_token)
    _, token = make_storage_plugin()
    client.post("/api/storage/notes", json={"title": "kept"}, headers=bearer(token))
    exported = client.get("/api/registry/plugins/acme-notes/export", headers=operator)
    check_response(document, PLUGIN + "/export", "get", exported)
    policy = "/api/registry/plugins/acme-notes/tenants/default/uninstall-policy"
    client.put(policy, json={"policy": "archive"}, headers=operator)
    disabled = client.post("/api/registry/plugins/acme-notes/disable", headers=operator)
    check_response(document, PLUGIN + "/disable", "post", disabled)
    refused = client.post("/api/storage/notes", json={"title": "x"}, headers=bearer(token))
    assert refused.status_code == 403
    check_response(document, "/api/storage/{collection}", "post", refused)
    removed = client.post("/api/registry/plugins/acme-notes/deregister", headers=operator)
    assert removed.get_json()["uninstall"]["tenants"]["default"]["archive"]
    check_response(document, PLUGIN + "/deregister", "post", removed)
    archives = client.get("/api/registry/archives", headers=operator)
    assert len(archives.get_json()["archives"]) == 1
    check_response(document, "/api/registry/archives", "get", archives)
    decided = client.put(policy, json={"policy": "purge"}, headers=operator)
    assert decided.status_code == 409
    check_response(document, PLUGIN + "/tenants/{tenant}/uninstall-policy", "put", decided)


def test_refused_credentials_and_throttled_logins_match_the_document(
    app, client, document, make_storage_plugin, make_user
):
    make_user("someone@example.com")
    _, token = make_storage_plugin()
    wrong_kind = client.get("/api/auth/me", headers=bearer(token))
    assert wrong_kind.status_code == 401
    check_response(document, "/api/auth/me", "get", wrong_kind)
    not_operator = client.get("/api/registry/archives", headers=bearer(token))
    assert not_operator.status_code == 401
    check_response(document, "/api/registry/archives", "get", not_operator)
    app.config["LOGIN_MAX_FAILURES"] = 1
    app.config["LOGIN_ADDRESS_DELAY_S"] = 0
    wrong = {"email": "someone@example.com", "password": "wrong"}
    client.post("/api/auth/token", json=wrong)
    throttled = client.post("/api/auth/token", json=wrong)
    assert throttled.status_code == 429
    check_response(document, "/api/auth/token", "post", throttled)


def test_an_unknown_tenant_refusal_matches_the_document(
    client, document, make_storage_plugin, make_user, user_token
):
    operator = operator_headers(make_user, user_token)
    make_storage_plugin()
    unknown = client.put(
        "/api/registry/plugins/acme-notes/tenants", json={"tenants": ["nowhere"]}, headers=operator
    )
    assert unknown.status_code == 400
    check_response(document, PLUGIN + "/tenants", "put", unknown)
