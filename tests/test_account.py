"""The account page: change one's password (tests/test_passwords.py holds its rules) and sign out
of every other session while this one stays signed in."""

import re

from extframework.db import database
from extframework.models import AuditEvent
from tests.conftest import PASSWORD

ANN = "ann@example.com"
END = "/account/other-sessions/end"


def signed_in(app, email: str = ANN):
    other = app.test_client()
    assert other.post("/login", data={"email": email, "password": PASSWORD}).status_code == 302
    return other


def test_the_account_page_offers_both(client, make_user, login):
    make_user(ANN)
    login(ANN)
    assert client.get("/account").headers["Location"] == "/account/password"
    page = client.get("/account/password").get_data(as_text=True)
    assert 'data-testid="change-password"' in page
    assert f'action="{END}"' in page and "Sign out of other sessions" in page


def test_signing_out_of_other_sessions_ends_them_and_keeps_this_one(
    app, client, make_user, login, user_token
):
    make_user(ANN)
    make_user("bob@example.com")
    login(ANN)
    other = signed_in(app)
    bob = signed_in(app, "bob@example.com")
    token = user_token(ANN)
    me = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/auth/me", headers=me).status_code == 200

    asked = client.post(END)  # one click: the question, nothing ends yet
    assert asked.status_code == 200 and "Really sign out" in asked.get_data(as_text=True)
    assert other.get("/").status_code == 200
    done = client.post(END, data={"confirm": "yes"})
    assert done.status_code == 303 and done.headers["Location"] == "/account/password"

    assert "other sessions are signed out" in client.get("/account/password").get_data(as_text=True)
    assert client.get("/").status_code == 200  # this browser stays signed in
    gone = other.get("/")
    assert gone.status_code == 302 and "/login" in gone.headers["Location"]
    assert client.get("/api/auth/me", headers=me).status_code == 401
    assert bob.get("/").status_code == 200  # someone else's sessions are theirs
    with app.app_context(), database.connection_context():
        [event] = AuditEvent.select().where(AuditEvent.action == "auth.logout_others")
        assert (event.actor, event.target) == (f"user:{ANN}", f"user:{ANN}")


def test_signing_out_of_other_sessions_needs_a_login_and_the_csrf_token(
    app, client, make_user, login
):
    make_user(ANN)
    anonymous = client.post(END, data={"confirm": "yes"})
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    login(ANN)
    other = signed_in(app)
    app.config["WTF_CSRF_ENABLED"] = True
    assert client.post(END, data={"confirm": "yes"}).status_code == 400
    assert other.get("/").status_code == 200
    page = client.get("/account/password").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post(END, data={"confirm": "yes", "csrf_token": token}).status_code == 303
    assert other.get("/").status_code == 302
