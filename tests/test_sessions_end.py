"""Sessions and user JWTs end when they should; a login starts a new session (SPEC §4).

A per-user session generation, carried in the session and in the user JWT, is checked on every
request: logging out, a password change or reset, a role change and deactivation bump it.
"""

import re

import jwt
import pytest
from playwright.sync_api import expect, sync_playwright

from extframework import db
from extframework.models import AuditEvent, User
from extframework.services import accounts, sessions, tokens
from tests.conftest import PASSWORD
from tests.support.processes import flask_cli, start_core

ANN = "ann@example.com"
OPS = "ops@example.com"
NEW_PASSWORD = "a brand new password"


@pytest.fixture
def ann(make_user):
    return make_user(ANN)


def csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def session_cookie(client) -> str | None:
    cookie = client.get_cookie("session")
    return cookie.value if cookie else None


def me(client, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get("/api/auth/me", headers=headers)


def assert_invalid_token(response) -> None:
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    challenge = response.headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
    assert "POST /api/auth/token" in response.get_json()["detail"]


def audit(app, action: str) -> list[AuditEvent]:
    with app.app_context(), db.database.connection_context():
        return list(AuditEvent.select().where(AuditEvent.action == action).order_by(AuditEvent.id))


# --- session cookies ----------------------------------------------------------------------


def test_a_session_cookie_saved_before_logout_gets_the_login_page_after(client, ann, login):
    login(ANN)
    saved = session_cookie(client)
    assert client.get("/").status_code == 200
    client.post("/logout")
    client.set_cookie("session", saved)
    response = client.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert me(client).status_code == 401


def test_logging_out_ends_the_persons_other_sessions_too(app, ann, login, client):
    """SPEC §4: logging out ends that person's existing sessions (docs/identity.md)."""
    other = app.test_client()
    other.post("/login", data={"email": ANN, "password": PASSWORD})
    login(ANN)
    client.post("/logout")
    assert other.get("/").status_code == 302


def test_a_second_browsers_session_ends_on_a_password_change_and_this_one_stays(app, ann):
    first, second = app.test_client(), app.test_client()
    for browser in (first, second):
        browser.post("/login", data={"email": ANN, "password": PASSWORD})
        assert browser.get("/").status_code == 200
    response = first.post(
        "/account/password",
        data={
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert response.status_code == 303
    assert first.get("/").status_code == 200
    assert me(first).get_json()["email"] == ANN
    response = second.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_login_starts_a_new_session_dropping_what_the_old_one_held(client, ann, login):
    client.get("/login")
    with client.session_transaction() as session:
        session["planted"] = "by whoever set the cookie"
    before = session_cookie(client)
    login(ANN)
    assert session_cookie(client) != before
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session.get("_user_id")


def test_a_csrf_token_from_before_login_is_refused_after(app, client, ann):
    app.config["WTF_CSRF_ENABLED"] = True
    old = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": ANN, "password": PASSWORD, "csrf_token": old})
    assert response.status_code == 302
    refused = client.post("/logout", data={"csrf_token": old})
    assert refused.status_code == 400
    assert client.get("/").status_code == 200  # still logged in: the logout was refused
    fresh = csrf_token(client.get("/").get_data(as_text=True))
    assert fresh != old
    assert client.post("/logout", data={"csrf_token": fresh}).status_code in (302, 303)
    assert client.get("/").status_code == 302


# --- user JWTs ----------------------------------------------------------------------------


def _log_out(app, client, user):
    client.post("/login", data={"email": ANN, "password": PASSWORD})
    client.post("/logout")


def _change_password(app, client, user):
    client.post("/login", data={"email": ANN, "password": PASSWORD})
    response = client.post(
        "/account/password",
        data={
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert response.status_code == 303


def _reset_password(app, client, user):
    with app.app_context(), db.database.connection_context():
        sessions.set_password(user.id, NEW_PASSWORD, actor="cli")


def _deactivate_and_reactivate(app, client, user):
    with app.app_context(), db.database.connection_context():
        accounts.set_active(user.id, False, actor="cli")
        accounts.set_active(user.id, True, actor="cli")


def _change_role(app, client, user):
    with app.app_context(), db.database.connection_context():
        accounts.set_role(user.id, "viewer", actor="cli")


def _change_operator_flag(app, client, user):
    with app.app_context(), db.database.connection_context():
        accounts.set_role(user.id, "member", operator=True, actor="cli")


ENDINGS = [
    _log_out,
    _change_password,
    _reset_password,
    _deactivate_and_reactivate,
    _change_role,
    _change_operator_flag,
]


@pytest.mark.parametrize("end", ENDINGS, ids=lambda f: f.__name__.strip("_"))
def test_a_user_jwt_from_before_the_session_ended_gets_401_invalid_token(
    app, client, ann, user_token, end
):
    token = user_token(ANN)
    assert me(client, token).status_code == 200
    browser = app.test_client()
    end(app, browser, ann)
    assert_invalid_token(me(client, token))


@pytest.mark.parametrize("end", ENDINGS, ids=lambda f: f.__name__.strip("_"))
def test_a_session_from_before_the_session_ended_is_logged_out(app, client, ann, login, end):
    login(ANN)
    assert client.get("/").status_code == 200
    end(app, app.test_client(), ann)
    response = client.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_new_user_jwt_after_the_session_ended_works(app, client, ann, user_token):
    old = user_token(ANN)
    _log_out(app, app.test_client(), ann)
    new = user_token(ANN)
    assert_invalid_token(me(client, old))
    assert me(client, new).status_code == 200


def test_a_role_save_that_changes_nothing_keeps_sessions(app, client, ann, user_token):
    token = user_token(ANN)
    with app.app_context(), db.database.connection_context():
        accounts.set_role(ann.id, "member", operator=False, actor="cli")
    assert me(client, token).status_code == 200


def test_a_user_jwt_carries_the_generation_and_one_without_it_counts_as_generation_0(
    app, client, ann, user_token
):
    """Tokens minted before the upgrade that added generations stay valid until the first bump."""
    claims = jwt.decode(user_token(ANN), options={"verify_signature": False})
    assert claims["gen"] == 0
    store = app.extensions["extframework.keys"]
    legacy = tokens.mint_user_jwt(
        store,
        issuer=app.config["BASE_URL"],
        user_id=str(ann.id),
        email=ANN,
        tenant="default",
        role="member",
        ttl_s=60,
        generation=None,
    )
    assert "gen" not in jwt.decode(legacy, options={"verify_signature": False})
    assert me(client, legacy).status_code == 200
    _log_out(app, app.test_client(), ann)
    assert_invalid_token(me(client, legacy))


def test_a_session_from_before_the_upgrade_counts_as_generation_0(app, client, ann, login):
    login(ANN)
    with client.session_transaction() as session:
        session["_user_id"] = str(ann.id)  # how flask-login stored the id before generations
    assert client.get("/").status_code == 200
    _log_out(app, app.test_client(), ann)
    assert client.get("/").status_code == 302


def test_the_generation_check_stays_one_statement_by_primary_key(app, ann):
    with app.app_context(), db.database.connection_context():
        assert accounts.active_user(ann.id, 0) is not None
        assert accounts.active_user(ann.id, 1) is None
        plan = db.database.execute_sql(
            "EXPLAIN QUERY PLAN " + accounts._ACTIVE_USER_SQL, (ann.id, 0)
        ).fetchall()
    details = " ".join(row[-1] for row in plan)
    assert "INTEGER PRIMARY KEY" in details and "SCAN" not in details


# --- the schema step ----------------------------------------------------------------------


def test_a_version_3_database_upgrades_and_its_users_log_in(app, client, ann):
    with app.app_context(), db.database.connection_context():
        db.database.execute_sql('ALTER TABLE "user" DROP COLUMN session_generation')
        db.SchemaVersion.update(version=3).execute()
    with app.app_context():
        assert db.upgrade() == (3, len(db.MIGRATIONS))
        with db.database.connection_context():
            rows = db.database.execute_sql(
                'SELECT email, session_generation FROM "user"'
            ).fetchall()
    assert rows == [(ANN, 0)]
    response = client.post("/login", data={"email": ANN, "password": PASSWORD})
    assert response.status_code == 302
    assert me(client).get_json()["email"] == ANN
    client.post("/logout")
    assert me(client).status_code == 401
    with app.app_context(), db.database.connection_context():
        assert User.get(User.email == ANN).session_generation == 1


# --- audit --------------------------------------------------------------------------------


def test_logins_logouts_and_token_logins_are_audited(app, client, ann, login, user_token):
    login(ANN)
    client.post("/logout")
    user_token(ANN)
    logins = audit(app, "auth.login")
    assert [(e.actor, e.target, e.detail["via"]) for e in logins] == [
        (f"user:{ANN}", f"user:{ANN}", "session"),
        (f"user:{ANN}", f"user:{ANN}", "token"),
    ]
    assert all(e.detail["address"] == "127.0.0.1" for e in logins)
    logouts = audit(app, "auth.logout")
    assert [(e.actor, e.target) for e in logouts] == [(f"user:{ANN}", f"user:{ANN}")]


def test_a_failed_login_is_audited_without_the_password(app, client, ann, login):
    typed = "  Ann@Example.com "
    login(typed, "the wrong password")
    client.post("/api/auth/token", json={"email": ANN, "password": "another wrong one"})
    failed = audit(app, "auth.login_failed")
    assert [(e.actor, e.target, e.detail["via"]) for e in failed] == [
        ("anonymous", f"user:{ANN}", "session"),
        ("anonymous", f"user:{ANN}", "token"),
    ]
    assert failed[0].detail["email"] == typed
    assert failed[0].detail["address"] == "127.0.0.1"
    with app.app_context(), db.database.connection_context():
        stored = " ".join(str(row) for row in db.database.execute_sql("SELECT * FROM audit_event"))
    assert "wrong" not in stored


def test_failed_logins_write_no_event_for_unknown_emails_and_few_per_account(app, client, ann):
    """Failed-login events cannot grow the table without bound (docs/identity.md)."""
    app.config["LOGIN_ADDRESS_SLOW_AFTER"] = 1000
    for n in range(20):
        client.post("/login", data={"email": f"nobody{n}@example.com", "password": "guess"})
    assert audit(app, "auth.login_failed") == []
    limit = app.config["LOGIN_MAX_FAILURES"]
    for n in range(limit + 5):  # each from its own address: under every throttle limit
        client.post(
            "/login",
            data={"email": ANN, "password": f"guess {n}"},
            environ_base={"REMOTE_ADDR": f"10.0.{n // 250}.{n % 250 + 1}"},
        )
    assert len(audit(app, "auth.login_failed")) == limit


def test_a_very_long_typed_email_is_truncated_in_the_audit(app, client, ann, login):
    with app.app_context(), db.database.connection_context():
        accounts.create_user("x" * 300 + "@example.com", PASSWORD)
    login("x" * 300 + "@example.com", "wrong password")
    [event] = audit(app, "auth.login_failed")
    assert len(event.detail["email"]) == accounts.AUDIT_EMAIL_CHARS
    assert event.target == "user:" + "x" * 300 + "@example.com"


# --- real processes -----------------------------------------------------------------------


def test_in_chromium_a_cookie_saved_before_logout_gets_the_login_page_after(tmp_path):
    core = start_core(tmp_path, workers=2, threads=2)
    try:
        created = flask_cli(
            tmp_path / "instance",
            "users",
            "create",
            ANN,
            env={"EXTFW_PASSWORD": PASSWORD, "EXTFW_BASE_URL": core.url},
        )
        assert created.returncode == 0, created.stderr
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--headless=new", "--no-sandbox", "--disable-gpu"],
            )
            try:
                context = browser.new_context(base_url=core.url)
                page = context.new_page()
                page.goto("/login")
                page.get_by_label("Email").fill(ANN)
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Log in").click()
                expect(page.get_by_test_id("current-user")).to_be_visible()
                saved = context.cookies()

                # The saved cookies are a live session while it lasts ...
                replay = browser.new_context(base_url=core.url)
                replay.add_cookies(saved)
                replayed = replay.new_page()
                replayed.goto("/")
                expect(replayed.get_by_test_id("current-user")).to_be_visible()
                replay.close()

                page.get_by_role("button", name="Log out").click()
                expect(page).to_have_url(re.compile(r"/login"))

                # ... and the login page once it is logged out.
                after = browser.new_context(base_url=core.url)
                after.add_cookies(saved)
                restored = after.new_page()
                restored.goto("/")
                expect(restored).to_have_url(re.compile(r"/login"))
                expect(restored.get_by_role("button", name="Log in")).to_be_visible()
                expect(restored.get_by_test_id("current-user")).to_have_count(0)
                after.close()
                context.close()
            finally:
                browser.close()
    finally:
        core.stop()
