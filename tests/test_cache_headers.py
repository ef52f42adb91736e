"""Answers to people and API callers are never stored by caches (issue 11)."""

import pytest

ADMIN = "admin@example.com"
PASSWORD = "correct horse battery"


@pytest.fixture
def admin(make_user):
    return make_user(ADMIN, role="admin", operator=True)


@pytest.fixture
def cached_plugin(shell_plugin, stub_plugin):
    """A plugin whose views ask every cache to keep them; the core must not pass that on."""
    shell_plugin(
        base_url=stub_plugin.url,
        routes=[
            {"menu_id": "notes", "label": "Notes", "method": "GET", "path": "/notes"},
            {
                "menu_id": "wide",
                "label": "Wide",
                "method": "GET",
                "path": "/wide",
                "mode": "iframe",
            },
        ],
    )
    for path in ("/notes", "/wide"):
        stub_plugin.reply(
            "GET",
            path,
            body="<p>secret notes</p>",
            headers={"Cache-Control": "public, max-age=3600"},
        )
    return stub_plugin


@pytest.fixture
def storage_token(make_storage_plugin):
    _, token = make_storage_plugin("acme-notes")
    return token


def user_jwt(client):
    response = client.post("/api/auth/token", json={"email": ADMIN, "password": PASSWORD})
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def plugin_auth(token):
    return {"Authorization": f"Bearer {token}"}


# (how to call, expected status); each runs as the logged-in admin.
ANSWERS = {
    "login page": (lambda c, t: c.get("/login"), 200),
    "home page": (lambda c, t: c.get("/"), 200),
    "console page": (lambda c, t: c.get("/console/users"), 200),
    "proxied view": (lambda c, t: c.get("/plugin-proxy/notes/notes"), 200),
    "iframe view": (lambda c, t: c.get("/plugin-frame/notes/wide"), 200),
    "me by session": (lambda c, t: c.get("/api/auth/me"), 200),
    "me by user JWT": (lambda c, t: c.get("/api/auth/me", headers=user_jwt(c)), 200),
    "user JWT": (
        lambda c, t: c.post("/api/auth/token", json={"email": ADMIN, "password": PASSWORD}),
        200,
    ),
    "storage create": (
        lambda c, t: c.post("/api/storage/notes", json={"title": "x"}, headers=plugin_auth(t)),
        201,
    ),
    "storage query": (lambda c, t: c.get("/api/storage/notes", headers=plugin_auth(t)), 200),
    "API error": (lambda c, t: c.get("/api/storage/nothing", headers=plugin_auth(t)), 404),
    "page error": (lambda c, t: c.get("/no-such-page"), 404),
    "bad login": (lambda c, t: c.post("/login", data={"email": ADMIN, "password": "nope"}), 401),
}


@pytest.mark.parametrize("name", list(ANSWERS))
def test_answers_to_people_and_api_callers_are_not_stored(
    name, client, admin, login, cached_plugin, storage_token
):
    call, status = ANSWERS[name]
    assert login(ADMIN).status_code == 302
    response = call(client, storage_token)
    assert response.status_code == status, response.data[:300]
    assert response.headers.get("Cache-Control") == "no-store"


def test_the_jwks_keeps_its_own_caching(client, admin, login):
    login(ADMIN)
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.cache_control.public and response.cache_control.max_age == 60
    assert not response.cache_control.no_store


def test_a_static_file_keeps_its_own_caching(app, client, admin, login):
    login(ADMIN)
    response = client.get("/static/shell.css")
    assert response.status_code == 200
    assert "no-store" not in response.headers["Cache-Control"]
    with app.test_request_context():
        expected = app.send_static_file("shell.css")
        expected.close()
    assert response.headers["Cache-Control"] == expected.headers["Cache-Control"]
    response.close()
