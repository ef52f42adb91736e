"""Every destructive or credential-changing console action acts only once confirmed.

Without scripts, one click (a POST without ``confirm=yes``) answers a "Really …?" page and
changes nothing; its Confirm button posts the same fields with ``confirm=yes`` and the CSRF
token, and only that acts. With scripts, static/confirm.js asks in a ``<dialog>`` instead
(tests/test_confirm_browser.py).
"""

import html
import re

import pytest

from extframework.db import database
from extframework.models import (
    AuditEvent,
    EnrolmentKey,
    Installation,
    PendingUpdate,
    Plugin,
    PluginToken,
    Transition,
    User,
)
from extframework.services import enrolment
from tests.support.registry_fixtures import sample_manifest

NEW_PASSWORD = "a long enough password"
OPS = "ops@example.com"


@pytest.fixture
def console(app, client, make_user, make_plugin, login):
    """An operator logged in; a plugin, a disabled plugin, a member and an enrolment key."""
    make_user(OPS, role="admin", operator=True)
    member = make_user("ann@example.com", tenant="acme")
    make_plugin()
    make_plugin(state="disabled")
    with app.app_context(), database.connection_context():
        key, _ = enrolment.create_key(actor="test", uses=None, expires_in=None, label="ci")
    login(OPS)
    return {"user": member.id, "key": key.id}


def snapshot(app) -> tuple:
    """What any of these actions would change."""
    with app.app_context(), database.connection_context():
        return (
            [(p.plugin_id, p.state) for p in Plugin.select().order_by(Plugin.id)],
            [
                (u.role, u.is_operator, u.is_active, u.password_hash, u.session_generation)
                for u in User.select().order_by(User.id)
            ],
            [(k.id, k.revoked_at) for k in EnrolmentKey.select().order_by(EnrolmentKey.id)],
            [(i.tenant_id, i.uninstall_policy) for i in Installation.select()],
            PluginToken.select().count(),
            Transition.select().count(),
            AuditEvent.select().count(),
        )


# (path, form): every console action that destroys something or changes credentials.
ACTIONS = [
    ("/console/plugins/test-plugin/disable", {"reason": "maintenance"}),
    ("/console/plugins/test-plugin-2/deregister", {}),
    ("/console/plugins/test-plugin/rotate-token", {"revoke_now": "on"}),
    ("/console/plugins/test-plugin/uninstall-policy", {"tenant": "acme", "policy": "purge"}),
    ("/console/tenants/acme/plugins/test-plugin/uninstall-policy", {"policy": "purge"}),
    ("/console/enrolment-keys/{key}/revoke", {}),
    ("/console/users/{user}/deactivate", {}),
    ("/console/users/{user}/role", {"role": "admin"}),
    ("/console/users/{user}/password", {"password": NEW_PASSWORD}),
    ("/account/other-sessions/end", {}),
    ("/console/plugins/test-plugin/tenants", {"scope": "selected", "tenant": "acme"}),
    ("/console/tenants/acme/plugins/test-plugin/uninstall", {}),
]


def hidden_fields(page: str) -> dict:
    form = page.split('data-testid="confirm"', 1)[1].split("</form>", 1)[0]
    return {
        html.unescape(name): html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form)
    }


@pytest.mark.parametrize(("path", "form"), ACTIONS)
def test_one_click_asks_and_only_the_confirmation_acts(app, client, console, path, form):
    path = path.format(**console)
    before = snapshot(app)
    asked = client.post(path, data=form)
    assert asked.status_code == 200, asked.get_data(as_text=True)[:300]
    page = asked.get_data(as_text=True)
    assert "Really" in page and 'data-testid="confirm"' in page
    assert asked.headers["Cache-Control"] == "no-store"  # it may carry a password being set
    assert f'<form method="post" action="{path}"' in page
    fields = hidden_fields(page)
    assert fields.pop("csrf_token")
    assert fields == {**form, "confirm": "yes"}  # the form's own fields, carried along
    assert snapshot(app) == before  # one click acted on nothing

    cancel = re.search(r'<a href="([^"]+)">Cancel</a>', page).group(1)
    assert client.get(cancel).status_code == 200
    assert snapshot(app) == before

    done = client.post(path, data=fields)
    assert done.status_code == 303
    assert snapshot(app) != before


@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_deciding_a_pending_move_asks_first(
    app, client, console, make_plugin, healthy_plugin_server, verb
):
    plugin, token = make_plugin()  # test-plugin-3
    manifest = sample_manifest(
        plugin_id=plugin.plugin_id, version="1.1.0", base_url=healthy_plugin_server.url
    )
    moved = client.put(
        f"/api/registry/plugins/{plugin.plugin_id}",
        json=manifest,
        headers={"Authorization": f"Bearer {token}"},
    )
    pending_id = moved.get_json()["pending_update"]["id"]
    path = f"/console/plugins/{plugin.plugin_id}/pending-updates/{pending_id}/{verb}"
    before = snapshot(app)
    asked = client.post(path)
    assert asked.status_code == 200 and "Really" in asked.get_data(as_text=True)
    assert snapshot(app) == before
    with app.app_context(), database.connection_context():
        assert PendingUpdate.get_by_id(pending_id).plugin_id == plugin.id
    assert client.post(path, data={"confirm": "yes"}).status_code == 303
    with app.app_context(), database.connection_context():
        assert PendingUpdate.get_or_none(PendingUpdate.id == pending_id) is None
        moved_to = Plugin.get_by_id(plugin.id).base_url
    assert (moved_to == healthy_plugin_server.url) == (verb == "approve")


def test_a_missing_pending_update_is_refused_without_a_question(client, console):
    answer = client.post("/console/plugins/test-plugin/pending-updates/999/reject")
    assert answer.status_code == 303  # flashed, as before: nothing to ask about
    assert "No pending update 999" in client.get(answer.headers["Location"]).get_data(as_text=True)


def test_the_confirmation_is_csrf_protected(app, client, console):
    app.config["WTF_CSRF_ENABLED"] = True
    path = f"/console/users/{console['user']}/deactivate"
    before = snapshot(app)
    assert client.post(path, data={"confirm": "yes"}).status_code == 400
    page = client.get("/console/users").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    asked = client.post(path, data={"csrf_token": token}).get_data(as_text=True)
    assert snapshot(app) == before
    done = client.post(path, data=hidden_fields(asked))
    assert done.status_code == 303
    with app.app_context(), database.connection_context():
        assert not User.get_by_id(console["user"]).is_active


def test_the_purge_typed_confirmation_is_carried_through_the_step(app, client, console):
    answer = client.post(
        "/console/plugins/test-plugin-2/deregister", data={"purge_confirm": "test-plugin-2"}
    )
    assert hidden_fields(answer.get_data(as_text=True))["purge_confirm"] == "test-plugin-2"


@pytest.mark.parametrize(
    ("page", "action"),
    [
        ("/console/plugins/test-plugin", "/console/plugins/test-plugin/disable"),
        ("/console/plugins/test-plugin", "/console/plugins/test-plugin/rotate-token"),
        ("/console/plugins/test-plugin-2", "/console/plugins/test-plugin-2/deregister"),
        ("/console/enrolment-keys", "/console/enrolment-keys/{key}/revoke"),
        ("/console/users", "/console/users/{user}/deactivate"),
        ("/console/users", "/console/users/{user}/password"),
        ("/console/users", "/console/users/{user}/role"),
        ("/account/password", "/account/other-sessions/end"),
        ("/console/plugins/test-plugin", "/console/plugins/test-plugin/tenants"),
        ("/console/plugins/test-plugin", "/console/plugins/test-plugin/uninstall-policy"),
        ("/console/tenants/acme", "/console/tenants/acme/plugins/test-plugin/uninstall-policy"),
        ("/console/tenants/acme", "/console/tenants/acme/plugins/test-plugin/uninstall"),
    ],
)
def test_with_scripts_the_forms_ask_in_a_dialog(client, console, page, action):
    body = client.get(page).get_data(as_text=True)
    form = re.search(r'<form[^>]*action="' + re.escape(action.format(**console)) + '"[^>]*>', body)
    assert form and re.search(r"data-confirm(-if-[a-z]+)?=", form.group(0))
    assert '<script src="/static/confirm.js" defer></script>' in body
    assert "<script>" not in body  # the CSP forbids inline script: it all lives in static/


def test_the_dialog_script_is_served_within_the_csp(client, console):
    page = client.get("/console/users")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    script = client.get("/static/confirm.js")
    body = script.get_data(as_text=True)
    script.close()  # a static file's response holds the file open until closed
    assert script.status_code == 200 and "showModal" in body
