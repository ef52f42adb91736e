"""Live state (issue 17): notices where a plugin's menu was, and the JSON static/live.js polls."""

import html
import re
from datetime import timedelta

import pytest

from extframework.blueprints.shell import CONTENT_SECURITY_POLICY
from extframework.db import database
from extframework.models import MigrationRun, Plugin, utcnow
from extframework.services import lifecycle

VIEWS = [{"menu_id": "notes", "label": "Notes", "method": "GET", "path": "/notes"}]
ADMIN_VIEW = [{"menu_id": "secret", "method": "GET", "path": "/secret", "role": "admin"}]


@pytest.fixture
def member(make_user, login):
    make_user("ann@example.com", role="member")
    login("ann@example.com")


def notices(body: str) -> dict[str, str]:
    found = re.findall(
        r'<div class="menu-notice" data-notice="([^"]+)" data-state="[^"]+">\s*<h2>[^<]*</h2>\s*'
        r"<p>([^<]*)</p>",
        body,
    )
    return {plugin_id: html.unescape(text) for plugin_id, text in found}


def menu_ids(body: str) -> list[str]:
    return re.findall(r'<ul aria-labelledby="menu-[^"]+" data-plugin="([^"]+)">', body)


@pytest.mark.parametrize(
    ("state", "said"),
    [
        ("degraded", "Notes is not answering its health checks"),
        ("disabled", "Notes was turned off by an administrator"),
        ("migrating", "Notes is being updated"),
    ],
)
def test_a_plugin_that_left_the_menu_leaves_a_notice(client, member, shell_plugin, state, said):
    shell_plugin("notes", routes=VIEWS)
    assert menu_ids(client.get("/").get_data(as_text=True)) == ["notes"]
    assert notices(client.get("/").get_data(as_text=True)) == {}
    with database.connection_context():
        Plugin.update(state=state).where(Plugin.plugin_id == "notes").execute()
    body = client.get("/").get_data(as_text=True)
    assert menu_ids(body) == []
    assert notices(body)["notes"].startswith(said)
    live = client.get("/shell/live")
    assert live.status_code == 200 and live.headers["Cache-Control"] == "no-store"
    assert live.json["menu"] == []
    assert live.json["notices"] == [
        {"plugin_id": "notes", "name": "Notes", "state": state, "text": notices(body)["notes"]}
    ]


def test_only_people_who_had_the_entry_get_a_notice(client, member, shell_plugin):
    shell_plugin("elsewhere", routes=VIEWS, installed_in=["acme"], state="degraded")
    shell_plugin("admins-only", routes=ADMIN_VIEW, state="degraded")
    shell_plugin("params-only", routes=[{**VIEWS[0], "path": "/notes/:id"}], state="disabled")
    shell_plugin("gone", routes=VIEWS, state="deregistered")
    shell_plugin("new", routes=VIEWS, state="registered")
    shell_plugin("here", routes=VIEWS, installed_in=["default"], state="disabled")
    assert set(notices(client.get("/").get_data(as_text=True))) == {"here"}
    assert [n["plugin_id"] for n in client.get("/shell/live").json["notices"]] == ["here"]


def test_the_live_menu_follows_a_transition_without_a_new_page(app, client, member, make_plugin):
    plugin, _ = make_plugin()
    first = client.get("/shell/live").json
    assert [m["plugin_id"] for m in first["menu"]] == ["test-plugin"]
    assert first["menu"][0]["entries"][0]["href"] == "/plugin-proxy/test-plugin/items"
    with app.app_context(), database.connection_context():
        lifecycle.transition(plugin, "degraded", cause="health", actor="test")
    after = client.get("/shell/live").json
    assert after["menu"] == [] and after["notices"][0]["state"] == "degraded"
    with app.app_context(), database.connection_context():
        lifecycle.transition(plugin, "active", cause="health", actor="test")
    back = client.get("/shell/live").json
    assert [m["plugin_id"] for m in back["menu"]] == ["test-plugin"] and back["notices"] == []


def test_console_live_answers_operators_with_the_plugins_asked_for(
    app, client, make_user, login, make_plugin
):
    make_plugin(state="degraded")
    make_plugin(state="disabled")
    assert client.get("/console/live?plugin=test-plugin").status_code == 302  # to the login
    make_user("ann@example.com", role="admin")
    login("ann@example.com")
    assert client.get("/console/live?plugin=test-plugin").status_code == 403
    make_user("ops@example.com", role="admin", operator=True)
    login("ops@example.com")
    answer = client.get("/console/live?plugin=test-plugin&plugin=nope&plugin=test-plugin")
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    plugins = answer.json["plugins"]
    assert list(plugins) == ["test-plugin"]
    assert plugins["test-plugin"]["state"] == "degraded"
    assert plugins["test-plugin"]["why"].startswith("Its health checks fail")
    assert "storage open" in plugins["test-plugin"]["effects"]
    assert plugins["test-plugin"]["health"] == "not checked yet"
    assert client.get("/console/live").json == {"plugins": {}}
    many = "&".join(f"plugin=p{n}" for n in range(500))
    assert client.get(f"/console/live?{many}").status_code == 200


def test_pages_load_the_script_from_static_and_run_no_inline_script(
    client, make_user, login, make_plugin
):
    make_plugin()
    make_user("ops@example.com", role="admin", operator=True)
    login("ops@example.com")
    for url in ("/", "/console/plugins", "/console/plugins/test-plugin"):
        response = client.get(url)
        body = response.get_data(as_text=True)
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        scripts = re.findall(r"<script\b[^>]*>", body)
        assert sorted(scripts) == [
            '<script src="/static/confirm.js" defer>',
            '<script src="/static/live.js" defer>',
        ], url
        assert 'data-live-interval="5.0"' in body
    plugin_page = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    for marker in ("data-live-state", "data-live-meaning", "data-live-health"):
        assert f'{marker}="test-plugin"' in plugin_page, marker
    script = client.get("/static/live.js")
    assert script.status_code == 200 and "javascript" in script.mimetype
    script.close()
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY


def test_console_live_reports_a_running_migrations_progress(app, client, make_user, login):
    make_user("ops@example.com", role="admin", operator=True)
    login("ops@example.com")
    with app.app_context(), database.connection_context():
        plugin = Plugin.create(
            plugin_id="mover", name="Mover", version="1.0.0", base_url="http://127.0.0.1:9",
            state="migrating", manifest={},
        )  # fmt: skip
        run = MigrationRun.create(
            plugin=plugin,
            from_version="1.0.0",
            to_version="2.0.0",
            manifest={"base_url": "http://127.0.0.1:9", "migration": {"path": "/m"}},
            report={"progress": {"checked": 3, "total": 10}},
            owner="elsewhere:1:x",  # another host, its lease still running
            lease_expires_at=utcnow() + timedelta(minutes=5),
        )
    live = client.get("/console/live?plugin=mover").json["plugins"]["mover"]
    assert live["state"] == "migrating"
    assert live["migration"] == {"state": "running", "progress": "3 of 10 documents checked"}
    with app.app_context(), database.connection_context():
        MigrationRun.update(lease_expires_at=utcnow() - timedelta(seconds=1)).where(
            MigrationRun.id == run.id
        ).execute()
    later = client.get("/console/live?plugin=mover").json["plugins"]["mover"]
    assert later["migration"]["state"] == "interrupted"
    page = client.get("/console/plugins/mover").get_data(as_text=True)
    assert 'data-live-migration="mover">interrupted<' in page
