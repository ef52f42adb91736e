"""Registration, reading and driving plugins over the registry API (SPEC §3, §6)."""

import json
from pathlib import Path

import pytest

from extframework.db import database
from extframework.models import (
    AuditEvent,
    Collection,
    EnrolmentKey,
    ManifestVersion,
    Plugin,
    Route,
    Transition,
)
from extframework.services import enrolment, migrations, plugin_tokens
from extframework.services.secrets import hash_secret
from tests.support.engines import raw_connection
from tests.support.registry_fixtures import sample_manifest

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_engines

PROBLEM = "application/problem+json"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def register(client, key, manifest):
    return client.post("/api/registry/plugins", json=manifest, headers=bearer(key))


def counts(app) -> dict:
    with app.app_context(), database.connection_context():
        return {
            model.__name__: model.select().count()
            for model in (Plugin, Route, Collection, ManifestVersion, Transition)
        }


def sqlite_indexes(app) -> set[str]:
    """The collection indexes the database holds (either engine)."""
    with raw_connection(app) as conn:
        if app.config.get("DATABASE_URL"):
            rows = conn.execute("SELECT indexname FROM pg_indexes").fetchall()
        else:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type='index'").fetchall()
    return {name for (name,) in rows if name.startswith("ixdoc_")}


def stored_anywhere(app, secret: str) -> bool:
    """Whether any byte of the database (SQLite: its files; PostgreSQL: any row) holds it."""
    if not app.config.get("DATABASE_URL"):
        raw = b"".join(
            path.read_bytes() for path in Path(app.config["DATABASE"]).parent.glob("core.sqlite3*")
        )
        return secret.encode() in raw
    with raw_connection(app) as conn:
        tables = [
            t
            for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        return any(
            conn.execute(f'SELECT 1 FROM "{t}" r WHERE strpos(r::text, ?) > 0', [secret]).fetchone()
            for t in tables
        )


NOTHING = {"Plugin": 0, "Route": 0, "Collection": 0, "ManifestVersion": 0, "Transition": 0}


@pytest.fixture
def operator(make_user, login):
    make_user("ops@example.com", role="admin", operator=True)
    login("ops@example.com")


# --- registration ---------------------------------------------------------------------


def test_registration_stores_everything_and_returns_the_token_once(
    app, client, enrolment_key, healthy_plugin_server
):
    manifest = sample_manifest(base_url=healthy_plugin_server.url + "/")
    response = register(client, enrolment_key, manifest)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["plugin_id"] == "test-plugin" and body["state"] == "registered"
    token = body["plugin_token"]
    assert token.startswith("efpt_")
    assert response.headers["Location"] == "/api/registry/plugins/test-plugin"
    assert response.headers["Cache-Control"] == "no-store"
    with app.app_context(), database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == "test-plugin")
        assert [t.token_hash for t in plugin.tokens] == [hash_secret(token)]
        assert plugin.base_url == healthy_plugin_server.url  # trailing slash dropped
        routes = {(r.method, r.path, r.action_id, r.role) for r in plugin.routes}
        assert routes == {
            ("GET", "/items", None, "viewer"),
            ("POST", "/items", "create", "member"),
            ("DELETE", "/items/:id", "delete", "admin"),
        }
        assert [c.name for c in plugin.collections] == ["items"]
        assert [v.version for v in plugin.manifest_versions] == ["1.0.0"]
        [transition] = plugin.transitions
        assert (transition.from_state, transition.to_state) == (None, "registered")
        assert transition.actor.startswith("enrolment-key:")
    assert len(sqlite_indexes(app)) == 1
    assert not stored_anywhere(app, token) and not stored_anywhere(app, enrolment_key)
    assert stored_anywhere(app, healthy_plugin_server.url)  # the check can see stored text


def test_a_plugin_token_reads_its_own_record(client, enrolment_key, healthy_plugin_server):
    token = register(
        client, enrolment_key, sample_manifest(base_url=healthy_plugin_server.url)
    ).get_json()["plugin_token"]
    own = client.get("/api/registry/plugins/test-plugin", headers=bearer(token))
    assert own.status_code == 200
    record = own.get_json()
    assert record["state"] == "registered" and record["version"] == "1.0.0"
    assert record["last_health"] is None
    assert [h["to"] for h in record["state_history"]] == ["registered"]
    assert record["allowed_transitions"] == ["active", "deregistered"]
    listed = client.get("/api/registry/plugins", headers=bearer(token)).get_json()["plugins"]
    assert [p["plugin_id"] for p in listed] == ["test-plugin"]


@pytest.mark.parametrize(
    "header",
    [None, "Bearer efek_not-a-real-key", "Bearer efpt_plugin-token", "Basic abc", "Bearer "],
)
def test_bad_enrolment_key_is_401_and_stores_nothing(app, client, header):
    headers = {"Authorization": header} if header else {}
    response = client.post("/api/registry/plugins", json=sample_manifest(), headers=headers)
    assert response.status_code == 401
    assert response.mimetype == PROBLEM
    assert response.get_json()["status"] == 401
    assert counts(app) == NOTHING


@pytest.mark.parametrize("how", ["revoked", "expired", "used up"])
def test_revoked_expired_and_used_up_keys_are_refused(app, client, healthy_plugin_server, how):
    with app.app_context(), database.connection_context():
        key, secret = enrolment.create_key(actor="test", uses=1)
        if how == "revoked":
            enrolment.revoke_key(key.id, actor="test")
        elif how == "expired":
            EnrolmentKey.update(expires_at=EnrolmentKey.created_at).execute()
    if how == "used up":
        first = register(client, secret, sample_manifest(base_url=healthy_plugin_server.url))
        assert first.status_code == 201
    response = register(
        client, secret, sample_manifest(plugin_id="second", base_url=healthy_plugin_server.url)
    )
    assert response.status_code == 401
    assert how in response.get_json()["detail"]
    with app.app_context(), database.connection_context():
        assert not Plugin.select().where(Plugin.plugin_id == "second").exists()


def test_a_failed_registration_does_not_spend_a_key_use(app, client, plugin_server):
    failing = plugin_server("error")
    with app.app_context(), database.connection_context():
        key, secret = enrolment.create_key(actor="test", uses=1)
    assert register(client, secret, sample_manifest(base_url=failing.url)).status_code == 502
    assert register(client, secret, {"plugin_id": "x"}).status_code == 400
    with app.app_context(), database.connection_context():
        assert EnrolmentKey.get_by_id(key.id).uses_left == 1


def test_taken_plugin_id_is_409_and_the_first_stays(app, client, enrolment_key, plugin_server):
    first, second = plugin_server("healthy"), plugin_server("healthy")
    assert register(client, enrolment_key, sample_manifest(base_url=first.url)).status_code == 201
    again = register(client, enrolment_key, sample_manifest(base_url=second.url, version="9.0.0"))
    assert again.status_code == 409
    assert again.mimetype == PROBLEM
    assert "'test-plugin' is taken" in again.get_json()["detail"]
    with app.app_context(), database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == "test-plugin")
        assert (plugin.base_url, plugin.version) == (first.url, "1.0.0")
        assert Plugin.select().count() == 1


@pytest.mark.parametrize(
    ("mode", "expected"), [("error", "HTTP 500"), ("hang", "no answer within 0.5 s")]
)
def test_a_failed_health_probe_is_refused_naming_url_and_answer(
    app, client, enrolment_key, plugin_server, mode, expected
):
    app.config["HEALTH_TIMEOUT_S"] = 0.5
    server = plugin_server(mode)
    response = register(client, enrolment_key, sample_manifest(base_url=server.url + "/api"))
    assert response.status_code == 502
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert f"{server.url}/api/health" in body["detail"]
    assert expected in body["detail"]
    assert body["url"] == f"{server.url}/api/health"
    assert counts(app) == NOTHING
    assert sqlite_indexes(app) == set()


def test_an_unreachable_base_url_is_refused(app, client, enrolment_key):
    from tests.support.processes import free_port

    url = f"http://127.0.0.1:{free_port()}"
    response = register(client, enrolment_key, sample_manifest(base_url=url))
    assert response.status_code == 502
    assert url in response.get_json()["detail"]
    assert "connection refused" in response.get_json()["detail"]
    assert counts(app) == NOTHING


def test_an_oversized_manifest_is_413(app, client, enrolment_key):
    manifest = sample_manifest(description="x" * (app.config["MAX_CONTENT_LENGTH"] + 1))
    response = register(client, enrolment_key, manifest)
    assert response.status_code == 413
    assert response.mimetype == PROBLEM
    assert "MAX_BODY_BYTES" in response.get_json()["detail"]
    assert counts(app) == NOTHING


def test_an_invalid_embedded_schema_is_400_naming_its_path(app, client, enrolment_key):
    manifest = sample_manifest()
    manifest["data_schemas"][0]["schema"]["properties"]["count"]["type"] = "int"
    response = register(client, enrolment_key, manifest)
    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    pointers = [e["pointer"] for e in response.get_json()["errors"]]
    assert "/data_schemas/0/schema/properties/count/type" in pointers
    assert counts(app) == NOTHING


def test_malformed_json_is_400(app, client, enrolment_key):
    response = client.post(
        "/api/registry/plugins",
        data=b'{"plugin_id": ',
        content_type="application/json",
        headers=bearer(enrolment_key),
    )
    assert response.status_code == 400 and response.mimetype == PROBLEM
    assert counts(app) == NOTHING


@pytest.mark.parametrize(
    "body", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000]
)
def test_absurdly_nested_json_is_400_not_a_crash(app, client, enrolment_key, body):
    response = client.post(
        "/api/registry/plugins",
        data=body,
        content_type="application/json",
        headers=bearer(enrolment_key),
    )
    assert response.status_code == 400 and response.mimetype == PROBLEM
    assert counts(app) == NOTHING


def test_manifest_schema_is_published(client):
    response = client.get("/api/registry/manifest-schema")
    assert response.status_code == 200
    assert response.mimetype == "application/schema+json"
    schema = response.get_json()
    assert schema["properties"]["plugin_id"]["pattern"] == "^[a-z][a-z0-9]*(-[a-z0-9]+)*$"


# --- reading and driving as an operator ------------------------------------------------


def test_operators_read_the_registry_by_session_or_jwt(
    client, make_plugin, make_user, login, user_token
):
    make_plugin()
    make_plugin(state="registered")
    make_user("ops@example.com", role="admin", operator=True)
    jwt = user_token("ops@example.com")
    by_jwt = client.get("/api/registry/plugins", headers=bearer(jwt)).get_json()["plugins"]
    assert {(p["plugin_id"], p["state"]) for p in by_jwt} == {
        ("test-plugin", "active"),
        ("test-plugin-2", "registered"),
    }
    login("ops@example.com")
    one = client.get("/api/registry/plugins/test-plugin").get_json()
    assert one["menus"][0]["actions"][1]["role"] == "admin"
    assert one["collections"] == [{"name": "items", "indexes": [{"fields": ["title"]}]}]
    assert [h["to"] for h in one["state_history"]] == ["registered", "active"]


def test_non_operators_and_strangers_cannot_read(client, make_plugin, make_user, user_token):
    _, token = make_plugin()
    _, other_token = make_plugin()
    assert client.get("/api/registry/plugins").status_code == 401
    make_user("member@example.com", role="admin")
    member = bearer(user_token("member@example.com"))
    assert client.get("/api/registry/plugins", headers=member).status_code == 403
    cross = client.get("/api/registry/plugins/test-plugin", headers=bearer(other_token))
    assert cross.status_code == 403
    assert client.get("/api/registry/plugins/nope", headers=bearer(token)).status_code == 403


def test_unknown_plugin_is_404(client, operator):
    response = client.get("/api/registry/plugins/nope")
    assert response.status_code == 404 and response.mimetype == PROBLEM


def test_operator_disables_enables_and_deregisters(app, client, make_plugin, operator):
    _, token = make_plugin()
    disabled = client.post("/api/registry/plugins/test-plugin/disable", json={"reason": "audit"})
    assert disabled.status_code == 200
    assert disabled.get_json()["state"] == "disabled"
    assert disabled.get_json()["state_history"][-1]["cause"] == "disabled by an operator: audit"
    assert disabled.get_json()["state_history"][-1]["actor"] == "user:ops@example.com"
    enabled = client.post("/api/registry/plugins/test-plugin/enable")
    assert enabled.get_json()["state"] == "active"
    client.post("/api/registry/plugins/test-plugin/disable")
    gone = client.post("/api/registry/plugins/test-plugin/deregister")
    assert gone.status_code == 200 and gone.get_json()["state"] == "deregistered"
    assert client.get("/api/registry/plugins", headers=bearer(token)).status_code == 401
    with app.app_context(), database.connection_context():
        assert not plugin_tokens.live_tokens(Plugin.get(Plugin.plugin_id == "test-plugin"))
        actions = [e.action for e in AuditEvent.select().where(AuditEvent.target == "test-plugin")]
        assert actions.count("plugin.transition") == 6


@pytest.mark.parametrize(
    ("state", "verb", "allowed"),
    [
        ("active", "enable", ["degraded", "disabled", "migrating"]),
        ("active", "deregister", ["degraded", "disabled", "migrating"]),
        ("registered", "disable", ["active", "deregistered"]),
        ("disabled", "disable", ["active", "deregistered"]),
        ("deregistered", "enable", []),
        ("migrating", "disable", ["active"]),
    ],
)
def test_illegal_transitions_are_409_naming_the_allowed_ones(
    app, client, make_plugin, operator, state, verb, allowed
):
    make_plugin(state=state)
    response = client.post(f"/api/registry/plugins/test-plugin/{verb}")
    assert response.status_code == 409
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["allowed"] == allowed and body["state"] == state
    for target in allowed:
        assert target in body["detail"]
    with app.app_context(), database.connection_context():
        assert Plugin.get(Plugin.plugin_id == "test-plugin").state == state


def test_driving_needs_an_operator(client, make_plugin, make_user, user_token):
    _, token = make_plugin()
    make_user("admin@example.com", role="admin")
    for headers in ({}, bearer(user_token("admin@example.com")), bearer(token)):
        response = client.post("/api/registry/plugins/test-plugin/disable", headers=headers)
        assert response.status_code in (401, 403)
    assert client.post("/api/registry/plugins/test-plugin/disable").status_code == 401


def test_rotating_a_token_with_revoke_now_retires_the_old_one(client, make_plugin, operator):
    _, old = make_plugin()
    response = client.post(
        "/api/registry/plugins/test-plugin/rotate-token", json={"revoke_now": True}
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    new = response.get_json()["plugin_token"]
    assert new.startswith("efpt_") and new != old
    assert client.get("/api/registry/plugins", headers=bearer(old)).status_code == 401
    assert client.get("/api/registry/plugins", headers=bearer(new)).status_code == 200


def test_tenant_restriction(app, client, make_plugin, operator):
    from extframework.services import accounts, installations

    plugin, _ = make_plugin()
    with app.app_context(), database.connection_context():
        accounts.create_tenant("acme")
    response = client.put("/api/registry/plugins/test-plugin/tenants", json={"tenants": ["acme"]})
    assert response.status_code == 200 and response.get_json()["tenants"] == ["acme"]
    with app.app_context(), database.connection_context():
        fresh = Plugin.get_by_id(plugin.id)
        assert installations.is_installed(fresh, "acme")
        assert not installations.is_installed(fresh, "default")
    bad = client.put("/api/registry/plugins/test-plugin/tenants", json={"tenants": ["nope"]})
    assert bad.status_code == 400
    everyone = client.put("/api/registry/plugins/test-plugin/tenants", json={"tenants": None})
    assert everyone.get_json()["tenants"] is None
    with app.app_context(), database.connection_context():
        assert installations.is_installed(Plugin.get_by_id(plugin.id), "default")


# --- updates --------------------------------------------------------------------------


def update(client, token, manifest, plugin_id="test-plugin"):
    return client.put(f"/api/registry/plugins/{plugin_id}", json=manifest, headers=bearer(token))


def test_a_compatible_update_applies_at_once_and_keeps_every_version(app, client, make_plugin):
    _, token = make_plugin()
    before = sqlite_indexes(app)
    manifest = sample_manifest(version="1.1.0", name="Test Plugin Two")
    manifest["menu_items"][0]["actions"] = [{"id": "archive", "method": "POST", "path": "/arc"}]
    items = manifest["data_schemas"][0]
    items["schema"]["properties"]["note"] = {"type": "string"}
    items["schema"]["properties"]["status"]["enum"].append("archived")
    items["indexes"] = [{"fields": ["count"]}]
    manifest["data_schemas"].append({"collection": "notes", "schema": {"type": "object"}})
    response = update(client, token, manifest)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["version"], body["previous_version"]) == ("1.1.0", "1.0.0")
    kinds = {c["kind"] for c in body["changes"]}
    assert {"property_added", "enum_widened", "collection_added"} <= kinds
    with app.app_context(), database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == "test-plugin")
        assert (plugin.version, plugin.name, plugin.state) == ("1.1.0", "Test Plugin Two", "active")
        assert {r.action_id for r in plugin.routes} == {None, "archive"}
        assert sorted(v.version for v in plugin.manifest_versions) == ["1.0.0", "1.1.0"]
        schemas = {c.name: c for c in plugin.collections}
        assert set(schemas) == {"items", "notes"}
        assert "note" in schemas["items"].schema["properties"]
        assert schemas["items"].indexes == [{"fields": ["count"]}]
    after = sqlite_indexes(app)
    assert len(after) == 1 and after.isdisjoint(before)


@pytest.mark.parametrize("version", ["1.0.0", "0.9.9", "1.0.0-rc.1"])
def test_an_update_needs_a_higher_version(client, make_plugin, version):
    _, token = make_plugin()
    response = update(client, token, sample_manifest(version=version))
    assert response.status_code == 409
    assert response.get_json()["current_version"] == "1.0.0"


def test_a_breaking_update_is_409_with_a_diff_and_changes_nothing(app, client, make_plugin):
    _, token = make_plugin()
    manifest = sample_manifest(version="2.0.0")
    items = manifest["data_schemas"][0]["schema"]
    items["properties"]["count"]["type"] = "string"
    items["required"].append("status")
    manifest["menu_items"] = []
    response = update(client, token, manifest)
    assert response.status_code == 409
    assert response.mimetype == PROBLEM
    diff = response.get_json()["diff"]
    assert {(d["collection"], d["kind"]) for d in diff} >= {
        ("items", "type_changed"),
        ("items", "property_required"),
    }
    assert all({"collection", "path", "kind", "old", "new"} <= set(d) for d in diff)
    with app.app_context(), database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == "test-plugin")
        assert plugin.version == "1.0.0"
        assert plugin.routes.count() == 3
        assert ManifestVersion.select().count() == 1


def test_a_breaking_update_with_a_handler_starts_a_migration(client, make_plugin):
    _, token = make_plugin()
    manifest = sample_manifest(version="2.0.0", migration={"path": "/migrate"})
    manifest["data_schemas"] = []
    response = update(client, token, manifest)
    assert response.status_code == 202
    assert response.headers["Location"] == "/api/registry/plugins/test-plugin/migration"
    body = response.get_json()
    assert body["state"] == "migrating" and body["changes"][0]["kind"] == "collection_removed"
    assert migrations.wait_for_attempts(30)  # nothing answers at the handler's URL


def test_an_update_is_for_its_own_plugin_only(client, make_plugin):
    _, token = make_plugin()
    _, other = make_plugin()
    assert update(client, other, sample_manifest(version="2.0.0")).status_code == 403
    wrong_id = update(client, token, sample_manifest(plugin_id="someone-else", version="2.0.0"))
    assert wrong_id.status_code == 400
    assert wrong_id.get_json()["errors"][0]["pointer"] == "/plugin_id"
    assert update(client, "efek_x", sample_manifest(version="2.0.0")).status_code == 401


def test_a_rename_must_name_an_installed_collection(client, make_plugin):
    _, token = make_plugin()
    manifest = sample_manifest(version="2.0.0")
    manifest["data_schemas"][0].update(collection="things", replaces="missing")
    response = update(client, token, manifest)
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["pointer"] == "/data_schemas/0/replaces"
    manifest["data_schemas"][0]["replaces"] = "items"
    renamed = update(client, token, manifest)
    assert renamed.status_code == 409
    assert "collection_renamed" in json.dumps(renamed.get_json()["diff"])
