"""Uninstall policies (SPEC §7): retain, archive (and restore), purge; registering again."""

import gzip
import hashlib
import json
import shutil

import pytest

from extframework.db import database
from extframework.models import Archive, Installation, ManifestVersion, Plugin, Transition
from extframework.services import enrolment, health
from tests.support.engines import raw_connection
from tests.support.registry_fixtures import sample_manifest

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_engines

PROBLEM = "application/problem+json"
COLUMNS = "tenant, plugin_id, collection, doc_id, version, created_at, updated_at, data"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def raw_rows(app, tenant: str | None = None) -> list[tuple]:
    """Every column of the plugin's document rows (but the row number), as SQLite holds them."""
    sql = f"SELECT {COLUMNS} FROM document WHERE plugin_id = 'test-plugin'"
    params = []
    if tenant is not None:
        sql += " AND tenant = ?"
        params.append(tenant)
    with raw_connection(app) as conn:
        return sorted(conn.execute(sql, params).fetchall())


@pytest.fixture
def operator(make_user, login):
    make_user("ops@example.com", role="admin", operator=True)
    login("ops@example.com")


@pytest.fixture
def stocked(make_plugin, make_user, plugin_api):
    """Register the plugin and store documents (odd ones: unicode, floats) in two tenants."""
    _, token = make_plugin()
    make_user("someone@acme.example", tenant="acme")
    for tenant in ("default", "acme"):
        api = plugin_api(token, tenant)
        for n in range(5):
            data = {
                "title": f'Zoë ✓ "{tenant}" {n}',
                "count": n,
                "price": 1.50 + n,
                "nested": {"values": [1, 2.5e10, None, "\u2028"], "empty": {}},
            }
            doc = api.create("items", data).get_json()
            if n % 2:
                assert api.patch("items", doc["id"], {"status": "closed"}).status_code == 200
    return token


def deregister(client, **body):
    assert client.post("/api/registry/plugins/test-plugin/disable").status_code == 200
    return client.post("/api/registry/plugins/test-plugin/deregister", json=body)


def set_policy(client, tenant, policy):
    return client.put(
        f"/api/registry/plugins/test-plugin/tenants/{tenant}/uninstall-policy",
        json={"policy": policy},
    )


def test_retain_is_the_default_keeps_every_row_and_registering_again_reattaches_it(
    app, client, operator, stocked, enrolment_key, healthy_plugin_server, plugin_api
):
    summary = client.get("/api/registry/plugins/test-plugin").get_json()
    assert summary["uninstall_policies"] == [
        {"tenant": "acme", "policy": "retain", "documents": 5},
        {"tenant": "default", "policy": "retain", "documents": 5},
    ]
    before = raw_rows(app)
    gone = deregister(client)
    assert gone.status_code == 200 and gone.get_json()["state"] == "deregistered"
    assert gone.get_json()["uninstall"]["tenants"]["acme"] == {"policy": "retain", "documents": 5}
    assert raw_rows(app) == before
    assert plugin_api(stocked).read("items", "x").status_code == 401  # token revoked

    # Re-attaching retained data takes a key created for this plugin_id (docs/registry.md).
    with app.app_context(), database.connection_context():
        _, key = enrolment.create_key(actor="test", plugin_id="test-plugin")
    breaking = sample_manifest(version="1.1.0", base_url=healthy_plugin_server.url)
    breaking["data_schemas"][0]["schema"]["properties"]["title"] = {"type": "integer"}
    refused = client.post("/api/registry/plugins", json=breaking, headers=bearer(key))
    assert refused.status_code == 409 and refused.get_json()["diff"][0]["kind"] == "type_changed"

    again = sample_manifest(version="1.1.0", base_url=healthy_plugin_server.url)
    response = client.post("/api/registry/plugins", json=again, headers=bearer(key))
    assert response.status_code == 201, response.get_json()
    token = response.get_json()["plugin_token"]
    with app.app_context(), database.connection_context():
        health.sweep(app.config)
        plugin = Plugin.get(Plugin.plugin_id == "test-plugin")
        assert plugin.state == "active" and plugin.version == "1.1.0"
        assert [v.version for v in ManifestVersion.select().order_by(ManifestVersion.id)] == [
            "1.0.0",
            "1.1.0",
        ]
        steps = [(t.from_state, t.to_state) for t in Transition.select().order_by(Transition.id)]
        assert steps[-3:] == [
            ("disabled", "deregistered"),
            ("deregistered", "registered"),
            (
                "registered",
                "active",
            ),
        ]
    assert raw_rows(app) == before
    found = plugin_api(token, "acme").query("items").get_json()["items"]
    assert sorted(d["id"] for d in found) == sorted(r[3] for r in before if r[0] == "acme")
    taken = client.post("/api/registry/plugins", json=again, headers=bearer(enrolment_key))
    assert taken.status_code == 409  # only a deregistered plugin_id can be registered again


def test_archive_then_restore_round_trips_every_document_byte_for_byte(
    app, client, operator, stocked, runner
):
    assert set_policy(client, "default", "archive").status_code == 200
    before = raw_rows(app)
    gone = deregister(client)
    assert gone.status_code == 200
    relative = gone.get_json()["uninstall"]["tenants"]["default"]["archive"]
    path = tmp_archives(app) / relative
    assert path.is_file() and path.parent.name == "test-plugin"
    digest, name = (path.parent / (path.name + ".sha256")).read_text().split()
    assert name == path.name and digest == hashlib.sha256(path.read_bytes()).hexdigest()
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    header = json.loads(lines[0])
    assert header["plugin_id"] == "test-plugin" and header["tenant"] == "default"
    assert header["documents"] == 5 and len(lines) == 6
    assert all(json.loads(line)["data"]["nested"]["empty"] == {} for line in lines[1:])
    assert raw_rows(app, "default") == []
    assert raw_rows(app, "acme") == [r for r in before if r[0] == "acme"]
    page = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    assert 'data-testid="archives"' in page and relative in page

    restored = runner.invoke(args=["plugins", "restore", str(path)])
    assert restored.exit_code == 0, restored.output
    assert "Restored 5 document(s) of test-plugin in tenant default" in restored.output
    assert raw_rows(app) == before
    twice = runner.invoke(args=["plugins", "restore", relative])
    assert twice.exit_code != 0 and "exist in the live database already" in twice.output
    assert raw_rows(app) == before
    listed = runner.invoke(args=["plugins", "archives", "test-plugin"])
    assert "\tdefault\t5\trestored " in listed.output
    with app.app_context(), database.connection_context():
        assert Archive.get().restored_by == "cli"


def tmp_archives(app):
    from pathlib import Path

    return Path(app.instance_path) / "archives"


def test_a_damaged_or_unverifiable_archive_restores_nothing(
    app, client, operator, stocked, runner, tmp_path
):
    assert set_policy(client, "acme", "archive").status_code == 200
    relative = deregister(client).get_json()["uninstall"]["tenants"]["acme"]["archive"]
    path = tmp_archives(app) / relative
    copy = tmp_path / "copy.jsonl.gz"
    shutil.copy(path, copy)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    damaged = runner.invoke(args=["plugins", "restore", relative])
    assert damaged.exit_code != 0 and "does not match its checksum" in damaged.output
    unverified = runner.invoke(args=["plugins", "restore", str(copy)])
    assert unverified.exit_code != 0 and "has no checksum" in unverified.output
    assert raw_rows(app, "acme") == []
    missing = runner.invoke(args=["plugins", "restore", "999"])
    assert missing.exit_code != 0 and "No archive 999" in missing.output


def test_purge_needs_a_typed_confirmation_and_leaves_no_row_of_that_namespace(
    app, client, operator, stocked, runner
):
    form = client.post(
        "/console/plugins/test-plugin/uninstall-policy",
        data={"tenant": "default", "policy": "purge", "confirm": "yes"},
    )
    assert form.status_code == 303
    before = raw_rows(app)
    refused = deregister(client)
    assert refused.status_code == 400 and refused.mimetype == PROBLEM
    assert refused.get_json()["errors"][0]["pointer"] == "/confirm"
    assert refused.get_json()["purge_tenants"] == ["default"]
    assert client.get("/api/registry/plugins/test-plugin").get_json()["state"] == "disabled"
    assert raw_rows(app) == before

    page = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    assert 'data-testid="purge-confirm"' in page
    client.post(
        "/console/plugins/test-plugin/deregister", data={"purge_confirm": "test", "confirm": "yes"}
    )
    assert raw_rows(app) == before
    cli = runner.invoke(args=["plugins", "remove", "test-plugin"])
    assert cli.exit_code != 0 and "Confirm by repeating the plugin_id" in cli.output

    done = client.post(
        "/console/plugins/test-plugin/deregister",
        data={"purge_confirm": "test-plugin", "confirm": "yes"},
    )
    assert done.status_code == 303
    assert client.get("/api/registry/plugins/test-plugin").get_json()["state"] == "deregistered"
    assert raw_rows(app, "default") == []
    assert raw_rows(app, "acme") == [r for r in before if r[0] == "acme"]


def test_the_uninstall_policy_is_validated_set_by_operators_and_shown(
    app, client, stocked, make_plugin, make_user, login, runner
):
    make_user("member@example.com", role="member")
    login("member@example.com")
    assert set_policy(client, "default", "purge").status_code == 403
    make_user("admin@example.com", role="admin")  # default's admin: only default's policies
    login("admin@example.com")
    assert set_policy(client, "acme", "purge").status_code == 404
    make_user("ops@example.com", role="admin", operator=True)
    login("ops@example.com")
    for policy in ("delete", None, ["purge"]):
        bad = set_policy(client, "default", policy)
        assert bad.status_code == 400 and bad.mimetype == PROBLEM
        assert bad.get_json()["errors"][0]["pointer"] == "/policy"
    assert set_policy(client, "nowhere", "purge").status_code == 404
    with app.app_context(), database.connection_context():
        assert Installation.select().count() == 0

    make_plugin(plugin_id="narrow", state="active")
    client.put("/api/registry/plugins/narrow/tenants", json={"tenants": ["acme"]})
    outside = client.put(
        "/api/registry/plugins/narrow/tenants/default/uninstall-policy", json={"policy": "purge"}
    )
    assert outside.status_code == 409  # a row would make the plugin available there

    shown = runner.invoke(args=["plugins", "uninstall-policy", "test-plugin", "acme", "archive"])
    assert shown.exit_code == 0 and "acme\tarchive\t5 documents" in shown.output
    assert set_policy(client, "default", "purge").get_json()["uninstall_policies"] == [
        {"tenant": "acme", "policy": "archive", "documents": 5},
        {"tenant": "default", "policy": "purge", "documents": 5},
    ]
    page = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    assert 'data-tenant="acme"' in page and "policy-archive" in page and "policy-purge" in page


def test_restricting_a_plugin_keeps_the_dropped_tenants_policy_until_deregistration(
    app, client, operator, stocked, plugin_api
):
    def tenants(body):
        return client.put("/api/registry/plugins/test-plugin/tenants", json={"tenants": body})

    assert set_policy(client, "acme", "archive").status_code == 200
    assert tenants(["default"]).status_code == 200
    assert plugin_api(stocked, "acme").read("items", "x").status_code == 403  # no longer there
    summary = client.get("/api/registry/plugins/test-plugin").get_json()
    assert summary["tenants"] == ["default"]
    assert summary["uninstall_policies"] == [
        {"tenant": "acme", "policy": "archive", "documents": 5},
        {"tenant": "default", "policy": "retain", "documents": 5},
    ]

    # A tenant the plugin was taken from still holds its data, so its policy can still change.
    assert set_policy(client, "acme", "purge").status_code == 200
    assert set_policy(client, "acme", "archive").status_code == 200
    assert tenants([]).status_code == 200  # in no tenant at all
    assert plugin_api(stocked, "default").read("items", "x").status_code == 403
    assert tenants(["acme", "default"]).status_code == 200
    assert len(plugin_api(stocked, "acme").query("items").get_json()["items"]) == 5  # back, intact

    assert tenants(["default"]).status_code == 200
    gone = deregister(client).get_json()["uninstall"]["tenants"]
    assert gone["acme"]["policy"] == "archive" and gone["acme"]["archive"]
    assert raw_rows(app, "acme") == [] and len(raw_rows(app, "default")) == 5
