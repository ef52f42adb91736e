"""A plugin token cannot move a plugin to another server; a deregistered id cannot be taken.

Issue 11's takeover finding: an update that moves ``base_url`` to another origin waits for an
operator's approval (the old server keeps serving), and re-registering a deregistered
``plugin_id`` that still holds data needs an enrolment key created for that plugin_id.
"""

import sys
from pathlib import Path

import pytest

from extframework.db import database
from extframework.models import AuditEvent, EnrolmentKey, PendingUpdate, Plugin
from extframework.services import enrolment, health, lifecycle, migrations
from extframework_sdk import register_or_update
from tests.support.processes import Process, free_port
from tests.support.registry_fixtures import sample_manifest

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_engines

PROBLEM = "application/problem+json"
NAMED_SERVER = Path(__file__).resolve().parent / "support" / "plugins" / "named_server.py"
VIEW = "/plugin-proxy/test-plugin/items"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def named_server(tmp_path):
    """Start a plugin process that names itself in every fragment and logs every call."""
    started: list[Process] = []

    def start(name: str) -> Process:
        port = free_port()
        log = tmp_path / f"{name}.calls"
        log.touch()
        args = [sys.executable, str(NAMED_SERVER), "--port", str(port), "--name", name]
        process = Process([*args, "--log", str(log)], port, "/health")
        process.calls = lambda: log.read_text().splitlines()
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def operator(make_user, login):
    make_user("ops@example.com", role="admin", operator=True)
    login("ops@example.com")


def register(client, key, manifest):
    return client.post("/api/registry/plugins", json=manifest, headers=bearer(key))


def update(client, token, manifest):
    return client.put("/api/registry/plugins/test-plugin", json=manifest, headers=bearer(token))


def record(app) -> Plugin:
    with app.app_context(), database.connection_context():
        return Plugin.get(Plugin.plugin_id == "test-plugin")


def pending_rows(app) -> list[PendingUpdate]:
    with app.app_context(), database.connection_context():
        return list(PendingUpdate.select().order_by(PendingUpdate.id))


def audit_actions(app, action: str) -> list[tuple[str, dict]]:
    with app.app_context(), database.connection_context():
        rows = AuditEvent.select().where(AuditEvent.action == action).order_by(AuditEvent.id)
        return [(row.actor, row.detail) for row in rows]


def activate(app) -> None:
    with app.app_context(), database.connection_context():
        health.sweep(app.config)
        assert Plugin.get(Plugin.plugin_id == "test-plugin").state == "active"


# --- moving base_url ------------------------------------------------------------------------


def test_a_move_to_another_server_waits_for_approval_and_views_stay_until_then(
    app, client, operator, enrolment_key, named_server
):
    first, second = named_server("first"), named_server("second")
    created = register(client, enrolment_key, sample_manifest(base_url=first.url + "/app"))
    assert created.status_code == 201, created.get_json()
    token = created.get_json()["plugin_token"]
    activate(app)
    assert "served by first: GET /app/items" in client.get(VIEW).get_data(as_text=True)

    moved = update(client, token, sample_manifest(version="1.1.0", base_url=second.url + "/app"))
    assert moved.status_code == 202, moved.get_json()
    body = moved.get_json()
    pending = body["pending_update"]
    assert (pending["previous_origin"], pending["origin"]) == (first.url, second.url)
    assert (pending["previous_version"], pending["version"]) == ("1.0.0", "1.1.0")
    assert body["version"] == "1.0.0" and "approval" in body["detail"]
    assert moved.headers["Location"] == "/api/registry/plugins/test-plugin/pending-update"

    # Until an operator approves, every view (and its request JWT) still goes to the old server.
    assert "served by first" in client.get(VIEW).get_data(as_text=True)
    assert second.calls() == []
    plugin = record(app)
    assert (plugin.base_url, plugin.version) == (first.url + "/app", "1.0.0")
    polled = client.get("/api/registry/plugins/test-plugin/pending-update", headers=bearer(token))
    assert polled.status_code == 200 and polled.get_json()["pending_update"]["id"] == pending["id"]

    approved = client.post(f"/api/registry/pending-updates/{pending['id']}/approve")
    assert approved.status_code == 200, approved.get_json()
    assert approved.get_json()["version"] == "1.1.0"
    assert "served by second: GET /app/items" in client.get(VIEW).get_data(as_text=True)
    assert second.calls() == ["GET /app/items jwt"]
    assert record(app).base_url == second.url + "/app" and pending_rows(app) == []
    [(actor, detail)] = audit_actions(app, "plugin.update.approve")
    assert actor == "user:ops@example.com" and detail["origin"] == second.url
    assert audit_actions(app, "plugin.update")[-1][0] == "user:ops@example.com"
    after = client.get("/api/registry/plugins/test-plugin/pending-update", headers=bearer(token))
    assert after.get_json()["pending_update"] is None and after.get_json()["version"] == "1.1.0"


def test_rejection_discards_the_update_and_the_old_url_keeps_serving(
    app, client, operator, make_plugin
):
    _, token = make_plugin(base_url="http://127.0.0.1:9/test-plugin")
    moved = update(client, token, sample_manifest(version="1.1.0", base_url="http://127.0.0.2:9"))
    assert moved.status_code == 202
    pending_id = moved.get_json()["pending_update"]["id"]
    rejected = client.post(
        f"/api/registry/pending-updates/{pending_id}/reject", json={"reason": "not ours"}
    )
    assert rejected.status_code == 200, rejected.get_json()
    plugin = record(app)
    assert (plugin.base_url, plugin.version) == ("http://127.0.0.1:9/test-plugin", "1.0.0")
    assert pending_rows(app) == []
    [(actor, detail)] = audit_actions(app, "plugin.update.reject")
    assert actor == "user:ops@example.com" and detail["reason"] == "not ours"
    again = client.post(f"/api/registry/pending-updates/{pending_id}/approve")
    assert again.status_code == 404 and again.mimetype == PROBLEM


@pytest.mark.parametrize(
    "new_url",
    [
        "https://127.0.0.1:9/test-plugin",  # scheme
        "http://localhost:9/test-plugin",  # host
        "http://127.0.0.1:10/test-plugin",  # port
    ],
)
def test_any_change_of_scheme_host_or_port_is_a_move(app, client, make_plugin, new_url):
    _, token = make_plugin()
    moved = update(client, token, sample_manifest(version="1.1.0", base_url=new_url))
    assert moved.status_code == 202
    assert record(app).base_url == "http://127.0.0.1:9/test-plugin"


def test_a_path_only_change_on_the_same_origin_applies_at_once(
    app, client, make_plugin, healthy_plugin_server
):
    url = healthy_plugin_server.url
    _, token = make_plugin(base_url=url + "/v1")
    response = update(client, token, sample_manifest(version="1.1.0", base_url=url + "/v2/"))
    assert response.status_code == 200, response.get_json()
    assert record(app).base_url == url + "/v2" and pending_rows(app) == []


def test_a_moving_update_is_validated_in_full_when_it_arrives(app, client, make_plugin):
    _, token = make_plugin()
    away = "http://127.0.0.2:9"
    breaking = sample_manifest(version="2.0.0", base_url=away)
    breaking["data_schemas"][0]["schema"]["properties"]["count"]["type"] = "string"
    refused = update(client, token, breaking)
    assert refused.status_code == 409 and refused.mimetype == PROBLEM
    assert refused.get_json()["diff"][0]["kind"] == "type_changed"
    stale = update(client, token, sample_manifest(version="0.9.0", base_url=away))
    assert stale.status_code == 409 and stale.get_json()["current_version"] == "1.0.0"
    assert stale.get_json()["type"].endswith(":version-not-higher")
    invalid = update(client, token, sample_manifest(version="1.1.0", base_url="ftp://x"))
    assert invalid.status_code == 400
    assert pending_rows(app) == [] and record(app).version == "1.0.0"


def test_a_newer_update_replaces_the_pending_one_and_a_repeat_keeps_it(
    app, client, operator, make_plugin
):
    _, token = make_plugin()
    manifest = sample_manifest(version="1.1.0", base_url="http://127.0.0.2:9")
    first_id = update(client, token, manifest).get_json()["pending_update"]["id"]
    repeat = update(client, token, manifest)
    assert repeat.status_code == 202 and repeat.get_json()["pending_update"]["id"] == first_id
    newer = update(client, token, sample_manifest(version="1.2.0", base_url="http://127.0.0.3:9"))
    newer_id = newer.get_json()["pending_update"]["id"]
    assert newer_id != first_id
    assert [(p.id, p.version) for p in pending_rows(app)] == [(newer_id, "1.2.0")]
    stale = client.post(f"/api/registry/pending-updates/{first_id}/approve")
    assert stale.status_code == 404 and "replaced" in stale.get_json()["detail"]
    listed = client.get("/api/registry/pending-updates").get_json()["pending_updates"]
    assert [p["id"] for p in listed] == [newer_id]


def test_an_approval_probes_the_new_server_and_a_failed_probe_keeps_it_pending(
    app, client, operator, make_plugin
):
    _, token = make_plugin()
    dead = f"http://127.0.0.1:{free_port()}"
    pending_id = update(client, token, sample_manifest(version="1.1.0", base_url=dead)).get_json()[
        "pending_update"
    ]["id"]
    refused = client.post(f"/api/registry/pending-updates/{pending_id}/approve")
    assert refused.status_code == 502 and refused.mimetype == PROBLEM
    assert [p.id for p in pending_rows(app)] == [pending_id]
    assert record(app).version == "1.0.0"


def test_a_breaking_move_with_a_handler_starts_its_migration_when_approved(
    app, client, operator, make_plugin, healthy_plugin_server
):
    _, token = make_plugin()
    manifest = sample_manifest(
        version="2.0.0", base_url=healthy_plugin_server.url, migration={"path": "/migrate"}
    )
    manifest["data_schemas"] = []
    moved = update(client, token, manifest)
    assert moved.status_code == 202 and "pending_update" in moved.get_json()
    assert record(app).state == "active"
    approved = client.post(
        f"/api/registry/pending-updates/{moved.get_json()['pending_update']['id']}/approve"
    )
    assert approved.status_code == 202, approved.get_json()
    assert approved.get_json()["state"] == "migrating"
    assert approved.headers["Location"] == "/api/registry/plugins/test-plugin/migration"
    assert migrations.wait_for_attempts(30)


def test_deregistering_discards_a_pending_update_and_disabling_keeps_it(
    app, client, operator, make_plugin
):
    _, token = make_plugin()
    update(client, token, sample_manifest(version="1.1.0", base_url="http://127.0.0.2:9"))
    assert client.post("/api/registry/plugins/test-plugin/disable").status_code == 200
    assert len(pending_rows(app)) == 1
    assert client.post("/api/registry/plugins/test-plugin/deregister").status_code == 200
    assert pending_rows(app) == []
    [(actor, detail)] = audit_actions(app, "plugin.update.discard")
    assert actor == "user:ops@example.com" and detail["version"] == "1.1.0"


def test_only_an_operator_decides_a_pending_update(app, client, make_plugin, make_user, user_token):
    _, token = make_plugin()
    _, other = make_plugin()
    moved = update(client, token, sample_manifest(version="1.1.0", base_url="http://127.0.0.2:9"))
    pending_id = moved.get_json()["pending_update"]["id"]
    make_user("admin@example.com", role="admin")
    admin = bearer(user_token("admin@example.com"))
    for headers in (bearer(token), admin, {}):
        for verb in ("approve", "reject"):
            response = client.post(
                f"/api/registry/pending-updates/{pending_id}/{verb}", headers=headers
            )
            assert response.status_code in (401, 403), (headers, verb, response.status_code)
        assert client.get("/api/registry/pending-updates", headers=headers).status_code in (
            401,
            403,
        )
    foreign = client.get("/api/registry/plugins/test-plugin/pending-update", headers=bearer(other))
    assert foreign.status_code == 403
    assert [p.id for p in pending_rows(app)] == [pending_id]


# --- registering a deregistered plugin_id again ---------------------------------------------


@pytest.fixture
def retained(app, client, operator, make_plugin, plugin_api):
    """A deregistered test-plugin whose tenant 'default' holds three documents."""

    def deregister(policy: str = "retain") -> list[str]:
        _, token = make_plugin()
        api = plugin_api(token)
        ids = [api.create("items", {"title": f"kept {n}"}).get_json()["id"] for n in range(3)]
        client.put(
            "/api/registry/plugins/test-plugin/tenants/default/uninstall-policy",
            json={"policy": policy},
        )
        assert client.post("/api/registry/plugins/test-plugin/disable").status_code == 200
        gone = client.post(
            "/api/registry/plugins/test-plugin/deregister", json={"confirm": "test-plugin"}
        )
        assert gone.status_code == 200, gone.get_json()
        return ids

    return deregister


def scoped_key(app, plugin_id: str) -> str:
    with app.app_context(), database.connection_context():
        return enrolment.create_key(actor="test", plugin_id=plugin_id)[1]


@pytest.mark.parametrize("policy", ["retain", "archive"])
def test_registering_a_deregistered_id_that_holds_data_needs_a_key_for_that_id(
    app, client, retained, enrolment_key, healthy_plugin_server, plugin_api, policy
):
    ids = retained(policy)
    again = sample_manifest(version="1.1.0", base_url=healthy_plugin_server.url)
    refused = register(client, enrolment_key, again)
    assert refused.status_code == 409 and refused.mimetype == PROBLEM
    detail = refused.get_json()["detail"]
    assert "enrolment-keys create --plugin test-plugin" in detail
    assert record(app).state == "deregistered"

    accepted = register(client, scoped_key(app, "test-plugin"), again)
    assert accepted.status_code == 201, accepted.get_json()
    if policy == "retain":
        with app.app_context(), database.connection_context():
            plugin = Plugin.get(Plugin.plugin_id == "test-plugin")
            lifecycle.transition(plugin, "active", cause="test", actor="test")
        found = plugin_api(accepted.get_json()["plugin_token"]).query("items").get_json()["items"]
        assert sorted(d["id"] for d in found) == sorted(ids)


def test_a_purged_plugin_id_registers_again_with_any_key(
    app, client, retained, enrolment_key, healthy_plugin_server
):
    retained("purge")
    again = sample_manifest(version="1.1.0", base_url=healthy_plugin_server.url)
    assert register(client, enrolment_key, again).status_code == 201


def test_a_scoped_key_registers_only_its_plugin_id(app, client, healthy_plugin_server):
    key = scoped_key(app, "test-plugin")
    other = sample_manifest(plugin_id="other-plugin", base_url=healthy_plugin_server.url)
    refused = register(client, key, other)
    assert refused.status_code == 403 and refused.mimetype == PROBLEM
    assert "'test-plugin'" in refused.get_json()["detail"]
    with app.app_context(), database.connection_context():
        assert Plugin.select().count() == 0
    own = register(client, key, sample_manifest(base_url=healthy_plugin_server.url))
    assert own.status_code == 201


def test_a_key_scope_must_be_a_plugin_id(app):
    from extframework.errors import BadRequest

    with app.app_context(), database.connection_context():
        with pytest.raises(BadRequest) as refused:
            enrolment.create_key(actor="test", plugin_id="Not An Id")
        assert refused.value.errors[0]["pointer"] == "/plugin_id"
        assert EnrolmentKey.select().count() == 0


# --- command line and console ---------------------------------------------------------------


def test_cli_creates_and_lists_a_key_for_one_plugin_id(app, runner):
    created = runner.invoke(args=["enrolment-keys", "create", "--plugin", "test-plugin"])
    assert created.exit_code == 0, created.output
    assert "for plugin test-plugin" in created.output
    listed = runner.invoke(args=["enrolment-keys", "list"]).output
    assert "plugin: test-plugin" in listed
    bad = runner.invoke(args=["enrolment-keys", "create", "--plugin", "Bad Id"])
    assert bad.exit_code != 0 and "plugin_id" in bad.output


def test_cli_lists_approves_and_rejects_pending_updates(
    app, client, runner, make_plugin, healthy_plugin_server
):
    _, token = make_plugin(base_url="http://127.0.0.1:9/test-plugin")
    first = update(client, token, sample_manifest(version="1.1.0", base_url="http://127.0.0.2:9"))
    first_id = first.get_json()["pending_update"]["id"]
    shown = runner.invoke(args=["plugins", "pending"])
    assert shown.exit_code == 0
    assert shown.output.startswith(f"{first_id}\ttest-plugin\t1.0.0 -> 1.1.0\t")
    assert "http://127.0.0.1:9 -> http://127.0.0.2:9\t" in shown.output
    rejected = runner.invoke(args=["plugins", "reject-update", str(first_id)])
    assert rejected.exit_code == 0 and "Rejected" in rejected.output
    assert runner.invoke(args=["plugins", "pending"]).output.strip() == "No pending updates."

    moved = sample_manifest(version="1.2.0", base_url=healthy_plugin_server.url)
    second_id = update(client, token, moved).get_json()["pending_update"]["id"]
    approved = runner.invoke(args=["plugins", "approve-update", str(second_id)])
    assert approved.exit_code == 0, approved.output
    assert record(app).base_url == healthy_plugin_server.url
    assert audit_actions(app, "plugin.update.approve")[0][0] == "cli"
    gone = runner.invoke(args=["plugins", "approve-update", str(second_id)])
    assert gone.exit_code != 0 and f"No pending update {second_id}" in gone.output


def test_console_shows_a_pending_update_and_approves_it(
    app, client, operator, make_plugin, healthy_plugin_server
):
    _, token = make_plugin()
    moved = update(
        client, token, sample_manifest(version="1.1.0", base_url=healthy_plugin_server.url)
    )
    pending_id = moved.get_json()["pending_update"]["id"]
    page = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    card = page.split('data-testid="pending-update"', 1)[1].split("</section>", 1)[0]
    assert "http://127.0.0.1:9" in card and healthy_plugin_server.url in card
    assert "1.0.0" in card and "1.1.0" in card
    assert "pending update" in client.get("/console/plugins").get_data(as_text=True)

    done = client.post(
        f"/console/plugins/test-plugin/pending-updates/{pending_id}/approve",
        data={"confirm": "yes"},
    )
    assert done.status_code == 303
    assert record(app).base_url == healthy_plugin_server.url
    page = client.get(done.headers["Location"]).get_data(as_text=True)
    assert 'data-testid="pending-update"' not in page and "1.1.0" in page


def test_console_creates_a_scoped_enrolment_key_and_lists_its_plugin(app, client, operator):
    created = client.post(
        "/console/enrolment-keys",
        data={"label": "for billing", "plugin_id": "acme-billing"},
        follow_redirects=True,
    )
    assert created.status_code == 200
    row = created.get_data(as_text=True).split('data-testid="keys"', 1)[1]
    assert "acme-billing" in row
    with app.app_context(), database.connection_context():
        assert EnrolmentKey.get().plugin_id == "acme-billing"
    bad = client.post("/console/enrolment-keys", data={"plugin_id": "Bad Id"})
    assert bad.status_code == 400 and "plugin_id" in bad.get_data(as_text=True)


def test_the_sdk_keeps_its_token_when_a_move_awaits_approval(
    app, live_server, enrolment_key, healthy_plugin_server, tmp_path
):
    token_file = tmp_path / "token"
    first = sample_manifest(base_url=healthy_plugin_server.url)
    token = register_or_update(
        live_server, first, token_file=token_file, enrolment_key=enrolment_key
    )
    moved = sample_manifest(version="1.1.0", base_url="http://127.0.0.2:9")
    assert register_or_update(live_server, moved, token_file=token_file, attempts=1) == token
    assert record(app).base_url == healthy_plugin_server.url
    assert [p.version for p in pending_rows(app)] == ["1.1.0"]
