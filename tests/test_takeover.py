"""A plugin token cannot move a plugin to another server; a deregistered id cannot be taken.

Issue 11's takeover finding: an update that moves ``base_url`` to another origin waits for an
operator's approval (the old server keeps serving), and re-registering a deregistered
``plugin_id`` that still holds data needs an enrolment key created for that plugin_id.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

from extframework.db import database
from extframework.models import AuditEvent, PendingUpdate, Plugin
from extframework.services import health, migrations
from tests.support.processes import Process, free_port
from tests.support.registry_fixtures import sample_manifest

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
    moved = update(client, token, sample_manifest(version="1.1.0", base_url="http://10.9.9.9:80"))
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
    away = "http://10.9.9.9:80"
    breaking = sample_manifest(version="2.0.0", base_url=away)
    breaking["data_schemas"][0]["schema"]["properties"]["count"]["type"] = "string"
    refused = update(client, token, breaking)
    assert refused.status_code == 409 and refused.mimetype == PROBLEM
    assert refused.get_json()["diff"][0]["kind"] == "type_changed"
    stale = update(client, token, sample_manifest(version="1.0.0", base_url=away))
    assert stale.status_code == 409 and stale.get_json()["current_version"] == "1.0.0"
    invalid = update(client, token, sample_manifest(version="1.1.0", base_url="ftp://x"))
    assert invalid.status_code == 400
    assert pending_rows(app) == [] and record(app).version == "1.0.0"


def test_a_newer_update_replaces_the_pending_one_and_a_repeat_keeps_it(
    app, client, operator, make_plugin
):
    _, token = make_plugin()
    manifest = sample_manifest(version="1.1.0", base_url="http://10.9.9.9:80")
    first_id = update(client, token, manifest).get_json()["pending_update"]["id"]
    repeat = update(client, token, manifest)
    assert repeat.status_code == 202 and repeat.get_json()["pending_update"]["id"] == first_id
    newer = update(client, token, sample_manifest(version="1.2.0", base_url="http://10.8.8.8:80"))
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
    update(client, token, sample_manifest(version="1.1.0", base_url="http://10.9.9.9:80"))
    assert client.post("/api/registry/plugins/test-plugin/disable").status_code == 200
    assert len(pending_rows(app)) == 1
    assert client.post("/api/registry/plugins/test-plugin/deregister").status_code == 200
    assert pending_rows(app) == []
    [(actor, detail)] = audit_actions(app, "plugin.update.discard")
    assert actor == "user:ops@example.com" and detail["version"] == "1.1.0"


def test_only_an_operator_decides_a_pending_update(app, client, make_plugin, make_user, user_token):
    _, token = make_plugin()
    _, other = make_plugin()
    moved = update(client, token, sample_manifest(version="1.1.0", base_url="http://10.9.9.9:80"))
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


# --- command line and console ---------------------------------------------------------------


def test_cli_lists_approves_and_rejects_pending_updates(
    app, client, runner, make_plugin, healthy_plugin_server
):
    _, token = make_plugin(base_url="http://127.0.0.1:9/test-plugin")
    first = update(client, token, sample_manifest(version="1.1.0", base_url="http://10.9.9.9:80"))
    first_id = first.get_json()["pending_update"]["id"]
    shown = runner.invoke(args=["plugins", "pending"])
    assert shown.exit_code == 0
    assert shown.output.startswith(f"{first_id}\ttest-plugin\t1.0.0 -> 1.1.0\t")
    assert "http://127.0.0.1:9 -> http://10.9.9.9\t" in shown.output
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

    done = client.post(f"/console/plugins/test-plugin/pending-updates/{pending_id}/approve")
    assert done.status_code == 302
    assert record(app).base_url == healthy_plugin_server.url
    page = client.get(done.headers["Location"]).get_data(as_text=True)
    assert 'data-testid="pending-update"' not in page and "1.1.0" in page


def sdk_enrol():
    """This checkout's ``sdk/extframework_sdk/enrol.py`` (the shared venv may hold another)."""
    path = Path(__file__).resolve().parents[1] / "sdk" / "extframework_sdk" / "enrol.py"
    spec = importlib.util.spec_from_file_location("takeover_sdk_enrol", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_sdk_keeps_its_token_when_a_move_awaits_approval(
    app, live_server, enrolment_key, healthy_plugin_server, tmp_path
):
    register_or_update = sdk_enrol().register_or_update
    token_file = tmp_path / "token"
    first = sample_manifest(base_url=healthy_plugin_server.url)
    token = register_or_update(
        live_server, first, token_file=token_file, enrolment_key=enrolment_key
    )
    moved = sample_manifest(version="1.1.0", base_url="http://10.9.9.9:80")
    assert register_or_update(live_server, moved, token_file=token_file, attempts=1) == token
    assert record(app).base_url == healthy_plugin_server.url
    assert [p.version for p in pending_rows(app)] == ["1.1.0"]
