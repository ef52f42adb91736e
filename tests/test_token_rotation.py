"""Plugin tokens rotate with an overlap (SPEC §4): grace, revoke now, self-rotation, last use."""

import re
import stat
from datetime import timedelta

import pytest
import requests

from extframework import db
from extframework.db import database
from extframework.models import AuditEvent, Plugin, PluginToken, utcnow
from extframework.services import lifecycle, plugin_admin, plugin_tokens
from extframework.services.secrets import hash_secret
from extframework_sdk import StorageClient, StorageError, rotate_token, token_fingerprint
from tests.support.processes import login_session, serve_app
from tests.support.shell_fixtures import PASSWORD, Demo

INVALID_TOKEN = 'Bearer error="invalid_token"'


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- end to end: the demo plugin across an operator's rotation -------------------------------


@pytest.fixture
def demo(tmp_path):
    demo = Demo(tmp_path)
    try:
        demo.start_python_plugin()
        demo.wait_for_state("notebook", "active")
        yield demo
    finally:
        demo.stop()


def test_the_demo_plugin_keeps_serving_across_a_rotation_and_revoke_now_ends_its_token(demo):
    """Found: a rotation silently broke the plugin (a 500 panel) while it looked healthy."""
    user = login_session(demo.url, demo.admin, PASSWORD)
    notes = f"{demo.url}/plugin-proxy/notebook/notes"
    token_file = demo.base / "notebook.token"
    first = token_file.read_text().strip()
    assert user.get(notes, timeout=10).status_code == 200

    rotated = demo.api.post(
        f"{demo.url}/api/registry/plugins/notebook/rotate-token", timeout=10
    ).json()
    # The plugin still holds the first token: its views read storage with it, and keep working.
    view = user.get(notes, timeout=10)
    assert view.status_code == 200 and "Notes" in view.text
    assert rotated["old_token_expires_at"] is not None
    assert demo.plugin("notebook")["state"] == "active"

    demo.api.post(
        f"{demo.url}/api/registry/plugins/notebook/rotate-token",
        json={"revoke_now": True},
        timeout=10,
    ).raise_for_status()
    refused = requests.get(
        f"{demo.url}/api/storage/notes", headers={**bearer(first), "X-Tenant-ID": "default"}
    )
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith(INVALID_TOKEN)
    # The panel says what went wrong: the core refused the plugin's credentials.
    broken = user.get(notes, timeout=10)
    assert broken.status_code == 424, broken.text
    assert "refused its plugin token" in broken.text

    # An operator delivers the newest token as a new file: the running plugin picks it up.
    newest = demo.api.post(
        f"{demo.url}/api/registry/plugins/notebook/rotate-token",
        json={"revoke_now": True},
        timeout=10,
    ).json()["plugin_token"]
    token_file.write_text(newest + "\n")
    assert user.get(notes, timeout=10).status_code == 200


# --- the API: operator rotation, revoke now, self-rotation -----------------------------------


@pytest.fixture
def operator(make_user, login):
    make_user("ops@example.com", role="admin", operator=True)
    login("ops@example.com")


def storage_answer(client, token: str):
    return client.get("/api/storage/items", headers={**bearer(token), "X-Tenant-ID": "default"})


def live_hashes(app, plugin_id: str = "test-plugin") -> set[str]:
    with app.app_context(), database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == plugin_id)
        now = utcnow()
        return {
            row.token_hash
            for row in plugin.tokens
            if row.revoked_at is None and (row.expires_at is None or row.expires_at > now)
        }


def test_an_operators_rotation_keeps_the_old_token_for_the_grace(
    app, client, make_plugin, operator
):
    _, old = make_plugin()
    response = client.post("/api/registry/plugins/test-plugin/rotate-token")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    new = body["plugin_token"]
    assert storage_answer(client, old).status_code == 200
    assert storage_answer(client, new).status_code == 200
    assert [t["current"] for t in body["tokens"]] == [True, False]
    assert body["tokens"][1]["expires_at"] == body["old_token_expires_at"]
    assert body["tokens"][0]["fingerprint"] == hash_secret(new)[:12]
    with app.app_context(), database.connection_context():
        row = PluginToken.get(PluginToken.token_hash == hash_secret(old))
        assert row.expires_at - row.created_at >= timedelta(seconds=3599)
        # The grace ends: the old token is refused, the new one is not.
        row.expires_at = utcnow() - timedelta(seconds=1)
        row.save()
    refused = storage_answer(client, old)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith(INVALID_TOKEN)
    assert storage_answer(client, new).status_code == 200


def test_revoke_now_ends_every_older_token_at_once(app, client, make_plugin, operator):
    _, first = make_plugin()
    second = client.post("/api/registry/plugins/test-plugin/rotate-token").get_json()
    answer = client.post(
        "/api/registry/plugins/test-plugin/rotate-token", json={"revoke_now": True}
    ).get_json()
    assert answer["old_token_expires_at"] is None
    for old in (first, second["plugin_token"]):
        refused = storage_answer(client, old)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith(INVALID_TOKEN)
    assert live_hashes(app) == {hash_secret(answer["plugin_token"])}


def test_the_grace_comes_from_the_setting(app, client, make_plugin, operator):
    app.config["TOKEN_GRACE_S"] = 0
    _, old = make_plugin()
    client.post("/api/registry/plugins/test-plugin/rotate-token")
    assert storage_answer(client, old).status_code == 401


def test_rotating_in_a_loop_keeps_at_most_four_tokens_in_their_grace(app, client, make_plugin):
    _, token = make_plugin()
    issued = [token]
    for _ in range(6):
        response = client.post(
            "/api/registry/plugins/test-plugin/rotate-token", headers=bearer(issued[-1])
        )
        issued.append(response.get_json()["plugin_token"])
    assert live_hashes(app) == {hash_secret(t) for t in issued[-5:]}
    assert [storage_answer(client, t).status_code for t in issued] == [401] * 2 + [200] * 5


def test_a_plugin_rotates_its_own_token_and_keeps_a_way_back(app, client, make_plugin):
    _, old = make_plugin()
    make_plugin()  # test-plugin-2
    response = client.post("/api/registry/plugins/test-plugin/rotate-token", headers=bearer(old))
    assert response.status_code == 200
    new = response.get_json()["plugin_token"]
    assert storage_answer(client, new).status_code == 200
    # It crashed before saving the new token: the old one still works, and rotates again.
    assert storage_answer(client, old).status_code == 200
    again = client.post("/api/registry/plugins/test-plugin/rotate-token", headers=bearer(old))
    assert again.status_code == 200
    newest = again.get_json()["plugin_token"]
    assert storage_answer(client, newest).status_code == 200
    with app.app_context(), database.connection_context():
        actors = [
            e.actor for e in AuditEvent.select().where(AuditEvent.action == "plugin.rotate_token")
        ]
    assert actors == ["plugin:test-plugin", "plugin:test-plugin"]


def test_a_plugin_cannot_rotate_another_plugins_token(app, client, make_plugin):
    _, token = make_plugin()
    _, other = make_plugin()
    before = live_hashes(app, "test-plugin-2")
    response = client.post(
        "/api/registry/plugins/test-plugin-2/rotate-token", headers=bearer(token)
    )
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert live_hashes(app, "test-plugin-2") == before == {hash_secret(other)}


def test_a_member_or_nobody_cannot_rotate(app, client, make_plugin, make_user, user_token):
    _, token = make_plugin()
    make_user("ann@example.com", role="admin")
    member = client.post(
        "/api/registry/plugins/test-plugin/rotate-token",
        headers=bearer(user_token("ann@example.com")),
    )
    assert member.status_code == 403
    nobody = client.post("/api/registry/plugins/test-plugin/rotate-token")
    assert nobody.status_code == 401
    assert live_hashes(app) == {hash_secret(token)}


@pytest.mark.parametrize(
    "body, content_type, detail",
    [
        ("{not json", "application/json", "not valid JSON"),
        ('{"revoke_now": "yes"}', "application/json", "/revoke_now must be true or false"),
        ('{"revoke": true}', "application/json", "/revoke is not a field of this request"),
        ("[]", "application/json", "must be a JSON object"),
        ("revoke_now=true", "application/x-www-form-urlencoded", "Content-Type"),
    ],
)
def test_a_bad_body_is_400_and_rotates_nothing(
    app, client, make_plugin, operator, body, content_type, detail
):
    _, token = make_plugin()
    response = client.post(
        "/api/registry/plugins/test-plugin/rotate-token", data=body, content_type=content_type
    )
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert detail in response.get_json()["detail"]
    assert live_hashes(app) == {hash_secret(token)}


def test_a_deregistered_plugins_tokens_all_die(app, client, make_plugin, operator):
    plugin, old = make_plugin()
    new = client.post("/api/registry/plugins/test-plugin/rotate-token").get_json()["plugin_token"]
    with app.app_context(), database.connection_context():
        for state in ("disabled", "deregistered"):
            lifecycle.transition(plugin, state, cause="test", actor="test")
    for token in (old, new):
        assert client.get("/api/registry/plugins", headers=bearer(token)).status_code == 401
    assert live_hashes(app) == set()
    again = client.post("/api/registry/plugins/test-plugin/rotate-token")
    assert again.status_code == 409


# --- last use ---------------------------------------------------------------------------------


def last_used(app, token: str):
    with app.app_context(), database.connection_context():
        return PluginToken.get(PluginToken.token_hash == hash_secret(token)).last_used_at


def set_last_used(app, token: str, value) -> None:
    with app.app_context(), database.connection_context():
        PluginToken.update(last_used_at=value).where(
            PluginToken.token_hash == hash_secret(token)
        ).execute()


def test_last_use_is_recorded_at_most_once_a_minute(app, client, make_plugin, monkeypatch):
    _, token = make_plugin()
    assert last_used(app, token) is None
    before = utcnow()
    assert storage_answer(client, token).status_code == 200
    first = last_used(app, token)
    assert first is not None and first >= before
    # Within the minute: no write (this process wrote it just now).
    for _ in range(3):
        assert storage_answer(client, token).status_code == 200
    assert last_used(app, token) == first
    # A minute or more later: written again.
    later = first + timedelta(seconds=61)
    monkeypatch.setattr(plugin_tokens, "utcnow", lambda: later)
    assert storage_answer(client, token).status_code == 200
    assert last_used(app, token) == later


def test_a_busy_database_does_not_fail_a_call_for_its_last_use(app, client, make_plugin):
    """Last use is advisory: a write that cannot get the lock is skipped, the call answers."""
    import sqlite3

    _, token = make_plugin()
    blocker = sqlite3.connect(app.config["DATABASE"], timeout=0)
    blocker.execute("BEGIN IMMEDIATE")
    app.config["SQLITE_BUSY_TIMEOUT_MS"] = 0
    try:
        with app.app_context():
            db.bind(None, app.config["DATABASE"], {**app.config, "SQLITE_BUSY_TIMEOUT_MS": 50})
        assert storage_answer(client, token).status_code == 200
    finally:
        blocker.rollback()
        blocker.close()
    assert last_used(app, token) is None


# --- console and CLI ----------------------------------------------------------------------------


def test_the_console_shows_each_live_token_and_rotates_with_grace_or_revoke_now(
    app, client, make_plugin, operator
):
    _, first = make_plugin()
    storage_answer(client, first)
    page = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    assert hash_secret(first)[:12] in page and "(current)" in page
    assert "never" not in page.split('data-testid="tokens"')[1].split("</section>")[0]

    rotated = client.post("/console/plugins/test-plugin/rotate-token", data={"confirm": "yes"})
    assert rotated.status_code == 303
    landed = client.get(rotated.headers["Location"])
    text = landed.get_data(as_text=True)
    assert landed.headers["Cache-Control"] == "no-store"
    second = re.search(r"(efpt_[A-Za-z0-9_-]+)", text).group(1)
    assert "The old token keeps working until" in text
    assert storage_answer(client, first).status_code == 200
    listing = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    rows = re.findall(r'<tr data-testid="token">(.*?)</tr>', listing, re.S)
    assert len(rows) == 2 and second not in listing
    assert hash_secret(second)[:12] in rows[0] and "never" in rows[0]
    assert hash_secret(first)[:12] in rows[1]

    revoked = client.post(
        "/console/plugins/test-plugin/rotate-token",
        data={"revoke_now": "on", "confirm": "yes"},
        follow_redirects=True,
    )
    assert "The old token no longer works." in revoked.get_data(as_text=True)
    assert storage_answer(client, first).status_code == 401
    assert storage_answer(client, second).status_code == 401
    listing = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    assert len(re.findall(r'<tr data-testid="token">', listing)) == 1


def test_the_cli_rotates_with_grace_or_revoke_now(app, client, runner, make_plugin):
    _, first = make_plugin()
    result = runner.invoke(args=["plugins", "rotate-token", "test-plugin"])
    assert result.exit_code == 0, result.output
    second = result.output.strip().splitlines()[-1]
    assert "the old token works until" in result.output
    assert storage_answer(client, first).status_code == 200
    result = runner.invoke(args=["plugins", "rotate-token", "test-plugin", "--revoke-now"])
    assert result.exit_code == 0, result.output
    third = result.output.strip().splitlines()[-1]
    assert "the old token no longer works" in result.output
    assert [storage_answer(client, t).status_code for t in (first, second, third)] == [
        401,
        401,
        200,
    ]


# --- the schema step --------------------------------------------------------------------------


def test_upgrading_a_version_3_database_keeps_each_plugins_token_working(app, client, make_plugin):
    """A version-3 database kept the token's hash on ``plugin``; it moves to ``plugin_token``."""
    _, token = make_plugin()
    gone, _ = make_plugin()
    with app.app_context(), database.connection_context():
        for state in ("disabled", "deregistered"):
            lifecycle.transition(gone, state, cause="test", actor="test")
        rotated_at = Plugin.get(Plugin.plugin_id == "test-plugin").token_rotated_at
        database.execute_sql("DROP TABLE plugin_token")
        database.execute_sql("ALTER TABLE plugin ADD COLUMN token_hash VARCHAR(255)")
        database.execute_sql('CREATE UNIQUE INDEX "plugin_token_hash" ON "plugin" ("token_hash")')
        database.execute_sql(
            "UPDATE plugin SET token_hash = ? WHERE plugin_id = 'test-plugin'",
            (hash_secret(token),),
        )
        db.SchemaVersion.update(version=3).execute()
    with app.app_context():
        assert db.upgrade() == (3, len(db.MIGRATIONS))
        with database.connection_context():
            columns = {c.name for c in database.get_columns("plugin")}
            rows = [
                (row.plugin.plugin_id, row.created_at, row.expires_at, row.revoked_at)
                for row in PluginToken.select()
            ]
    assert "token_hash" not in columns
    assert rows == [("test-plugin", rotated_at, None, None)]
    assert storage_answer(client, token).status_code == 200
    assert client.get("/api/registry/plugins", headers=bearer(token)).status_code == 200


# --- the SDK against the live core ------------------------------------------------------------


def test_the_sdk_rotates_and_stores_the_new_token(app, client, make_plugin, tmp_path):
    _, old = make_plugin()
    token_file = tmp_path / "plugin" / "token"
    token_file.parent.mkdir()
    token_file.write_text(old + "\n")
    with serve_app(app) as url:
        new = rotate_token(url, "test-plugin", token_file=token_file)
        assert token_file.read_text() == new + "\n"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert list(token_file.parent.iterdir()) == [token_file]  # no temporary file left
        storage = StorageClient(url, token_file=token_file)
        assert storage.query("items", tenant="default")["items"] == []
        # The old token still works for the grace; the file no longer holds it.
        assert storage_answer(client, old).status_code == 200
        newest = rotate_token(url, "test-plugin", token_file=token_file, revoke_now=True)
    assert storage_answer(client, new).status_code == 401
    assert token_fingerprint(newest) == hash_secret(newest)[:12]


def test_the_storage_client_rereads_the_token_file_after_a_401(app, make_plugin, tmp_path):
    _, old = make_plugin()
    token_file = tmp_path / "token"
    token_file.write_text(old + "\n")
    with serve_app(app) as url:
        storage = StorageClient(url, token_file=token_file)
        created = storage.create("items", {"title": "kept"}, tenant="default")
        with app.app_context(), database.connection_context():
            plugin = Plugin.get(Plugin.plugin_id == "test-plugin")
            new, _ = plugin_admin.rotate_token(plugin, actor="ops", grace_s=0, revoke_now=True)
        # The operator has rotated, but not yet delivered the new token: the call is refused.
        with pytest.raises(StorageError) as refused:
            storage.get("items", created["id"], tenant="default")
        assert refused.value.status == 401
        # Delivered as a new file: the running client picks it up on its next call.
        token_file.write_text(new + "\n")
        assert storage.get("items", created["id"], tenant="default")["data"] == {"title": "kept"}
