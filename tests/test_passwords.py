"""Passwords change and reset: the CLI, a person's own page, and an operator's console reset."""

import html

import pytest

from extframework import db
from extframework.models import AuditEvent, User
from tests.conftest import PASSWORD

ANN = "ann@example.com"
OPS = "ops@example.com"
NEW_PASSWORD = "a brand new password"


@pytest.fixture
def ann(make_user):
    return make_user(ANN)


def stored(app, email: str = ANN) -> tuple[str, int]:
    """Return what a refusal must leave alone: the password hash and the session generation."""
    with app.app_context(), db.database.connection_context():
        user = User.get(User.email == email)
        return user.password_hash, user.session_generation


def audit(app, action: str) -> list[AuditEvent]:
    with app.app_context(), db.database.connection_context():
        return list(AuditEvent.select().where(AuditEvent.action == action).order_by(AuditEvent.id))


def can_log_in(app, email: str, password: str) -> bool:
    response = app.test_client().post("/login", data={"email": email, "password": password})
    return response.status_code == 302


def me(client, token: str):
    return client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


# --- flask users set-password -------------------------------------------------------------


def test_set_password_from_the_environment_ends_sessions_and_is_audited(
    app, client, runner, ann, user_token
):
    token = user_token(ANN)
    result = runner.invoke(
        args=["users", "set-password", "  ANN@example.com"], env={"EXTFW_PASSWORD": NEW_PASSWORD}
    )
    assert result.exit_code == 0, result.output
    assert "Set a new password for ann@example.com" in result.output
    assert NEW_PASSWORD not in result.output
    assert can_log_in(app, ANN, NEW_PASSWORD) and not can_log_in(app, ANN, PASSWORD)
    assert me(client, token).status_code == 401
    [event] = audit(app, "user.set_password")
    assert (event.actor, event.target, event.detail) == ("cli", f"user:{ANN}", {})


def test_set_password_prompts_twice_without_echoing(app, runner, ann, monkeypatch):
    monkeypatch.delenv("EXTFW_PASSWORD", raising=False)
    result = runner.invoke(
        args=["users", "set-password", ANN], input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    assert "New password" in result.output and "Repeat for confirmation" in result.output
    assert NEW_PASSWORD not in result.output
    assert can_log_in(app, ANN, NEW_PASSWORD)


def test_set_password_prompt_refuses_two_different_entries(app, runner, ann, monkeypatch):
    monkeypatch.delenv("EXTFW_PASSWORD", raising=False)
    before = stored(app)
    result = runner.invoke(
        args=["users", "set-password", ANN], input=f"{NEW_PASSWORD}\nsomething else\n"
    )
    assert result.exit_code != 0
    assert "do not match" in result.output
    assert stored(app) == before


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        (ANN, "short", "at least 8 characters"),
        ("nobody@example.com", NEW_PASSWORD, "No user with email 'nobody@example.com'"),
    ],
)
def test_set_password_refusals_say_what_to_fix_and_change_nothing(
    app, runner, ann, email, password, message
):
    before = stored(app)
    result = runner.invoke(args=["users", "set-password", email], env={"EXTFW_PASSWORD": password})
    assert result.exit_code == 1
    assert message in result.output
    assert stored(app) == before
    assert audit(app, "user.set_password") == []


# --- the change-password page -------------------------------------------------------------


def change(client, current=PASSWORD, new=NEW_PASSWORD, confirm=None):
    return client.post(
        "/account/password",
        data={
            "current_password": current,
            "new_password": new,
            "confirm_password": new if confirm is None else confirm,
        },
    )


def test_the_change_password_page_needs_a_login_and_is_linked_from_the_layout(client, ann, login):
    for response in (client.get("/account/password"), change(client)):
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    login(ANN)
    assert 'href="/account/password"' in client.get("/").get_data(as_text=True)
    page = client.get("/account/password")
    assert page.status_code == 200
    assert 'name="current_password"' in text(page) and 'name="confirm_password"' in text(page)


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"current": "not my password"}, "The current password is not correct."),
        ({"confirm": "a different new password"}, "type the same new password twice"),
        ({"new": "short", "confirm": "short"}, "at least 8 characters"),
        ({"new": PASSWORD}, "The new password is the same as the current one."),
    ],
    ids=["wrong-current", "mismatch", "too-short", "unchanged"],
)
def test_a_refused_change_says_why_and_changes_nothing(app, client, ann, login, form, message):
    login(ANN)
    before = stored(app)
    response = change(client, **form)
    assert response.status_code == 422
    assert message in text(response)
    assert stored(app) == before
    assert client.get("/").status_code == 200
    assert audit(app, "user.change_password") == []


def test_a_wrong_current_password_is_throttled_and_audited_like_a_login(app, client, ann, login):
    app.config["LOGIN_MAX_FAILURES"] = 2
    login(ANN)
    assert change(client, current="guess one").status_code == 422
    assert change(client, current="guess two").status_code == 422
    throttled = change(client, current=PASSWORD)  # even the right one, as at the login form
    assert throttled.status_code == 429 and throttled.headers["Retry-After"]
    failed = audit(app, "auth.login_failed")
    assert [e.detail["via"] for e in failed] == ["password_change", "password_change"]


def test_a_change_ends_other_sessions_and_tokens_keeps_this_one_and_is_audited(
    app, client, ann, login, user_token
):
    other = app.test_client()
    other.post("/login", data={"email": ANN, "password": PASSWORD})
    token = user_token(ANN)
    login(ANN)
    response = change(client)
    assert response.status_code == 303
    assert response.headers["Location"] == "/account/password"
    landed = client.get("/account/password")
    assert "Your password is changed" in text(landed)
    assert "Your password is changed" not in text(client.get("/account/password"))  # once
    assert client.get("/").status_code == 200
    assert other.get("/").status_code == 302
    assert me(client, token).status_code == 401
    assert can_log_in(app, ANN, NEW_PASSWORD) and not can_log_in(app, ANN, PASSWORD)
    [event] = audit(app, "user.change_password")
    assert (event.actor, event.target) == (f"user:{ANN}", f"user:{ANN}")
    assert [e.detail["via"] for e in audit(app, "auth.login")] == [
        "session",
        "token",
        "session",
        "session",
    ]  # the current password's check is not a login


# --- the console's reset ------------------------------------------------------------------


@pytest.fixture
def operator(make_user):
    return make_user(OPS, role="admin", operator=True)


def reset(client, user_id: int, password: str = NEW_PASSWORD):
    return client.post(
        f"/console/users/{user_id}/password", data={"password": password, "confirm": "yes"}
    )


def test_a_member_cannot_reset_a_password(app, client, ann, make_user, login):
    before = stored(app)
    response = reset(client, ann.id)
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    make_user("member@example.com", role="member")  # a tenant's admin: test_tenant_admin.py
    login("member@example.com")
    assert reset(client, ann.id).status_code == 403
    assert stored(app) == before
    assert audit(app, "user.set_password") == []


def test_an_operators_reset_ends_the_users_sessions_and_is_audited(
    app, client, ann, operator, login, user_token
):
    token = user_token(ANN)
    victim = app.test_client()
    victim.post("/login", data={"email": ANN, "password": PASSWORD})
    login(OPS)
    page = text(client.get("/console/users"))
    assert f'action="/console/users/{ann.id}/password"' in page
    assert f'action="/console/users/{operator.id}/password"' not in page  # their own: the page
    assert 'href="/console/audit?action=auth."' in page
    response = reset(client, ann.id)
    assert response.status_code == 303
    assert response.headers["Location"] == "/console/users"
    assert f"Set a new password for {ANN}" in text(client.get("/console/users"))
    assert victim.get("/").status_code == 302
    assert me(client, token).status_code == 401
    assert client.get("/console/users").status_code == 200  # the operator stays logged in
    assert can_log_in(app, ANN, NEW_PASSWORD) and not can_log_in(app, ANN, PASSWORD)
    [event] = audit(app, "user.set_password")
    assert (event.actor, event.target) == (f"user:{OPS}", f"user:{ANN}")


@pytest.mark.parametrize(
    ("target", "password", "status", "message"),
    [
        ("ann", "short", 422, "password: at least 8 characters"),
        ("ops", NEW_PASSWORD, 409, "Change your own password on the Change password page"),
        ("nobody", NEW_PASSWORD, 404, "No user with id 999"),
    ],
)
def test_a_refused_reset_says_why_and_changes_nothing(
    app, client, ann, operator, login, target, password, status, message
):
    login(OPS)
    user_id = {"ann": ann.id, "ops": operator.id, "nobody": 999}[target]
    before = stored(app), stored(app, OPS)
    response = reset(client, user_id, password)
    assert response.status_code == status
    assert message in text(response)
    assert (stored(app), stored(app, OPS)) == before
    assert audit(app, "user.set_password") == []
