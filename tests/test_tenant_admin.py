"""A tenant's admin administers their own tenant and nothing else (docs/identity.md, "Roles").

Each refusal is checked twice: calling the service directly (services/tenant_admin.py, where the
rule lives) and through the console or API routes; stored users, policies and the audit log stay
as they were.
"""

import html

import pytest

from extframework import db
from extframework.authn import Identity
from extframework.db import database
from extframework.errors import Conflict, Forbidden, NotFound
from extframework.models import AuditEvent, Installation, Plugin, User
from extframework.services import installations, plugin_admin, tenant_admin
from tests.conftest import PASSWORD

NEW_PASSWORD = "another long password"
YES = {"confirm": "yes"}  # past the confirmation step (tests/test_confirm.py)


@pytest.fixture
def people(make_user):
    """Tenants acme and beta: an admin, a member and (in acme) an operator in each."""
    rows = {
        "ops": make_user("ops@example.com", role="admin", operator=True),
        "alice": make_user("alice@acme.test", role="admin", tenant="acme"),
        "amy": make_user("amy@acme.test", role="member", tenant="acme"),
        "aop": make_user("aop@acme.test", role="member", operator=True, tenant="acme"),
        "bob": make_user("bob@beta.test", role="admin", tenant="beta"),
        "bea": make_user("bea@beta.test", role="viewer", tenant="beta"),
    }
    return rows


@pytest.fixture
def plugins(app, make_plugin, people):
    """``test-plugin`` is in every tenant; ``test-plugin-2`` only in beta."""
    everywhere, _ = make_plugin()
    beta_only, _ = make_plugin()
    with app.app_context(), database.connection_context():
        plugin_admin.set_tenants(beta_only, ["beta"], actor="test")
    return everywhere, beta_only


def person(app, user) -> Identity:
    with app.app_context(), database.connection_context():
        row = User.get_by_id(user.id)
        return Identity(row.id, row.email, row.name, row.role, row.tenant.slug, row.is_operator)


def snapshot(app) -> tuple:
    """Everything a refused action must leave as it was."""
    with app.app_context(), database.connection_context():
        users = [
            (u.email, u.role, u.is_operator, u.is_active, u.password_hash, u.session_generation)
            for u in User.select().order_by(User.id)
        ]
        policies = [
            (i.plugin_id, i.tenant_id, i.uninstall_policy, i.available)
            for i in Installation.select().order_by(Installation.id)
        ]
        return users, policies, AuditEvent.select().count()


def call(app, fn, *args, **kwargs):
    with app.app_context(), database.connection_context():
        return fn(*args, **kwargs)


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


# --- the services -------------------------------------------------------------------------


def test_a_tenant_admin_lists_only_their_own_tenant_and_its_users(app, people):
    alice = person(app, people["alice"])
    assert [t.slug for t in call(app, tenant_admin.tenants, alice)] == ["acme"]
    listed = {u.email for u in call(app, tenant_admin.users, alice)}
    assert listed == {"alice@acme.test", "amy@acme.test", "aop@acme.test"}
    ops = person(app, people["ops"])
    assert {t.slug for t in call(app, tenant_admin.tenants, ops)} == {"default", "acme", "beta"}
    assert len(call(app, tenant_admin.users, ops)) == len(people)


@pytest.mark.parametrize(
    "action",
    [
        lambda p, ids: tenant_admin.user(p, ids["bob"]),
        lambda p, ids: tenant_admin.set_role(p, ids["bea"], "admin"),
        lambda p, ids: tenant_admin.set_active(p, ids["bob"], False),
        lambda p, ids: tenant_admin.set_password(p, ids["bea"], NEW_PASSWORD),
        lambda p, ids: tenant_admin.create_user(p, "x@beta.test", NEW_PASSWORD, tenant="beta"),
        lambda p, ids: tenant_admin.tenant_of(p, "beta"),
        lambda p, ids: tenant_admin.plugins(p, "beta"),
        lambda p, ids: tenant_admin.set_policy(p, "test-plugin", "beta", "purge"),
        lambda p, ids: tenant_admin.set_installed(p, "test-plugin", "beta", False),
        # a plugin that is not available to acme is not there for acme's admin
        lambda p, ids: tenant_admin.set_policy(p, "test-plugin-2", "acme", "purge"),
        lambda p, ids: tenant_admin.set_installed(p, "test-plugin-2", "acme", True),
    ],
    ids=[
        "see-user",
        "role",
        "deactivate",
        "password",
        "create",
        "tenant",
        "plugins",
        "policy",
        "uninstall",
        "policy-of-unavailable",
        "install-unavailable",
    ],
)
def test_a_tenant_admin_can_do_nothing_to_another_tenant(app, people, plugins, action):
    alice = person(app, people["alice"])
    ids = {name: user.id for name, user in people.items()}
    before = snapshot(app)
    with pytest.raises(NotFound):
        call(app, action, alice, ids)
    assert snapshot(app) == before


@pytest.mark.parametrize(
    "action",
    [
        lambda p, ids: tenant_admin.create_user(p, "x@acme.test", NEW_PASSWORD, operator=True),
        lambda p, ids: tenant_admin.set_role(p, ids["amy"], "member", operator=True),
        lambda p, ids: tenant_admin.set_role(p, ids["aop"], "admin"),
        lambda p, ids: tenant_admin.set_role(p, ids["aop"], "member", operator=False),
        lambda p, ids: tenant_admin.set_active(p, ids["aop"], False),
        lambda p, ids: tenant_admin.set_password(p, ids["aop"], NEW_PASSWORD),
    ],
    ids=[
        "create-operator",
        "make-operator",
        "operator-role",
        "drop-flag",
        "deactivate-operator",
        "operator-password",
    ],
)
def test_a_tenant_admin_cannot_make_or_change_an_operator(app, people, action):
    alice = person(app, people["alice"])
    ids = {name: user.id for name, user in people.items()}
    before = snapshot(app)
    with pytest.raises(Forbidden):
        call(app, action, alice, ids)
    assert snapshot(app) == before


@pytest.mark.parametrize(
    "action",
    [
        lambda p, ids: tenant_admin.users(p),
        lambda p, ids: tenant_admin.tenants(p),
        lambda p, ids: tenant_admin.user(p, ids["amy"]),
        lambda p, ids: tenant_admin.create_user(p, "x@acme.test", NEW_PASSWORD),
        lambda p, ids: tenant_admin.set_role(p, ids["amy"], "admin"),
        lambda p, ids: tenant_admin.set_active(p, ids["alice"], False),
        lambda p, ids: tenant_admin.set_password(p, ids["alice"], NEW_PASSWORD),
        lambda p, ids: tenant_admin.plugins(p, "acme"),
        lambda p, ids: tenant_admin.set_policy(p, "test-plugin", "acme", "purge"),
        lambda p, ids: tenant_admin.set_installed(p, "test-plugin", "acme", False),
    ],
)
def test_a_member_can_administer_nothing(app, people, plugins, action):
    amy = person(app, people["amy"])
    ids = {name: user.id for name, user in people.items()}
    before = snapshot(app)
    with pytest.raises(Forbidden):
        call(app, action, amy, ids)
    assert snapshot(app) == before


def test_a_tenant_admin_administers_their_own_tenant(app, people, plugins):
    alice = person(app, people["alice"])
    viewer = call(
        app, tenant_admin.create_user, alice, "vic@acme.test", NEW_PASSWORD, role="viewer"
    )
    assert (viewer.tenant.slug, viewer.role, viewer.is_operator) == ("acme", "viewer", False)
    assert call(app, tenant_admin.set_role, alice, viewer.id, "member").role == "member"
    assert call(app, tenant_admin.set_password, alice, viewer.id, PASSWORD).email == viewer.email
    assert not call(app, tenant_admin.set_active, alice, viewer.id, False).is_active
    assert call(app, tenant_admin.set_policy, alice, "test-plugin", "acme", "archive") == {
        "tenant": "acme",
        "policy": "archive",
    }
    listed = [
        (row["plugin"].plugin_id, row["installed"], row["policy"])
        for row in call(app, tenant_admin.plugins, alice, "acme")
    ]
    assert listed == [("test-plugin", True, "archive")]  # test-plugin-2 is beta's only
    with app.app_context(), database.connection_context():
        actors = {e.actor for e in AuditEvent.select().where(AuditEvent.actor.startswith("user:"))}
    assert actors == {"user:alice@acme.test"}


def test_a_tenant_admin_cannot_change_their_own_role(app, people):
    alice = person(app, people["alice"])
    before = snapshot(app)
    with pytest.raises(Conflict):
        call(app, tenant_admin.set_role, alice, alice.id, "member")
    assert snapshot(app) == before


# --- the console --------------------------------------------------------------------------


@pytest.fixture
def as_alice(client, login, people, plugins):
    assert login("alice@acme.test").status_code == 302
    return client


def test_the_console_shows_a_tenant_admin_only_their_tenant(as_alice):
    users = text(as_alice.get("/console/users"))
    assert "amy@acme.test" in users and "aop@acme.test" in users
    assert "beta" not in users and "bob@beta.test" not in users and "ops@example.com" not in users
    assert 'name="operator"' not in users  # no operator checkbox to tick
    tenants = text(as_alice.get("/console/tenants"))
    assert 'data-tenant="acme"' in tenants and "beta" not in tenants and "default" not in tenants
    assert 'data-testid="create-tenant"' not in tenants
    page = text(as_alice.get("/console/tenants/acme"))
    assert 'data-plugin="test-plugin"' in page and "test-plugin-2" not in page
    home = text(as_alice.get("/"))
    assert 'href="/console"' in home
    assert as_alice.get("/console").headers["Location"] == "/console/users"


@pytest.mark.parametrize(
    ("method", "path", "form"),
    [
        ("get", "/console/tenants/beta", {}),
        ("post", "/console/users/{bob}/role", {"role": "viewer", **YES}),
        ("post", "/console/users/{bea}/role", {"role": "admin"}),  # not even the question
        ("post", "/console/users/{bob}/deactivate", YES),
        ("post", "/console/users/{bea}/reactivate", {}),
        ("post", "/console/users/{bea}/password", {"password": NEW_PASSWORD, **YES}),
        (
            "post",
            "/console/users",
            {"email": "x@beta.test", "password": NEW_PASSWORD, "tenant": "beta"},
        ),
        (
            "post",
            "/console/tenants/beta/plugins/test-plugin/uninstall-policy",
            {"policy": "purge", **YES},
        ),
        (
            "post",
            "/console/tenants/acme/plugins/test-plugin-2/uninstall-policy",
            {"policy": "retain"},
        ),
    ],
)
def test_a_tenant_admins_console_routes_to_another_tenant_are_not_found(
    app, as_alice, people, method, path, form
):
    ids = {name: user.id for name, user in people.items()}
    before = snapshot(app)
    response = getattr(as_alice, method)(path.format(**ids), data=form)
    assert response.status_code == 404, text(response)[:300]
    assert "bob@beta.test" not in text(response)
    assert snapshot(app) == before


@pytest.mark.parametrize(
    ("method", "path", "form", "status"),
    [
        (
            "post",
            "/console/users",
            {"email": "x@acme.test", "password": NEW_PASSWORD, "operator": "on"},
            403,
        ),
        ("post", "/console/users/{amy}/role", {"role": "member", "operator": "on", **YES}, 403),
        ("post", "/console/users/{aop}/role", {"role": "admin", **YES}, 403),
        ("post", "/console/users/{aop}/deactivate", YES, 403),
        ("post", "/console/users/{aop}/password", {"password": NEW_PASSWORD, **YES}, 403),
        ("post", "/console/users/{alice}/role", {"role": "member", **YES}, 409),
        ("post", "/console/tenants", {"slug": "gamma"}, 403),
        ("get", "/console/plugins", {}, 403),
        ("get", "/console/plugins/test-plugin", {}, 403),
        (
            "post",
            "/console/plugins/test-plugin/uninstall-policy",
            {"tenant": "acme", "policy": "retain"},
            403,
        ),
        ("post", "/console/plugins/test-plugin/disable", YES, 403),
        ("get", "/console/enrolment-keys", {}, 403),
        ("get", "/console/audit", {}, 403),
    ],
)
def test_a_tenant_admin_cannot_reach_operators_or_installation_wide_pages(
    app, as_alice, people, method, path, form, status
):
    ids = {name: user.id for name, user in people.items()}
    before = snapshot(app)
    response = getattr(as_alice, method)(path.format(**ids), data=form)
    assert response.status_code == status, text(response)[:300]
    assert snapshot(app) == before


def test_a_tenant_admin_manages_their_users_and_policies_in_the_console(app, as_alice, people):
    created = as_alice.post(
        "/console/users",
        data={"email": "vic@acme.test", "password": NEW_PASSWORD, "role": "viewer", "tenant": ""},
    )
    assert created.status_code == 303
    with app.app_context(), database.connection_context():
        vic = User.get(User.email == "vic@acme.test")
        assert (vic.tenant.slug, vic.role, vic.is_operator) == ("acme", "viewer", False)
    assert (
        as_alice.post(f"/console/users/{vic.id}/role", data={"role": "member", **YES}).status_code
        == 303
    )
    assert as_alice.post(f"/console/users/{vic.id}/deactivate", data=YES).status_code == 303
    policy = as_alice.post(
        "/console/tenants/acme/plugins/test-plugin/uninstall-policy", data={"policy": "archive"}
    )
    assert policy.status_code == 303
    assert 'data-testid="policy">archive<' in as_alice.get("/console/tenants/acme").get_data(
        as_text=True
    )
    with app.app_context(), database.connection_context():
        vic = User.get(User.email == "vic@acme.test")
        assert (vic.role, vic.is_active) == ("member", False)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/console/users"),
        ("get", "/console/tenants"),
        ("get", "/console/tenants/acme"),
        ("post", "/console/users"),
        ("post", "/console/users/{alice}/role"),
        ("post", "/console/users/{alice}/deactivate"),
        ("post", "/console/users/{alice}/password"),
        ("post", "/console/tenants/acme/plugins/test-plugin/uninstall-policy"),
    ],
)
def test_a_member_gets_no_console(app, client, login, people, plugins, method, path):
    login("amy@acme.test")
    ids = {name: user.id for name, user in people.items()}
    form = {
        "email": "x@acme.test",
        "password": NEW_PASSWORD,
        "role": "admin",
        "policy": "purge",
        **YES,
    }
    before = snapshot(app)
    response = getattr(client, method)(path.format(**ids), data=form)
    assert response.status_code == 403
    assert snapshot(app) == before
    assert 'href="/console' not in text(client.get("/"))


# --- the API ------------------------------------------------------------------------------


def test_the_uninstall_policy_api_follows_the_same_rule(app, client, user_token, people, plugins):
    url = "/api/registry/plugins/{}/tenants/{}/uninstall-policy"
    alice = {"Authorization": f"Bearer {user_token('alice@acme.test')}"}
    amy = {"Authorization": f"Bearer {user_token('amy@acme.test')}"}
    before = snapshot(app)
    for plugin_id, tenant in [
        ("test-plugin", "beta"),
        ("test-plugin-2", "acme"),
        ("test-plugin-2", "beta"),
    ]:
        refused = client.put(url.format(plugin_id, tenant), json={"policy": "purge"}, headers=alice)
        assert refused.status_code == 404 and refused.mimetype == "application/problem+json"
    refused = client.put(url.format("test-plugin", "acme"), json={"policy": "purge"}, headers=amy)
    assert refused.status_code == 403 and refused.mimetype == "application/problem+json"
    assert snapshot(app) == before
    done = client.put(url.format("test-plugin", "acme"), json={"policy": "archive"}, headers=alice)
    assert done.status_code == 200
    assert done.get_json()["uninstall_policies"] == [
        {"tenant": "acme", "policy": "archive", "documents": 0}
    ]


# --- installing and uninstalling among the plugins available to the tenant ----------------


def storage_status(client, token: str, tenant: str) -> int:
    headers = {"Authorization": f"Bearer {token}", "X-Tenant-ID": tenant}
    return client.get("/api/storage/items", headers=headers).status_code


def test_a_tenant_admin_uninstalls_a_plugin_from_their_tenant_only(
    app, client, login, make_plugin, people
):
    plugin, token = make_plugin()
    alice = person(app, people["alice"])
    login("amy@acme.test")
    assert 'href="/plugin-proxy/test-plugin/items"' in text(client.get("/"))
    assert storage_status(client, token, "acme") == 200

    assert call(app, tenant_admin.set_installed, alice, "test-plugin", "acme", False) is True
    assert call(app, tenant_admin.set_installed, alice, "test-plugin", "acme", False) is False
    assert 'href="/plugin-proxy/test-plugin/items"' not in text(client.get("/"))
    assert client.get("/plugin-proxy/test-plugin/items").status_code == 404
    assert storage_status(client, token, "acme") == 403
    assert storage_status(client, token, "beta") == 200  # other tenants keep it
    assert storage_status(client, token, "default") == 200
    listed = call(app, tenant_admin.plugins, alice, "acme")
    assert [(r["plugin"].plugin_id, r["installed"]) for r in listed] == [("test-plugin", False)]

    assert call(app, tenant_admin.set_installed, alice, "test-plugin", "acme", True) is True
    assert storage_status(client, token, "acme") == 200
    assert 'href="/plugin-proxy/test-plugin/items"' in text(client.get("/"))
    with app.app_context(), database.connection_context():
        actions = [
            e.action
            for e in AuditEvent.select()
            .where(AuditEvent.actor == "user:alice@acme.test")
            .order_by(AuditEvent.id)
        ]
    assert actions == ["tenant.uninstall_plugin", "tenant.install_plugin"]


def test_an_operators_restriction_outranks_a_tenants_install(app, make_plugin, people):
    plugin, _ = make_plugin()
    alice = person(app, people["alice"])
    call(app, tenant_admin.set_installed, alice, "test-plugin", "acme", True)  # a no-op
    with app.app_context(), database.connection_context():
        plugin_admin.set_tenants(plugin, ["beta"], actor="test")
    with pytest.raises(NotFound):
        call(app, tenant_admin.set_installed, alice, "test-plugin", "acme", True)
    with app.app_context(), database.connection_context():
        assert not installations.is_installed(Plugin.get_by_id(plugin.id), "acme")
    assert call(app, tenant_admin.plugins, alice, "acme") == []


def test_the_tenant_page_installs_and_uninstalls_with_a_confirmation(app, as_alice):
    page = text(as_alice.get("/console/tenants/acme"))
    assert 'action="/console/tenants/acme/plugins/test-plugin/uninstall"' in page
    before = snapshot(app)
    asked = as_alice.post("/console/tenants/acme/plugins/test-plugin/uninstall")
    assert asked.status_code == 200 and "Really uninstall test-plugin" in text(asked)
    assert snapshot(app) == before
    done = as_alice.post("/console/tenants/acme/plugins/test-plugin/uninstall", data=YES)
    assert done.status_code == 303
    page = text(as_alice.get("/console/tenants/acme"))
    assert "test-plugin is now uninstalled from acme." in page
    assert 'action="/console/tenants/acme/plugins/test-plugin/install"' in page
    assert as_alice.post("/console/tenants/acme/plugins/test-plugin/install").status_code == 303
    with app.app_context(), database.connection_context():
        assert installations.is_installed(Plugin.get(Plugin.plugin_id == "test-plugin"), "acme")
    for path in (
        "/console/tenants/beta/plugins/test-plugin/uninstall",
        "/console/tenants/acme/plugins/test-plugin-2/install",
    ):
        before = snapshot(app)
        assert as_alice.post(path, data=YES).status_code == 404, path
        assert snapshot(app) == before


def test_schema_step_9_upgrades_with_every_installation_installed(app, make_plugin, people):
    """A version-8 database (no ``installation.installed``) upgrades with nothing uninstalled."""
    plugin, _ = make_plugin()
    with app.app_context(), db.database.connection_context():
        plugin_admin.set_tenants(plugin, ["acme", "beta"], actor="test")
        db.database.execute_sql('ALTER TABLE "installation" DROP COLUMN "installed"')
        db.SchemaVersion.update(version=8).execute()
    with app.app_context():
        assert db.upgrade() == (8, len(db.MIGRATIONS))
        with db.database.connection_context():
            rows = db.database.execute_sql("SELECT installed FROM installation").fetchall()
            assert rows == [(1,), (1,)]
            restricted = Plugin.get_by_id(plugin.id)
            assert installations.is_installed(restricted, "acme")
            assert not installations.is_installed(restricted, "default")
