"""Login pages, user tokens, /api/auth/me, and error bodies."""

import pytest

from extframework.models import User

ADMIN = "admin@example.com"


@pytest.fixture
def admin(make_user):
    return make_user(ADMIN, role="admin", operator=True)


def assert_problem(response, status):
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["type"].startswith("urn:extframework:problem:")
    return body


def test_login_page_logs_in_and_shows_the_shell(client, admin, login):
    assert client.get("/").status_code == 302
    response = login(ADMIN)
    assert response.status_code == 302
    page = client.get("/")
    assert page.status_code == 200
    assert b"admin" in page.data
    assert "Content-Security-Policy" in page.headers


def test_wrong_password_and_unknown_email_get_the_same_answer(client, admin, login):
    wrong_password = login(ADMIN, "not the password")
    unknown_email = login("nobody@example.com", "not the password")
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert b"The email or password is not correct." in wrong_password.data
    assert b"The email or password is not correct." in unknown_email.data


def test_login_refuses_an_offsite_next(client, admin):
    response = client.post(
        "/login?next=//evil.example/x", data={"email": ADMIN, "password": "correct horse battery"}
    )
    assert response.headers["Location"] == "/"


def test_logout_ends_the_session(client, admin, login):
    login(ADMIN)
    client.post("/logout")
    assert client.get("/").status_code == 302
    assert client.get("/api/auth/me").status_code == 401


def test_token_endpoint_issues_a_bearer_token_that_me_accepts(client, admin, user_token):
    token = user_token(ADMIN)
    response = client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["email"] == ADMIN
    assert body["role"] == "admin" and body["operator"] is True and body["tenant"] == "default"
    assert body["authenticated_by"] == "jwt"


def test_me_accepts_the_session(client, admin, login):
    login(ADMIN)
    body = client.get("/api/auth/me").get_json()
    assert body["email"] == ADMIN and body["authenticated_by"] == "session"


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"data": "{not json", "content_type": "application/json"}, 400),
        ({"data": "email=a", "content_type": "application/x-www-form-urlencoded"}, 400),
        ({"json": ["a", "list"]}, 400),
        ({"data": "[" * 100_000, "content_type": "application/json"}, 400),
        ({"data": "[" * 70 + "]" * 70, "content_type": "application/json"}, 400),
        ({"json": {"email": ADMIN}}, 400),
        ({"json": {"email": ADMIN, "password": 12345678}}, 400),
        ({"json": {"email": ADMIN, "password": "wrong password"}}, 401),
        ({"json": {"email": "nobody@example.com", "password": "wrong password"}}, 401),
    ],
)
def test_bad_token_requests_get_problem_json(client, admin, kwargs, status):
    body = assert_problem(client.post("/api/auth/token", **kwargs), status)
    if status == 400 and "json" in kwargs and isinstance(kwargs["json"], dict):
        assert body["errors"][0]["pointer"] == "/password"


def test_oversized_body_gets_413(app, client, admin):
    big = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    body = assert_problem(
        client.post("/api/auth/token", json={"email": ADMIN, "password": big}), 413
    )
    assert "MAX_BODY_BYTES" in body["detail"]


def test_unknown_api_route_is_problem_json_and_unknown_page_is_html(client):
    assert_problem(client.get("/api/nothing-here"), 404)
    page = client.get("/nothing-here")
    assert page.status_code == 404 and page.mimetype == "text/html"


def test_wrong_method_lists_the_allowed_ones(client):
    response = client.get("/api/auth/token")
    assert_problem(response, 405)
    assert "POST" in response.headers["Allow"]


def test_twenty_failed_logins_are_throttled(client, admin):
    statuses = [
        client.post("/api/auth/token", json={"email": ADMIN, "password": f"guess {i}"}).status_code
        for i in range(20)
    ]
    assert statuses[0] == 401
    assert 429 in statuses
    assert set(statuses) <= {401, 429}
    throttled = client.post(
        "/api/auth/token", json={"email": ADMIN, "password": "correct horse battery"}
    )
    body = assert_problem(throttled, 429)
    assert int(throttled.headers["Retry-After"]) > 0
    assert "try again" in body["detail"]


def test_throttled_login_page_says_so_without_crashing(client, admin, login):
    for _ in range(20):
        response = login(ADMIN, "wrong password")
    assert response.status_code == 429
    assert b"Too many failed logins" in response.data


@pytest.mark.parametrize(
    "header",
    ["Basic abc", "Bearer", "Bearer not-a-jwt", "Bearer efpt_someplugintoken", "Token x"],
)
def test_me_refuses_anything_but_a_user_jwt(client, admin, header):
    assert_problem(client.get("/api/auth/me", headers={"Authorization": header}), 401)


def test_me_refuses_a_request_jwt(app, client, admin):
    from extframework.services import tokens

    with app.app_context():
        request_jwt = tokens.mint_request_jwt(
            app.extensions["extframework.keys"],
            issuer=app.config["BASE_URL"],
            plugin_id="acme-billing",
            user_id=str(admin.id),
            name="Admin",
            email=ADMIN,
            tenant="default",
            role="admin",
            scopes=["views:read"],
            ttl_s=60,
        )
    response = client.get("/api/auth/me", headers={"Authorization": f"Bearer {request_jwt}"})
    body = assert_problem(response, 401)
    assert "audience" in body["detail"].lower()


def test_disabled_user_token_stops_working(client, admin, user_token):
    token = user_token(ADMIN)
    User.update(is_active=False).where(User.id == admin.id).execute()
    response = client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert_problem(response, 401)


def test_session_cookie_is_httponly_and_samesite(client, admin, login):
    response = login(ADMIN)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_jwks_lists_public_keys_only(client):
    keys = client.get("/.well-known/jwks.json").get_json()["keys"]
    assert len(keys) == 1
    assert keys[0]["kty"] == "EC" and keys[0]["alg"] == "ES256" and keys[0]["kid"]
    assert "d" not in keys[0]
