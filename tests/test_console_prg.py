"""Console forms are post/redirect/get: every POST answers 303, a secret is shown once after it."""

import json
import re

import pytest

from extframework.db import database
from extframework.models import AuditEvent, EnrolmentKey, Plugin, User

TOKEN = re.compile(r"efpt_[A-Za-z0-9_-]+")
KEY = re.compile(r"efek_[A-Za-z0-9_-]+")


@pytest.fixture
def operator(make_user, login):
    make_user("ops@example.com", role="admin", operator=True)
    login("ops@example.com")


@pytest.fixture
def member(make_user):
    return make_user("member@example.com")


# (path, form, where the 303 lands); {user} is the member's id.
POSTS = [
    ("/console/plugins/test-plugin/disable", {}, "/console/plugins/test-plugin"),
    ("/console/plugins/test-plugin/enable", {}, "/console/plugins/test-plugin"),
    ("/console/plugins/test-plugin/deregister", {}, "/console/plugins/test-plugin"),
    ("/console/plugins/test-plugin/migration/retry", {}, "/console/plugins/test-plugin"),
    (
        "/console/plugins/test-plugin/pending-updates/999/approve",
        {},
        "/console/plugins/test-plugin",
    ),
    (
        "/console/plugins/test-plugin/pending-updates/999/reject",
        {},
        "/console/plugins/test-plugin",
    ),
    (
        "/console/plugins/test-plugin/uninstall-policy",
        {"tenant": "default", "policy": "purge"},
        "/console/plugins/test-plugin",
    ),
    ("/console/plugins/test-plugin/rotate-token", {}, "/console/plugins/test-plugin"),
    ("/console/plugins/test-plugin/tenants", {"scope": "all"}, "/console/plugins/test-plugin"),
    ("/console/enrolment-keys", {"label": "ci"}, "/console/enrolment-keys"),
    ("/console/enrolment-keys/1/revoke", {}, "/console/enrolment-keys"),
    (
        "/console/users",
        {
            "email": "new@example.com",
            "name": "New",
            "password": "a long enough password",
            "role": "member",
            "tenant": "default",
        },
        "/console/users",
    ),
    ("/console/users/{user}/role", {"role": "viewer"}, "/console/users"),
    ("/console/users/{user}/deactivate", {}, "/console/users"),
    ("/console/users/{user}/reactivate", {}, "/console/users"),
    ("/console/tenants", {"slug": "acme", "name": "Acme"}, "/console/tenants"),
]


@pytest.mark.parametrize(("path", "form", "landing"), POSTS)
def test_every_console_post_redirects_with_303(
    app, client, make_plugin, operator, member, path, form, landing
):
    make_plugin()
    if "revoke" in path:
        client.post("/console/enrolment-keys", data={"label": "to revoke"})
    # Confirmed: the confirmation step itself is tests/test_confirm.py's.
    answer = client.post(path.format(user=member.id), data={**form, "confirm": "yes"})
    assert answer.status_code == 303, answer.get_data(as_text=True)[:500]
    assert answer.headers["Location"] == landing
    assert client.get(landing).status_code == 200


def test_a_rotated_token_is_shown_once_on_the_page_the_redirect_lands_on(
    app, client, make_plugin, operator
):
    _, old = make_plugin()
    answer = client.post("/console/plugins/test-plugin/rotate-token", data={"confirm": "yes"})
    assert answer.status_code == 303
    assert not TOKEN.search(answer.get_data(as_text=True))
    landed = client.get(answer.headers["Location"])
    assert landed.headers["Cache-Control"] == "no-store"
    shown = TOKEN.findall(landed.get_data(as_text=True))
    assert len(shown) == 1 and shown[0] != old
    assert not TOKEN.search(client.get("/console/plugins/test-plugin").get_data(as_text=True))
    own = client.get("/api/registry/plugins", headers={"Authorization": f"Bearer {shown[0]}"})
    assert own.status_code == 200
    with app.app_context(), database.connection_context():
        assert AuditEvent.select().where(AuditEvent.action == "plugin.rotate_token").count() == 1


def test_a_held_token_is_not_in_the_session_cookie_in_clear(app, client, make_plugin, operator):
    make_plugin()
    answer = client.post("/console/plugins/test-plugin/rotate-token", data={"confirm": "yes"})
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    # The cookie is signed and maybe zlib-compressed: decode it to see what it really holds.
    held = json.dumps(app.session_interface.get_signing_serializer(app).loads(cookie))
    assert "_shown_once" in held
    token = TOKEN.search(client.get(answer.headers["Location"]).get_data(as_text=True))
    assert token and token.group(0) not in held and "efpt_" not in held


def test_a_token_is_shown_only_on_its_own_plugins_page(client, make_plugin, operator):
    make_plugin()
    make_plugin()
    answer = client.post("/console/plugins/test-plugin/rotate-token", data={"confirm": "yes"})
    assert not TOKEN.search(client.get("/console/plugins/test-plugin-2").get_data(as_text=True))
    assert TOKEN.search(client.get(answer.headers["Location"]).get_data(as_text=True))


def test_a_new_enrolment_key_is_shown_once_after_the_redirect(app, client, operator):
    answer = client.post("/console/enrolment-keys", data={"label": "ci", "uses": "1"})
    assert answer.status_code == 303 and answer.headers["Location"] == "/console/enrolment-keys"
    landed = client.get("/console/enrolment-keys")
    assert landed.headers["Cache-Control"] == "no-store"
    assert len(KEY.findall(landed.get_data(as_text=True))) == 1
    assert not KEY.search(client.get("/console/enrolment-keys").get_data(as_text=True))
    with app.app_context(), database.connection_context():
        assert EnrolmentKey.select().count() == 1


def test_a_form_error_re_renders_with_400_and_does_nothing(app, client, operator):
    bad_key = client.post("/console/enrolment-keys", data={"uses": "lots"})
    assert bad_key.status_code == 400 and "whole number" in bad_key.get_data(as_text=True)
    bad_user = client.post("/console/users", data={"email": "not an email", "role": "member"})
    assert bad_user.status_code in (400, 422) and "Location" not in bad_user.headers
    with app.app_context(), database.connection_context():
        assert EnrolmentKey.select().count() == 0
        assert User.select().count() == 1


def test_a_refused_verb_redirects_and_says_why(app, client, make_plugin, operator):
    make_plugin(state="migrating")
    answer = client.post("/console/plugins/test-plugin/enable")
    assert answer.status_code == 303
    assert "cannot enable" in client.get(answer.headers["Location"]).get_data(as_text=True)
    with app.app_context(), database.connection_context():
        assert Plugin.get(Plugin.plugin_id == "test-plugin").state == "migrating"
