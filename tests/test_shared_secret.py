"""One secret for every app host, rotated without logging anyone out (issue 15).

Two apps on one database stand for two hosts: what one signs (a session, a cursor, a JWT with
a key it generated) the other accepts, given the same ``SECRET_KEY``; a rotation lists the old
secret in ``SECRET_KEY_FALLBACKS``; a secret changed without it stops the start.
"""

import pytest

from extframework import create_app, db
from extframework.services import signing_keys
from tests.support.storage_fixtures import provision_plugin

CREDENTIALS = {"email": "ops@example.com", "password": "correct horse battery"}
OLD, NEW = "the-secret-every-host-had", "the-secret-every-host-has-now"


def host(tmp_path, name: str, secret: str, fallbacks: str | None = None):
    """An app on the shared database with its own instance folder, as another host has."""
    config = {
        "TESTING": True,
        "DATABASE": str(tmp_path / "shared.sqlite3"),
        "BASE_URL": "http://core.test",
        "HEALTH_MONITOR": False,
        "WTF_CSRF_ENABLED": False,
        "SECRET_KEY": secret,
        "SECRET_KEY_FALLBACKS": fallbacks,
    }
    return create_app(config, instance_path=str(tmp_path / name))


@pytest.fixture
def host_a(tmp_path):
    app = host(tmp_path, "a", OLD)
    with app.app_context():
        db.upgrade()
    app.extensions["extframework.keys"].ensure_key()
    return app


def _logged_in(app, make_user_in):
    make_user_in(app)
    client = app.test_client()
    response = client.post("/login", data=CREDENTIALS)
    assert response.status_code == 302, response.text
    return client


def _make_user(app):
    from extframework.services import accounts

    with app.app_context(), db.database.connection_context():
        accounts.create_user(
            "ops@example.com",
            "correct horse battery",
            role="admin",
            operator=True,
            tenant="default",
        )


def _cookie(client) -> str:
    return client.get_cookie("session").value


def test_a_session_and_a_user_jwt_from_one_host_are_accepted_by_another(tmp_path, host_a):
    on_a = _logged_in(host_a, _make_user)
    user_jwt = on_a.post("/api/auth/token", json=CREDENTIALS).get_json()["access_token"]
    host_b = host(tmp_path, "b", OLD)
    client = host_b.test_client()
    client.set_cookie("session", _cookie(on_a))
    assert client.get("/").status_code == 200  # not the 302 to /login a second host gave
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {user_jwt}"})
    assert me.status_code == 200, me.get_json()  # not the 401 of a host with its own keys
    jwks = on_a.get("/.well-known/jwks.json").get_json()
    assert client.get("/.well-known/jwks.json").get_json() == jwks


def test_after_a_secret_rotation_old_sessions_cursors_and_keys_still_work(tmp_path, host_a):
    cookie = _cookie(_logged_in(host_a, _make_user))
    with host_a.app_context():
        _, token = provision_plugin("acme-notes")
    headers = {"Authorization": f"Bearer {token}"}
    plugin_client = host_a.test_client()
    for n in range(3):
        plugin_client.post("/api/storage/notes", json={"title": f"note {n}"}, headers=headers)
    page = plugin_client.get("/api/storage/notes?limit=2", headers=headers).get_json()
    user_jwt = (
        host_a.test_client()
        .post(
            "/api/auth/token",
            json={"email": "ops@example.com", "password": "correct horse battery"},
        )
        .get_json()["access_token"]
    )

    rotated = host(tmp_path, "b", NEW, fallbacks=OLD)
    client = rotated.test_client()
    client.set_cookie("session", cookie)
    assert client.get("/").status_code == 200
    cursor = page["next_cursor"]
    rest = client.get(f"/api/storage/notes?limit=2&cursor={cursor}", headers=headers)
    assert rest.status_code == 200 and len(rest.get_json()["items"]) == 1
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {user_jwt}"})
    assert me.status_code == 200, me.get_json()
    # Its start sealed the keys again: the new secret alone now opens them, and once the old
    # secret is dropped from the list, what it signed counts no more.
    alone = host(tmp_path, "c", NEW).test_client()
    assert alone.get("/.well-known/jwks.json").status_code == 200
    alone.set_cookie("session", cookie)
    assert alone.get("/").status_code == 302


def test_a_secret_changed_without_its_fallback_stops_the_start(tmp_path, host_a):
    with pytest.raises(signing_keys.KeysUnreadable, match="SECRET_KEY_FALLBACKS"):
        host(tmp_path, "b", "somebody-changed-the-secret")


def test_an_archive_written_through_one_host_is_restored_through_another(tmp_path, host_a):
    """With ARCHIVE_PATH on a folder both hosts mount, the archive is where B looks for it."""
    shared = tmp_path / "shared-archives"
    host_a.config["ARCHIVE_PATH"] = str(shared)
    _make_user(host_a)
    with host_a.app_context():
        _, token = provision_plugin("acme-notes")
    headers = {"Authorization": f"Bearer {token}"}
    writer = host_a.test_client()
    for n in range(3):
        writer.post("/api/storage/notes", json={"title": f"note {n}"}, headers=headers)
    operator = host_a.test_client()
    operator.post("/login", data=CREDENTIALS)
    url = "/api/registry/plugins/acme-notes"
    assert operator.put(f"{url}/tenants/default/uninstall-policy", json={"policy": "archive"})
    assert operator.post(f"{url}/disable").status_code == 200
    gone = operator.post(f"{url}/deregister", json={})
    assert gone.status_code == 200, gone.get_json()
    relative = gone.get_json()["uninstall"]["tenants"]["default"]["archive"]
    assert (shared / relative).is_file() and not (tmp_path / "a" / "archives").exists()

    host_b = host(tmp_path, "b", OLD)
    host_b.config["ARCHIVE_PATH"] = str(shared)
    restored = host_b.test_cli_runner().invoke(args=["plugins", "restore", relative])
    assert restored.exit_code == 0, restored.output
    assert "Restored 3 document(s) of acme-notes" in restored.output
