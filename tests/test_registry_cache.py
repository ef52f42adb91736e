"""The view caches (issue 14): every registry change bumps the version, every process sees it."""

import sqlite3
import time

import pytest
import requests

from extframework import db
from extframework.models import (
    Collection,
    Installation,
    Plugin,
    PluginToken,
    Route,
    SigningKeyRow,
    Tenant,
    utcnow,
)
from extframework.services import menu, proxy, registry_cache
from tests.support.processes import login_session
from tests.support.shell_fixtures import PASSWORD, Demo, StubPlugin


def registry_version(app) -> int:
    with app.app_context(), db.database.connection_context():
        return db.database.execute_sql("SELECT version FROM registry_version").fetchone()[0]


def _other_tenant() -> Tenant:
    return Tenant.get(Tenant.slug == "t2")


CHANGES = {
    "a plugin registered": lambda p: Plugin.create(
        plugin_id="other", name="Other", version="1.0.0", base_url="http://x.test", manifest={}
    ),
    "a plugin's state": lambda p: Plugin.update(state="disabled").where(Plugin.id == p.id),
    "a plugin's name": lambda p: Plugin.update(name="Renamed").where(Plugin.id == p.id),
    "a plugin's base_url": lambda p: Plugin.update(base_url="http://y.test").where(
        Plugin.id == p.id
    ),
    "a plugin's restriction": lambda p: Plugin.update(restricted=False).where(Plugin.id == p.id),
    "a plugin's plugin_id": lambda p: Plugin.update(plugin_id="renamed").where(Plugin.id == p.id),
    "a plugin deleted": lambda p: Plugin.delete().where(Plugin.id == p.id),
    "a route added": lambda p: Route.create(
        plugin=p, menu_id="more", method="GET", path="/more", role="viewer"
    ),
    "a route changed": lambda p: Route.update(label="Renamed").where(Route.plugin == p),
    "a route removed": lambda p: Route.delete().where(Route.path == "/notes/:id"),
    "an installation added": lambda p: Installation.create(
        plugin=p, tenant=Tenant.get(Tenant.slug == "default")
    ),
    "an installation made unavailable": lambda p: Installation.update(available=False),
    "an installation removed": lambda p: Installation.delete(),
    "a tenant created": lambda p: Tenant.create(slug="t3", name="T3"),
    "a tenant's slug": lambda p: Tenant.update(slug="t2b").where(Tenant.slug == "t2"),
    "a tenant deleted": lambda p: Tenant.delete().where(Tenant.slug == "t2"),
    "a collection declared": lambda p: Collection.create(
        plugin=p, name="more", schema={"type": "object"}, indexes=[]
    ),
    "a plugin token issued": lambda p: PluginToken.create(plugin=p, token_hash="h2"),
    "a signing key rotated": lambda p: SigningKeyRow.create(
        generation=99, kid="k99", alg="ES256", created_at=1.0, sign_from=1.0
    ),
}


@pytest.mark.parametrize("change", CHANGES)
def test_each_kind_of_registry_change_bumps_the_version(app, shell_plugin, change):
    plugin = shell_plugin(installed_in=["t2"])
    before = registry_version(app)
    with app.app_context():
        query = CHANGES[change](plugin)
        if hasattr(query, "execute"):
            query.execute()
    assert registry_version(app) > before


def test_a_health_check_does_not_bump_the_version(app, shell_plugin):
    """Probes update the plugin row every few seconds; views' caches must survive them."""
    plugin = shell_plugin()
    before = registry_version(app)
    with app.app_context():
        Plugin.update(consecutive_failures=2, last_health_at=utcnow(), last_health_ok=False).where(
            Plugin.id == plugin.id
        ).execute()
    assert registry_version(app) == before


def test_a_change_by_another_connection_is_seen_by_the_next_lookup(app, shell_plugin):
    """Another process writes with its own connection: the triggers are in the database."""
    shell_plugin()
    with app.app_context():
        assert [m.plugin_id for m in menu.menu_for("member", "default")] == ["notes"]
        proxy.resolve("notes", "GET", "/notes", role="member", tenant="default")
        with sqlite3.connect(app.config["DATABASE"]) as other:
            other.execute("UPDATE route SET label = 'Renamed' WHERE path = '/notes'")
        [entry] = menu.menu_for("member", "default")[0].entries
        assert entry.label == "Renamed"
        with sqlite3.connect(app.config["DATABASE"]) as other:
            other.execute("UPDATE plugin SET state = 'disabled'")
        assert menu.menu_for("member", "default") == []
        with pytest.raises(proxy.Unavailable):
            proxy.resolve("notes", "GET", "/notes", role="member", tenant="default")


def test_a_request_reads_the_version_once_unless_it_changes_the_registry(app, shell_plugin):
    shell_plugin()
    with app.test_request_context("/plugin-proxy/notes/notes"):
        statements: list[str] = []
        db.database.connection().set_trace_callback(statements.append)
        try:
            proxy.resolve("notes", "GET", "/notes", role="member", tenant="default")
            menu.menu_for("member", "default")
            first = registry_cache.current()
            reads = [s for s in statements if "registry_version" in s]
            assert len(reads) == 1, statements
            with db.write_transaction():  # this request's own change, as services write
                Plugin.update(name="Renamed").execute()
            assert registry_cache.current() != first
            assert menu.menu_for("member", "default")[0].name == "Renamed"
        finally:
            db.database.connection().set_trace_callback(None)


def test_the_next_request_reads_only_the_version_row(app, shell_plugin):
    shell_plugin(installed_in=["default"])
    for expected in (None, ["SELECT"]):
        with app.test_request_context("/plugin-proxy/notes/notes"):
            statements: list[str] = []
            db.database.connection().set_trace_callback(statements.append)
            try:
                proxy.resolve("notes", "GET", "/notes", role="member", tenant="default")
                menu.menu_for("member", "default")
            finally:
                db.database.connection().set_trace_callback(None)
        if expected:  # the second time: everything but the version comes from the cache
            assert len(statements) == 1 and "registry_version" in statements[0], statements


def test_a_cache_never_answers_for_another_database(app, shell_plugin, tmp_path):
    """Two databases may be at the same counter: the epoch and the file tell them apart."""
    shell_plugin()
    with app.app_context():
        first = registry_cache.current()
        assert menu.menu_for("member", "default")
    other = tmp_path / "other"
    other.mkdir()
    from extframework import create_app

    second_app = create_app(
        {"TESTING": True, "DATABASE": str(other / "core.sqlite3"), "HEALTH_MONITOR": False},
        instance_path=str(other / "instance"),
    )
    with second_app.app_context():
        db.upgrade()
        with db.database.connection_context():  # the same counter as the first database
            db.database.execute_sql("UPDATE registry_version SET version = ?", [first[2]])
        assert registry_cache.current() != first
        assert menu.menu_for("member", "default") == []


def test_version_8_adds_the_registry_version_and_its_triggers_keeping_every_plugin(
    app, shell_plugin
):
    shell_plugin()
    with app.app_context(), db.database.connection_context():
        for (name,) in db.database.execute_sql(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        ).fetchall():
            db.database.execute_sql(f'DROP TRIGGER "{name}"')
        db.database.execute_sql("DROP TABLE registry_version")
        db.SchemaVersion.update(version=7).execute()
    with app.app_context():
        assert db.upgrade() == (7, len(db.MIGRATIONS))
        assert db.upgrade() == (len(db.MIGRATIONS), len(db.MIGRATIONS))
        with db.database.connection_context():
            triggers = db.database.execute_sql(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
            ).fetchone()[0]
            assert [p.plugin_id for p in Plugin.select()] == ["notes"]
    assert triggers == sum(len(events) for events in db.REGISTRY_TRIGGERS.values())
    before = registry_version(app)
    with app.app_context():
        Plugin.update(state="disabled").execute()
    assert registry_version(app) == before + 1


# --- other processes: a gunicorn core with two workers ------------------------------------------


def poll(what: str, check, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def manifest(url: str, version: str, label: str) -> dict:
    return {
        "plugin_id": "notes",
        "name": "Notes",
        "version": version,
        "base_url": url,
        "menu_items": [{"id": "notes", "label": label, "view": {"path": "/notes"}}],
    }


@pytest.fixture
def demo(tmp_path):
    core = Demo(tmp_path)
    yield core
    core.stop()


def test_every_worker_sees_a_registry_change_on_its_next_request(demo):
    """Views go through both workers (their pooled plugin connections tell them apart)."""
    stub = StubPlugin()
    try:
        stub.reply("GET", "/health", body="ok", content_type="text/plain")
        stub.reply("GET", "/notes", body="<p>the notes</p>")
        answer = requests.post(
            demo.url + "/api/registry/plugins",
            json=manifest(stub.url, "1.0.0", "Notes"),
            headers={"Authorization": f"Bearer {demo.enrolment_key}"},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        plugin_token = answer.json()["plugin_token"]
        demo.wait_for_state("notes", "active")
        shell = login_session(demo.url, demo.admin, PASSWORD)
        cookies = shell.cookies

        def view() -> requests.Response:
            # A new connection each time: gunicorn hands it to either worker.
            return requests.get(
                demo.url + "/plugin-proxy/notes/notes",
                cookies=cookies,
                headers={"Connection": "close"},
                timeout=10,
            )

        def workers_seen(since: int) -> int:
            calls = stub.calls_to("GET", "/notes")[since:]
            return len({c.client_port for c in calls})

        # Both workers serve the view and cache what it looks up.
        poll("both workers served the view", lambda: view().ok and workers_seen(0) >= 2)

        # A menu item renamed through the API (a plugin update replaces its routes).
        renamed = requests.put(
            demo.url + "/api/registry/plugins/notes",
            json=manifest(stub.url, "1.0.1", "Renamed notes"),
            headers={"Authorization": f"Bearer {plugin_token}"},
            timeout=10,
        )
        assert renamed.status_code == 200, renamed.text
        since = len(stub.calls_to("GET", "/notes"))
        for _ in range(60):
            page = view()
            assert page.status_code == 200 and "Renamed notes" in page.text, page.text
            if workers_seen(since) >= 2:
                break
        assert workers_seen(since) >= 2, "the view did not go through both workers"

        # Disabled by an operator: the very next request through any worker refuses the view.
        demo.operator("notes", "disable")
        for _ in range(20):
            assert view().status_code == 503
        home = requests.get(demo.url + "/", cookies=cookies, timeout=10).text
        assert "Renamed notes" not in home
    finally:
        stub.close()


def test_a_plugin_tokens_grace_and_revocation_bump_the_version_and_its_last_use_not(
    app, shell_plugin
):
    plugin = shell_plugin()
    with app.app_context():
        PluginToken.create(plugin=plugin, token_hash="h1")
    for change, bumps in (
        (PluginToken.update(last_used_at=utcnow()), False),  # once a minute: keep the caches
        (PluginToken.update(expires_at=utcnow()), True),
        (PluginToken.update(revoked_at=utcnow()), True),
    ):
        before = registry_version(app)
        with app.app_context():
            assert change.execute() == 1
        assert (registry_version(app) > before) is bumps


def test_a_collection_changed_or_dropped_bumps_the_version(app, shell_plugin):
    plugin = shell_plugin()
    with app.app_context():
        Collection.create(plugin=plugin, name="more", schema={"type": "object"}, indexes=[])
    for change in (Collection.update(schema={"type": "array"}), Collection.delete()):
        before = registry_version(app)
        with app.app_context():
            assert change.execute() == 1
        assert registry_version(app) > before


def test_a_storage_call_sees_a_schema_changed_by_another_host_at_once(
    app, client, make_storage_plugin
):
    """The collection and the tenant check are cached for storage calls, under the version."""
    _, token = make_storage_plugin("acme-notes")
    headers = {"Authorization": f"Bearer {token}"}
    assert (
        client.post("/api/storage/notes", json={"title": "ok"}, headers=headers).status_code == 201
    )
    strict = '{"type": "object", "required": ["due"]}'
    with sqlite3.connect(app.config["DATABASE"]) as other_host:
        other_host.execute("UPDATE collection SET schema = ? WHERE name = 'notes'", [strict])
    refused = client.post("/api/storage/notes", json={"title": "no due"}, headers=headers)
    assert refused.status_code == 422, refused.get_json()
    with sqlite3.connect(app.config["DATABASE"]) as other_host:
        other_host.execute("DELETE FROM tenant WHERE slug = 'gone'")
        other_host.execute(
            "INSERT INTO tenant (slug, name, created_at) VALUES ('t9', 'T9', '2026-01-01')"
        )
    into_t9 = client.post(
        "/api/storage/notes", json={"due": 1}, headers={**headers, "X-Tenant-ID": "t9"}
    )
    assert into_t9.status_code == 201, into_t9.get_json()


def test_a_plugin_cannot_grow_the_caches_without_bound(
    app, client, make_storage_plugin, monkeypatch
):
    """Unknown tenants, collections and tokens are cached too (as misses): a hostile plugin
    sending new ones on every call empties the cache at its bound instead of growing it."""
    _, token = make_storage_plugin("acme-notes")
    monkeypatch.setattr(registry_cache, "MAX_ENTRIES", 50)
    headers = {"Authorization": f"Bearer {token}"}
    for n in range(80):
        tenant = {**headers, "X-Tenant-ID": f"nowhere-{n}"}
        assert client.get("/api/storage/notes", headers=tenant).status_code == 403
        assert client.get(f"/api/storage/nothing-{n}", headers=headers).status_code == 404
        stranger = {"Authorization": f"Bearer efpt_unknown{n:040d}"}
        assert client.get("/api/storage/notes", headers=stranger).status_code == 401
        assert len(registry_cache._cache[1]) <= 50
    assert client.get("/api/storage/notes", headers=headers).status_code == 200
