"""Plugin A's credentials, with every trick, never read or change plugin B's data (SPEC §5)."""

import http.client
import json

import pytest

from extframework.db import database
from extframework.models import Document, Plugin
from extframework.services import lifecycle, plugin_admin, plugin_tokens, tokens
from extframework.services.secrets import PLUGIN_TOKEN_PREFIX, new_secret

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_engines

MARKER = "B-SECRET-7f3a"
METHODS = ("POST", "GET", "PATCH", "DELETE")


@pytest.fixture
def world(app, make_user, make_storage_plugin, plugin_api):
    """Plugins A and B both declare `notes`; B also has `ledger`; B alone is in tenant beta."""
    make_user("beta-user@example.com", tenant="beta")
    make_user("person@example.com")
    _, token_a = make_storage_plugin("acme-a", tenants=["default"])
    schemas_b = [
        {"collection": "notes", "schema": {"type": "object"}},
        {"collection": "ledger", "schema": {"type": "object"}},
    ]
    _, token_b = make_storage_plugin("acme-b", schemas_b, tenants=["default", "beta"])
    b_docs = {}
    for tenant in ("default", "beta"):
        for collection in ("notes", "ledger"):
            response = plugin_api(token_b, tenant=tenant).create(
                collection, {"title": MARKER, "tenant": tenant}
            )
            assert response.status_code == 201
            b_docs[(tenant, collection)] = response.get_json()["id"]
    return {"token_a": token_a, "token_b": token_b, "b_docs": b_docs}


def b_snapshot(app) -> list[tuple]:
    with app.app_context(), database.connection_context():
        rows = Document.select().where(Document.plugin_id == "acme-b").order_by(Document.pk)
        return [(d.tenant, d.collection, d.doc_id, d.version, d.data) for d in rows]


def send(client, method, path, token, headers=None):
    headers = {"Authorization": f"Bearer {token}", **(headers or {})}
    body = {"title": "from A", "count": 1} if method in ("POST", "PATCH") else None
    return client.open(path, method=method, json=body, headers=headers)


def assert_no_leak(response):
    assert MARKER not in response.get_data(as_text=True)


def test_a_reaches_only_its_own_collection_of_the_same_name(app, client, world):
    before = b_snapshot(app)
    b_id = world["b_docs"][("default", "notes")]
    for method in METHODS:
        path = "/api/storage/notes" if method in ("POST", "GET") else f"/api/storage/notes/{b_id}"
        response = send(client, method, path, world["token_a"])
        assert_no_leak(response)
        if method == "POST":
            assert response.status_code == 201
        elif method == "GET":
            assert [d["data"]["title"] for d in response.get_json()["items"]] == ["from A"]
        else:
            assert response.status_code == 404, method
    assert (
        client.get(
            f"/api/storage/notes/{b_id}", headers={"Authorization": f"Bearer {world['token_a']}"}
        ).status_code
        == 404
    )
    assert b_snapshot(app) == before
    with app.app_context(), database.connection_context():
        created = Document.get(Document.data["title"] == "from A")
        assert (created.plugin_id, created.tenant, created.collection) == (
            "acme-a",
            "default",
            "notes",
        )


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "path",
    [
        "/api/storage/ledger",  # B's collection name, undeclared by A
        "/api/storage/ledger/{ledger}",
        "/api/storage/acme-b/notes",
        "/api/storage/acme-b/notes/{notes}",
        "/api/storage/acme-b.notes",
        "/api/storage/plugin_data.default.acme-b.notes",
        "/api/storage/acme-b%2Fnotes",
        "/api/storage/acme-b%2Fnotes%2F{notes}",
        "/api/storage/notes%2F..%2F..%2Facme-b%2Fnotes",
        "/api/storage/..%2Facme-b%2Fnotes",
        "/api/storage/%2e%2e/acme-b/notes",
        "/api/storage/notes/..%2F{notes}",
        "/api/storage/notes/{notes}%00",
        "/api/storage/NOTES/{notes}",
    ],
)
def test_path_tricks_never_reach_b(app, client, world, path, method):
    before = b_snapshot(app)
    path = path.format(**{c: world["b_docs"][("default", c)] for c in ("notes", "ledger")})
    response = send(client, method, path, world["token_a"])
    assert response.status_code in (400, 404, 405), (path, response.status_code)
    assert_no_leak(response)
    assert b_snapshot(app) == before


@pytest.mark.parametrize("method", METHODS)
def test_raw_dot_segments_over_real_http_never_reach_b(app, world, live_server, method):
    """Send un-normalised paths over a socket, as a hostile client could."""
    before = b_snapshot(app)
    b_id = world["b_docs"][("default", "notes")]
    port = int(live_server.rsplit(":", 1)[1])
    for path in (
        f"/api/storage/../storage/ledger/{world['b_docs'][('default', 'ledger')]}",
        f"/api/storage/notes/../../storage/acme-b/notes/{b_id}",
        "/api/storage/./ledger",
        f"/api/storage/notes/%2e%2e%2f{b_id}",
    ):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = json.dumps({"title": "x"}) if method in ("POST", "PATCH") else None
        conn.request(
            method,
            path,
            body=body,
            headers={
                "Authorization": f"Bearer {world['token_a']}",
                "Content-Type": "application/json",
            },
        )
        response = conn.getresponse()
        text = response.read().decode()
        conn.close()
        assert response.status in (400, 404, 405), (path, response.status)
        assert MARKER not in text
    assert b_snapshot(app) == before


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("tenant", ["beta", "nowhere", "Default", "default,beta"])
def test_x_tenant_id_of_a_tenant_a_is_not_in_is_403(app, client, world, method, tenant):
    before = b_snapshot(app)
    b_id = world["b_docs"][("beta", "notes")]
    path = "/api/storage/notes" if method in ("POST", "GET") else f"/api/storage/notes/{b_id}"
    response = send(client, method, path, world["token_a"], {"X-Tenant-ID": tenant})
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert "not installed" in response.get_json()["detail"]
    assert_no_leak(response)
    assert b_snapshot(app) == before


def _user_jwt(client, email):
    response = client.post(
        "/api/auth/token", json={"email": email, "password": "correct horse battery"}
    )
    assert response.status_code == 200
    return response.get_json()["access_token"]


def _request_jwt(app, audience):
    with app.app_context():
        return tokens.mint_request_jwt(
            app.extensions["extframework.keys"],
            issuer=app.config["BASE_URL"],
            plugin_id=audience,
            user_id="1",
            name="Person",
            email="person@example.com",
            tenant="default",
            role="admin",
            scopes=[],
            ttl_s=60,
        )


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "credential",
    ["user-jwt", "request-jwt-b", "request-jwt-a", "rotated", "revoked", "deregistered", "forged"],
)
def test_wrong_credentials_get_401_everywhere(app, client, world, credential, method):
    if credential == "user-jwt":
        token = _user_jwt(client, "person@example.com")
    elif credential.startswith("request-jwt"):
        token = _request_jwt(app, f"acme-{credential[-1]}")
    elif credential == "forged":
        token = new_secret(PLUGIN_TOKEN_PREFIX)
    else:
        token = world["token_a"]
        with app.app_context(), database.connection_context():
            plugin = Plugin.get(Plugin.plugin_id == "acme-a")
            if credential == "rotated":
                plugin_admin.rotate_token(plugin, actor="test", grace_s=0, revoke_now=True)
            elif credential == "deregistered":
                for state in ("disabled", "deregistered"):
                    lifecycle.transition(plugin, state, cause="test", actor="test")
            else:  # revoked: no token matches any more
                plugin_tokens.revoke_all(plugin)
    before = b_snapshot(app)
    b_id = world["b_docs"][("default", "notes")]
    path = "/api/storage/notes" if method in ("POST", "GET") else f"/api/storage/notes/{b_id}"
    for headers in ({}, {"X-Tenant-ID": "beta"}):
        response = send(client, method, path, token, headers)
        assert response.status_code == 401, credential
        assert response.mimetype == "application/problem+json"
        assert_no_leak(response)
    assert b_snapshot(app) == before


def test_headers_and_parameters_cannot_name_another_plugin(app, client, world):
    before = b_snapshot(app)
    headers = {"X-Plugin-ID": "acme-b", "X-Forwarded-For": "127.0.0.1", "X-Tenant-ID": "default"}
    response = client.get(
        "/api/storage/notes?plugin_id=acme-b",
        headers={"Authorization": f"Bearer {world['token_a']}", **headers},
    )
    assert response.status_code == 400  # plugin_id is not a field of A's schema
    response = client.get(
        "/api/storage/notes",
        headers={"Authorization": f"Bearer {world['token_a']}", **headers},
    )
    assert response.status_code == 200 and response.get_json()["items"] == []
    # two Authorization headers: the first wins, and it is still one token deciding everything
    response = client.get(
        "/api/storage/ledger",
        headers=[
            ("Authorization", f"Bearer {world['token_a']}"),
            ("Authorization", f"Bearer {world['token_b']}"),
        ],
    )
    assert response.status_code in (401, 404)
    assert_no_leak(response)
    assert b_snapshot(app) == before


def test_b_still_sees_all_its_data_after_the_attacks(app, client, world, plugin_api):
    for tenant in ("default", "beta"):
        api = plugin_api(world["token_b"], tenant=tenant)
        items = api.query("notes").get_json()["items"]
        assert [d["data"] for d in items] == [{"title": MARKER, "tenant": tenant}]
