"""The operator console's plugin and enrolment-key pages."""

import re

import pytest

from extframework.db import database
from extframework.models import EnrolmentKey, Plugin
from extframework.services import health, plugin_tokens
from tests.support.registry_fixtures import sample_manifest

YES = {"confirm": "yes"}  # the confirmation step: tests/test_confirm.py


@pytest.fixture
def operator(make_user, login):
    make_user("ops@example.com", role="admin", operator=True)
    login("ops@example.com")


def test_console_needs_an_operator(client, make_user, login):
    page = client.get("/console/plugins")
    assert page.status_code == 302 and "/login" in page.headers["Location"]
    make_user("admin@example.com", role="admin")
    login("admin@example.com")
    for url in ("/console/plugins", "/console/enrolment-keys"):
        response = client.get(url)
        assert response.status_code == 403 and response.mimetype == "text/html"
    assert client.post("/console/plugins/x/disable").status_code == 403


def test_plugins_list_shows_state_version_and_last_health(
    app, client, make_plugin, operator, healthy_plugin_server
):
    make_plugin(base_url=healthy_plugin_server.url, state="registered")
    make_plugin(plugin_id="other", name="Other", version="2.3.4", state="disabled")
    with app.app_context(), database.connection_context():
        health.sweep(app.config)
    html = client.get("/console").headers["Location"]
    assert html.endswith("/console/plugins")
    page = client.get("/console/plugins").get_data(as_text=True)
    assert re.search(r'data-plugin="test-plugin".*?1\.0\.0.*?state-active.*?ok ·', page, re.S)
    assert re.search(r'data-plugin="other".*?2\.3\.4.*?state-disabled.*?not checked', page, re.S)


def test_plugin_page_shows_versions_history_health_menus_and_collections(
    app, client, make_plugin, operator
):
    _, token = make_plugin()
    update = sample_manifest(version="1.1.0")
    update["data_schemas"].append({"collection": "notes", "schema": {"type": "object"}})
    response = client.put(
        "/api/registry/plugins/test-plugin",
        json=update,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200
    page = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    for text in (
        "1.1.0",
        "1.0.0",
        "manifest accepted",
        "GET /items",
        "DELETE /items/:id",
        "<code>items</code>",
        "<code>notes</code>",
        "No health checks yet",
        "storage open",
        'name="csrf_token"',
    ):
        assert text in page, text
    for verb in ("disable", "deregister"):
        has_button = f"/console/plugins/test-plugin/{verb}" in page
        assert has_button == (verb == "disable")


def test_buttons_drive_the_lifecycle_and_refusals_are_flashed(app, client, make_plugin, operator):
    make_plugin()
    done = client.post("/console/plugins/test-plugin/disable", data=YES, follow_redirects=True)
    assert done.status_code == 200
    assert "Test Plugin is now disabled." in done.get_data(as_text=True)
    refused = client.post("/console/plugins/test-plugin/disable", data=YES, follow_redirects=True)
    assert "operator actions: enable, deregister." in refused.get_data(as_text=True)
    client.post("/console/plugins/test-plugin/deregister", data=YES)
    with app.app_context(), database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == "test-plugin")
        assert plugin.state == "deregistered" and not plugin_tokens.live_tokens(plugin)


def test_rotated_token_is_shown_once_and_works(client, make_plugin, operator):
    _, old = make_plugin()
    page = client.post("/console/plugins/test-plugin/rotate-token", data=YES, follow_redirects=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    token = re.search(r"(efpt_[A-Za-z0-9_-]+)", page.get_data(as_text=True)).group(1)
    assert token != old
    assert token not in client.get("/console/plugins/test-plugin").get_data(as_text=True)
    own = client.get("/api/registry/plugins", headers={"Authorization": f"Bearer {token}"})
    assert own.status_code == 200


def test_enrolment_key_page_creates_shows_once_and_revokes(
    app, client, operator, healthy_plugin_server
):
    page = client.post(
        "/console/enrolment-keys",
        data={"label": "ci", "uses": "1", "expires": "2h"},
        follow_redirects=True,
    )
    assert page.status_code == 200
    key = re.search(r"(efek_[A-Za-z0-9_-]+)", page.get_data(as_text=True)).group(1)
    listing = client.get("/console/enrolment-keys").get_data(as_text=True)
    assert key not in listing and "usable" in listing and "ci" in listing
    registered = client.post(
        "/api/registry/plugins",
        json=sample_manifest(base_url=healthy_plugin_server.url),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert registered.status_code == 201
    assert "used up" in client.get("/console/enrolment-keys").get_data(as_text=True)
    with app.app_context(), database.connection_context():
        key_id = EnrolmentKey.select().first().id
    client.post(f"/console/enrolment-keys/{key_id}/revoke", data=YES)
    assert "revoked" in client.get("/console/enrolment-keys").get_data(as_text=True)


@pytest.mark.parametrize(
    ("form", "message"),
    [({"uses": "lots"}, "whole number"), ({"expires": "tomorrow"}, "not a duration")],
)
def test_bad_enrolment_key_form_is_explained(app, client, operator, form, message):
    page = client.post("/console/enrolment-keys", data=form)
    assert page.status_code == 400 and message in page.get_data(as_text=True)
    with app.app_context(), database.connection_context():
        assert EnrolmentKey.select().count() == 0


def test_console_forms_are_csrf_protected(app, client, make_plugin, operator):
    make_plugin()
    app.config["WTF_CSRF_ENABLED"] = True
    assert client.post("/console/plugins/test-plugin/disable").status_code == 400
    page = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    done = client.post("/console/plugins/test-plugin/disable", data={"csrf_token": csrf, **YES})
    assert done.status_code == 303
    with app.app_context(), database.connection_context():
        assert Plugin.get(Plugin.plugin_id == "test-plugin").state == "disabled"
