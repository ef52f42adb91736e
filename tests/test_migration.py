"""Breaking updates with a migration handler (SPEC §7), end to end with real plugin processes.

The core serves the test app on a loopback port (``live_core``); the plugin is
tests/support/plugins/migrating_plugin.py, whose handler rewrites documents through the
storage API with the migration credential.
"""

import pytest

from extframework.db import database
from extframework.models import Collection, Document, ManifestVersion, MigrationRun, Plugin
from extframework.services import catalog, migrations
from tests.support.migration_fixtures import (
    ENUM_STATUS,
    STRING_STATUS,
    migration_manifest,
    wait_for,
)

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_engines

PROBLEM = "application/problem+json"
MESSY = ["OPEN", "Closed", "done", "open", "todo", "closed"]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def operator(make_user, login):
    make_user("ops@example.com", role="admin", operator=True)
    login("ops@example.com")


@pytest.fixture
def installed(app, make_plugin, make_user, live_core, migrating_plugin, plugin_api):
    """Start a plugin process, register version 1.0.0 (status: any string), store documents
    in two tenants; return (process, token, {tenant: [ids]})."""

    def install(mode: str = "succeed", **overrides):
        process = migrating_plugin(live_core, mode)
        _, token = make_plugin(migration_manifest("1.0.0", process.url, STRING_STATUS, **overrides))
        make_user("someone@acme.example", tenant="acme")
        ids = {}
        for tenant in ("default", "acme"):
            api = plugin_api(token, tenant)
            ids[tenant] = [
                api.create("items", {"title": f"{tenant} {n}", "status": status}).get_json()["id"]
                for n, status in enumerate(MESSY)
            ]
        return process, token, ids

    return install


def update(client, token, manifest):
    return client.put("/api/registry/plugins/test-plugin", json=manifest, headers=bearer(token))


def migration(client) -> dict:
    response = client.get("/api/registry/plugins/test-plugin/migration")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def finished(client) -> dict:
    """Wait until the current attempt has ended; return the migration status."""
    return wait_for(lambda: (s := migration(client))["migration"]["state"] != "running" and s)


def rows(app) -> list[tuple]:
    with app.app_context(), database.connection_context():
        return sorted(
            (d.tenant, d.collection, d.doc_id, d.version, d.data["title"], d.data.get("status"))
            for d in Document.select().where(Document.plugin_id == "test-plugin")
        )


def v2(process, **overrides) -> dict:
    return migration_manifest("2.0.0", process.url, ENUM_STATUS, **overrides)


def test_enum_narrowing_is_migrated_by_the_handler_through_the_storage_api(
    app, client, operator, installed, plugin_api
):
    process, token, ids = installed()
    before = rows(app)
    response = update(client, token, v2(process))
    assert response.status_code == 202
    body = response.get_json()
    assert body["state"] == "migrating" and body["previous_version"] == "1.0.0"
    assert [c["kind"] for c in body["changes"]] == ["type_narrowed"]
    status = finished(client)
    assert status["state"] == "active" and status["version"] == "2.0.0"
    run = status["migration"]
    assert run["state"] == "succeeded" and run["attempts"] == 1 and run["last_error"] == ""
    assert run["report"]["checked"] == 12 and run["report"]["invalid_count"] == 0

    after = rows(app)
    assert [r[:3] for r in after] == [r[:3] for r in before]  # same documents, none added
    assert {r[5] for r in after} == {"open", "closed"}
    expected = {"OPEN": "open", "Closed": "closed", "done": "closed", "todo": "open"}
    for old, new in zip(before, after, strict=True):
        rewritten = old[5] in expected
        assert new[5] == expected.get(old[5], old[5])
        assert new[3] == old[3] + (1 if rewritten else 0)

    (call,) = process.calls()
    claims, context = call["claims"], call["context"]
    assert claims["sub"] == "system:migration" and claims["aud"] == "test-plugin"
    assert claims["scopes"] == ["migrate"] and claims["role"] == "admin"
    assert call["token_header_matches"] and context["credential"].startswith("efmc_")
    assert (context["from_version"], context["to_version"]) == ("1.0.0", "2.0.0")
    assert context["tenants"] == ["acme", "default"]
    assert context["collections"][0]["schema"]["properties"]["status"] == ENUM_STATUS
    assert context["storage_url"] == f"{app.config['BASE_URL']}/api/storage"

    api = plugin_api(token)
    assert api.read("items", ids["default"][0]).get_json()["data"]["status"] == "open"
    refused = api.create("items", {"title": "x", "status": "OPEN"})
    assert refused.status_code == 422 and refused.mimetype == PROBLEM
    spent = client.get("/api/storage/items", headers=bearer(context["credential"]))
    assert spent.status_code == 401 and spent.mimetype == PROBLEM
    with app.app_context(), database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == "test-plugin")
        assert plugin.manifest["version"] == "2.0.0" and plugin.routes.count() == 3
        assert Collection.get(Collection.plugin == plugin).schema["properties"]["status"] == (
            ENUM_STATUS
        )
        assert [v.version for v in ManifestVersion.select().order_by(ManifestVersion.id)] == [
            "1.0.0",
            "2.0.0",
        ]
        assert MigrationRun.get().credential_hash is None


def test_a_failing_handler_leaves_the_plugin_migrating_until_a_retry(
    app, client, operator, installed, runner
):
    process, token, _ = installed("fail")
    before = rows(app)
    assert update(client, token, v2(process)).status_code == 202
    status = finished(client)
    run = status["migration"]
    assert status["state"] == "migrating" and status["version"] == "1.0.0"
    assert run["state"] == "failed" and run["report"]["stage"] == "handler"
    assert "HTTP 500" in run["last_error"] and "simulated migration failure" in run["last_error"]
    assert rows(app) == before  # nothing rewritten, nothing rolled back

    shown = runner.invoke(args=["plugins", "migration", "status", "test-plugin"])
    assert shown.exit_code == 0
    assert "1.0.0 -> 2.0.0: failed after 1 attempt(s)" in shown.output
    assert "HTTP 500" in shown.output
    again = runner.invoke(args=["plugins", "migration", "retry", "test-plugin"])
    assert again.exit_code != 0 and "stays migrating" in again.output

    process.set_mode("succeed")
    done = runner.invoke(args=["plugins", "migration", "retry", "test-plugin"])
    assert done.exit_code == 0, done.output
    assert "test-plugin is active at version 2.0.0" in done.output
    assert "succeeded after 3 attempt(s)" in done.output
    assert {r[5] for r in rows(app)} == {"open", "closed"}
    refused = runner.invoke(args=["plugins", "migration", "retry", "test-plugin"])
    assert refused.exit_code != 0 and "only a migrating plugin" in refused.output


def test_a_handler_that_times_out_leaves_storage_frozen_and_menus_hidden(
    app, client, operator, installed, plugin_api
):
    process, token, ids = installed("hang")
    assert 'data-plugin="test-plugin"' in client.get("/").get_data(as_text=True)
    manifest = v2(process, migration={"path": "/migrate", "timeout_s": 1})
    assert update(client, token, manifest).status_code == 202
    wait_for(lambda: process.calls())  # the handler was called, outside the update request
    status = finished(client)
    run = status["migration"]
    assert status["state"] == "migrating" and run["state"] == "failed"
    assert "gave no answer within 1 s" in run["last_error"]

    api = plugin_api(token)
    for response in (
        api.read("items", ids["default"][0]),
        api.query("items"),
        api.create("items", {"title": "new"}),
        api.patch("items", ids["default"][0], {"title": "changed"}),
        api.delete("items", ids["default"][0]),
    ):
        assert response.status_code == 503 and response.mimetype == PROBLEM
        assert response.headers["Retry-After"] == "30"
        assert "migrating" in response.get_json()["detail"]
    assert 'data-plugin="test-plugin"' not in client.get("/").get_data(as_text=True)
    assert (
        update(client, token, migration_manifest("3.0.0", process.url, ENUM_STATUS)).status_code
        == 409
    )

    process.set_mode("succeed")
    retried = client.post("/api/registry/plugins/test-plugin/migration/retry")
    assert retried.status_code == 202
    assert retried.headers["Location"] == "/api/registry/plugins/test-plugin/migration"
    status = finished(client)
    assert status["state"] == "active" and status["migration"]["attempts"] == 2
    assert 'data-plugin="test-plugin"' in client.get("/").get_data(as_text=True)
    assert api.read("items", ids["default"][0]).status_code == 200


def test_a_document_left_invalid_is_reported_and_keeps_the_plugin_migrating(
    app, client, operator, installed
):
    process, token, _ = installed("invalid")
    assert update(client, token, v2(process)).status_code == 202
    status = finished(client)
    run = status["migration"]
    assert status["state"] == "migrating" and run["state"] == "failed"
    assert run["report"]["stage"] == "validation"
    assert run["report"]["checked"] == 12 and run["report"]["invalid_count"] == 1
    (bad,) = run["report"]["invalid"]
    assert bad["tenant"] == "acme" and bad["collection"] == "items"
    assert bad["errors"][0]["pointer"] == "/status" and "'OPEN'" in bad["errors"][0]["message"]
    assert "1 of 12 document(s) do not match" in run["last_error"]
    with app.app_context(), database.connection_context():
        assert Plugin.get(Plugin.plugin_id == "test-plugin").version == "1.0.0"

    page = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    assert bad["id"] in page and 'data-testid="migration-retry"' in page

    process.set_mode("succeed")
    retried = client.post("/console/plugins/test-plugin/migration/retry")
    assert retried.status_code == 303
    assert finished(client)["state"] == "active"
    page = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    assert 'data-testid="migration-retry"' not in page and "succeeded" in page


def test_a_renamed_collection_takes_its_documents_along(
    app, client, operator, installed, plugin_api
):
    process, token, ids = installed()
    manifest = v2(process)
    manifest["data_schemas"][0].update(collection="tasks", replaces="items")
    response = update(client, token, manifest)
    assert response.status_code == 202
    assert {c["kind"] for c in response.get_json()["changes"]} == {
        "collection_renamed",
        "type_narrowed",
    }
    status = finished(client)
    assert status["state"] == "active", (
        status["migration"]["last_error"],
        status["migration"]["report"],
    )
    assert status["migration"]["report"]["renamed"] == [
        {"from": "items", "to": "tasks", "documents": 12}
    ]
    assert {r[1] for r in rows(app)} == {"tasks"} and len(rows(app)) == 12
    api = plugin_api(token, "acme")
    moved = api.read("tasks", ids["acme"][0])
    assert moved.status_code == 200 and moved.get_json()["data"]["status"] == "open"
    assert api.read("items", ids["acme"][0]).status_code == 404
    with app.app_context(), database.connection_context():
        assert [c.name for c in Collection.select()] == ["tasks"]
    assert client.get("/api/registry/plugins/test-plugin/diff?from=1.0.0&to=2.0.0").get_json()[
        "breaking"
    ]


def test_the_migration_credential_works_only_for_its_running_attempt(
    app, client, make_plugin, make_storage_plugin, plugin_api, user_token, make_user
):
    _, token = make_plugin(migration_manifest("1.0.0", "http://127.0.0.1:9", STRING_STATUS))
    _, other_token = make_storage_plugin("other-plugin")
    doc = plugin_api(token).create("items", {"title": "a", "status": "OPEN"}).get_json()
    plugin_api(other_token).create("notes", {"title": "secret"})
    with app.app_context(), database.connection_context():
        plugin = catalog.get_plugin("test-plugin")
        manifest = migration_manifest("2.0.0", "http://127.0.0.1:9", ENUM_STATUS)
        run, credential = migrations.begin(
            plugin, manifest, [], {}, actor="test", config=app.config
        )  # not launched: the attempt stays "running" in this process

    as_migration = plugin_api(credential)
    assert as_migration.read("items", doc["id"]).status_code == 200
    patched = as_migration.patch("items", doc["id"], {"status": "open"})
    assert patched.status_code == 200 and patched.get_json()["version"] == 2
    invalid = as_migration.patch("items", doc["id"], {"status": "OPEN"})  # new schema applies
    assert invalid.status_code == 422
    assert as_migration.read("notes", "x").status_code == 404  # only its own plugin's data
    frozen = plugin_api(token).read("items", doc["id"])
    assert frozen.status_code == 503 and frozen.headers["Retry-After"] == "30"
    for bad in (credential + "x", "efmc_" + "a" * 43):
        assert plugin_api(bad).read("items", doc["id"]).status_code == 401
    make_user("member@example.com")
    as_user = plugin_api(user_token("member@example.com")).read("items", doc["id"])
    assert as_user.status_code == 401
    assert (
        client.get("/api/registry/plugins/test-plugin", headers=bearer(credential)).status_code
        == 401
    )  # not a plugin token

    with app.app_context(), database.connection_context():
        MigrationRun.update(credential_expires_at=MigrationRun.started_at).execute()
    expired = as_migration.read("items", doc["id"])
    assert expired.status_code == 401 and "expired" in expired.get_json()["detail"]
    with app.app_context(), database.connection_context():
        assert migrations.is_abandoned(MigrationRun.get_by_id(run.id)) is True  # no thread


def test_every_version_is_kept_and_any_two_can_be_compared(app, client, operator, make_plugin):
    _, token = make_plugin(migration_manifest("1.0.0", "http://127.0.0.1:9", STRING_STATUS))
    wider = migration_manifest("1.1.0", "http://127.0.0.1:9", STRING_STATUS)
    wider["data_schemas"][0]["schema"]["properties"]["note"] = {"type": "string"}
    assert update(client, token, wider).status_code == 200
    narrower = migration_manifest("1.2.0", "http://127.0.0.1:9", {"type": "string", "maxLength": 5})
    narrower.pop("migration")
    assert update(client, token, narrower).status_code == 409  # refused: not recorded

    listed = client.get("/api/registry/plugins/test-plugin/versions").get_json()["versions"]
    assert [v["version"] for v in listed] == ["1.1.0", "1.0.0"]
    assert listed[0]["manifest"]["data_schemas"] == wider["data_schemas"]
    compatible = client.get("/api/registry/plugins/test-plugin/diff?from=1.0.0&to=1.1.0")
    assert compatible.get_json()["breaking"] is False
    assert compatible.get_json()["changes"][0]["kind"] == "property_added"
    backwards = client.get("/api/registry/plugins/test-plugin/diff?from=1.1.0&to=1.0.0")
    assert backwards.get_json()["changes"][0]["kind"] == "property_removed"
    missing = client.get("/api/registry/plugins/test-plugin/diff?from=1.0.0&to=9.9.9")
    assert missing.status_code == 404 and missing.mimetype == PROBLEM
    assert client.get("/api/registry/plugins/test-plugin/diff?from=1.0.0").status_code == 400
    as_plugin = client.get(
        "/api/registry/plugins/test-plugin/diff?from=1.0.0&to=1.1.0", headers=bearer(token)
    )
    assert as_plugin.status_code == 200

    page = client.get("/console/plugins/test-plugin/diff?from=1.0.0&to=1.1.0")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "property_added" in html and "compatible" in html
    assert "Show the diff" in client.get("/console/plugins/test-plugin").get_data(as_text=True)


def test_a_migration_is_refused_unless_the_plugin_is_active(client, make_plugin, operator):
    _, token = make_plugin(
        migration_manifest("1.0.0", "http://127.0.0.1:9", STRING_STATUS), state="degraded"
    )
    response = update(client, token, migration_manifest("2.0.0", "http://127.0.0.1:9", ENUM_STATUS))
    assert response.status_code == 409 and response.get_json()["allowed"] == ["active", "disabled"]
    status = client.get("/api/registry/plugins/test-plugin/migration")
    assert status.get_json()["migration"] is None
    retry = client.post("/api/registry/plugins/test-plugin/migration/retry")
    assert retry.status_code == 409 and retry.mimetype == PROBLEM


def test_the_status_reads_the_state_beside_the_runs_not_from_a_row_loaded_earlier(
    app, client, operator, installed
):
    """An API request loads the plugin, then the attempt may finish before the runs are read:
    the answer must not pair a ``migrating`` state with a run that has succeeded."""
    process, token, _ = installed()
    assert update(client, token, v2(process)).status_code == 202
    with app.app_context(), database.connection_context():
        loaded_while_migrating = Plugin.get(Plugin.plugin_id == "test-plugin")
    assert loaded_while_migrating.state == "migrating"
    finished(client)
    with app.app_context(), database.connection_context():
        status = migrations.status(loaded_while_migrating)
    assert status["migration"]["state"] == "succeeded"
    assert (status["state"], status["version"]) == ("active", "2.0.0")
