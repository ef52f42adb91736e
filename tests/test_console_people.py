"""The operator console's users, tenants and audit-log pages, and the audit events they write."""

import html
import json
import re

import pytest

from extframework.db import database
from extframework.models import AuditEvent, Tenant, User
from tests.conftest import PASSWORD

OPS = "ops@example.com"
NEW_PASSWORD = "a long enough password"


@pytest.fixture
def operator(make_user, login):
    user = make_user(OPS, role="admin", operator=True)
    login(OPS)
    return user


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def new_user_form(**overrides) -> dict:
    form = {
        "email": "ann@example.com",
        "name": "Ann",
        "role": "member",
        "tenant": "default",
        "password": NEW_PASSWORD,
    }
    return {**form, **overrides}


def events(action_prefix: str) -> list[AuditEvent]:
    """Return the events the console wrote (fixtures create users as the "system" actor)."""
    query = AuditEvent.select().where(
        AuditEvent.action.startswith(action_prefix), AuditEvent.actor != "system"
    )
    return list(query.order_by(AuditEvent.id))


PAGES = ["/console/users", "/console/tenants", "/console/audit"]
POSTS = [
    "/console/users",
    "/console/users/1/role",
    "/console/users/1/deactivate",
    "/console/users/1/reactivate",
    "/console/tenants",
]


def test_people_pages_need_a_logged_in_operator_or_admin(app, client, make_user, login):
    for url in PAGES:
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url
    for url in POSTS:
        response = client.post(url, data=new_user_form(slug="acme"))
        assert response.status_code == 302 and "/login" in response.headers["Location"], url
    make_user("member@example.com", role="member")  # tenant admins: tests/test_tenant_admin.py
    login("member@example.com")
    for url in PAGES:
        response = client.get(url)
        assert response.status_code == 403 and response.mimetype == "text/html", url
    for url in POSTS:
        assert client.post(url, data=new_user_form(slug="acme")).status_code == 403, url
    with app.app_context(), database.connection_context():
        assert User.select().count() == 1
        assert Tenant.select().count() == 1
        assert User.get().role == "member" and User.get().is_active


def test_nav_links_to_the_three_pages(client, operator):
    page = client.get("/console/plugins").get_data(as_text=True)
    for url in PAGES:
        assert f'href="{url}"' in page, url
    users = client.get("/console/users").get_data(as_text=True)
    assert 'href="/console/users" aria-current="page"' in users


def test_users_page_lists_accounts_without_passwords(app, client, operator, make_user):
    make_user("bob@example.com", role="viewer", tenant="acme")
    page = text(client.get("/console/users"))
    row = re.search(r'<tr data-user="bob@example.com">(.*?)</tr>', page, re.S).group(1)
    cells = [c.strip() for c in re.findall(r"<td>(.*?)</td>", row, re.S)[:7]]
    assert cells[:6] == ["bob@example.com", "", "viewer", "acme", "no", "yes"]
    # relative, with the exact time in the markup (issue 17)
    assert re.fullmatch(
        r'<time datetime="\d{4}-\d\d-\d\dT[\d:.]+Z" title="[^"]+">just now</time>', cells[6]
    )
    assert 'data-user="ops@example.com"' in page
    with app.app_context(), database.connection_context():
        hashes = [u.password_hash for u in User.select()]
    assert PASSWORD not in page and "scrypt" not in page
    assert not any(h in page for h in hashes)


def test_creating_a_user_stores_it_and_audits_who_did_it(app, client, operator):
    form = new_user_form(email="Ann@Example.com", role="admin", tenant="default", operator="on")
    response = client.post("/console/users", data=form)
    assert response.status_code == 303 and response.headers["Location"].endswith("/console/users")
    page = text(client.get("/console/users"))
    assert "Created user ann@example.com." in page
    with app.app_context(), database.connection_context():
        user = User.get(User.email == "ann@example.com")
        assert (user.name, user.role, user.is_operator, user.tenant.slug) == (
            "Ann",
            "admin",
            True,
            "default",
        )
        [event] = events("user.create")
    assert (event.actor, event.target) == (f"user:{OPS}", "user:ann@example.com")
    assert event.detail == {"role": "admin", "operator": True, "tenant": "default", "name": "Ann"}
    assert NEW_PASSWORD not in json.dumps(event.detail)
    assert client.post("/logout").status_code == 302
    assert (
        client.post(
            "/login", data={"email": "ann@example.com", "password": NEW_PASSWORD}
        ).status_code
        == 302
    )


@pytest.mark.parametrize(
    ("overrides", "status", "message"),
    [
        ({"email": OPS}, 409, f"A user with email '{OPS}' exists already."),
        ({"email": "not-an-email"}, 422, "email: an email address needs one @"),
        ({"password": "short"}, 422, "password: at least 8 characters"),
        ({"tenant": "nowhere"}, 404, "No tenant 'nowhere'."),
        ({"role": "superuser"}, 422, "role: one of viewer, member, admin"),
        ({"name": "x" * 201}, 422, "name: at most 200 characters"),
    ],
)
def test_bad_user_input_rerenders_the_form_and_stores_nothing(
    app, client, operator, overrides, status, message
):
    form = new_user_form(**overrides)
    response = client.post("/console/users", data=form)
    assert response.status_code == status
    page = text(response)
    assert message in page
    assert 'data-testid="create-user"' in page
    if "email" in overrides:
        assert f'value="{overrides["email"]}"' in page
    assert NEW_PASSWORD not in page and "short" not in page.split('data-testid="create-user"')[1]
    with app.app_context(), database.connection_context():
        assert [u.email for u in User.select()] == [OPS]
        assert events("user.") == []


def test_changing_a_role_and_operator_flag_is_audited(app, client, operator, make_user):
    bob = make_user("bob@example.com", role="viewer")
    response = client.post(
        f"/console/users/{bob.id}/role", data={"confirm": "yes", "role": "admin", "operator": "on"}
    )
    assert response.status_code == 303
    assert "bob@example.com is now admin, operator." in text(client.get("/console/users"))
    same = client.post(
        f"/console/users/{bob.id}/role", data={"confirm": "yes", "role": "admin", "operator": "on"}
    )
    assert same.status_code == 303
    with app.app_context(), database.connection_context():
        bob = User.get_by_id(bob.id)
        assert (bob.role, bob.is_operator) == ("admin", True)
        [event] = events("user.set_role")
    assert (event.actor, event.target) == (f"user:{OPS}", "user:bob@example.com")
    assert event.detail == {"role": ["viewer", "admin"], "operator": [False, True]}


def test_an_unknown_role_or_user_is_refused_and_nothing_changes(app, client, operator, make_user):
    bob = make_user("bob@example.com", role="viewer")
    response = client.post(
        f"/console/users/{bob.id}/role", data={"confirm": "yes", "role": "owner"}
    )
    assert response.status_code == 422
    assert "Unknown role 'owner'." in text(response)
    missing = client.post("/console/users/999/role", data={"confirm": "yes", "role": "admin"})
    assert missing.status_code == 404 and "No user with id 999." in text(missing)
    assert client.post("/console/users/999/deactivate", data={"confirm": "yes"}).status_code == 404
    with app.app_context(), database.connection_context():
        assert User.get_by_id(bob.id).role == "viewer"
        assert events("user.") == []


def test_an_operator_cannot_lock_themselves_out(app, client, operator):
    refused = client.post(f"/console/users/{operator.id}/deactivate", data={"confirm": "yes"})
    assert refused.status_code == 409
    assert "You cannot deactivate your own account; ask another operator." in text(refused)
    demoted = client.post(
        f"/console/users/{operator.id}/role", data={"confirm": "yes", "role": "admin"}
    )
    assert demoted.status_code == 409
    assert "You cannot remove your own operator flag; ask another operator." in text(demoted)
    with app.app_context(), database.connection_context():
        me = User.get_by_id(operator.id)
        assert me.is_active and me.is_operator
        assert events("user.") == []
    assert client.get("/console/users").status_code == 200
    # Changing one's own tenant role while keeping the flag is allowed.
    own_role = client.post(
        f"/console/users/{operator.id}/role",
        data={"confirm": "yes", "role": "member", "operator": "on"},
    )
    assert own_role.status_code == 303


def test_deactivating_ends_a_session_and_reactivating_restores_login(
    app, make_user, operator, client
):
    other_ops = make_user("second@example.com", role="admin", operator=True)
    second = app.test_client()
    assert (
        second.post(
            "/login", data={"email": "second@example.com", "password": PASSWORD}
        ).status_code
        == 302
    )
    assert second.get("/console/users").status_code == 200

    assert (
        client.post(
            f"/console/users/{other_ops.id}/deactivate", data={"confirm": "yes"}
        ).status_code
        == 303
    )
    assert "second@example.com is deactivated." in text(client.get("/console/users"))
    locked_out = second.get("/console/users")
    assert locked_out.status_code == 302 and "/login" in locked_out.headers["Location"]
    again = second.post("/login", data={"email": "second@example.com", "password": PASSWORD})
    assert again.status_code == 401
    page = text(client.get("/console/users"))
    row = re.search(r'<tr data-user="second@example.com">(.*?)</tr>', page, re.S).group(1)
    assert f"/console/users/{other_ops.id}/reactivate" in row

    assert client.post(f"/console/users/{other_ops.id}/reactivate").status_code == 303
    assert (
        second.post(
            "/login", data={"email": "second@example.com", "password": PASSWORD}
        ).status_code
        == 302
    )
    with app.app_context(), database.connection_context():
        actions = [(e.action, e.actor, e.target) for e in events("user.")]
    assert actions == [
        ("user.deactivate", f"user:{OPS}", "user:second@example.com"),
        ("user.reactivate", f"user:{OPS}", "user:second@example.com"),
    ]


def test_tenants_page_counts_users_and_creates_tenants(app, client, operator, make_user):
    make_user("a@example.com", tenant="acme")
    make_user("b@example.com", tenant="acme")
    response = client.post("/console/tenants", data={"slug": "east-coast", "name": "East Coast"})
    assert response.status_code == 303 and response.headers["Location"].endswith("/console/tenants")
    page = text(client.get("/console/tenants"))
    assert "Created tenant east-coast." in page
    counts = dict(
        re.findall(r'data-tenant="([^"]+)">.*?data-testid="user-count">(\d+)<', page, re.S)
    )
    assert counts == {"acme": "2", "default": "1", "east-coast": "0"}
    assert "East Coast" in page
    with app.app_context(), database.connection_context():
        [event] = events("tenant.create")
    assert (event.actor, event.target, event.detail) == (
        f"user:{OPS}",
        "tenant:east-coast",
        {"name": "East Coast"},
    )
    users_page = text(client.get("/console/users"))
    assert '<option value="east-coast"' in users_page


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"slug": "Bad Slug"}, 422, "A tenant slug is lowercase words joined by single hyphens."),
        ({"slug": "a--b"}, 422, "A tenant slug is lowercase words joined by single hyphens."),
        ({"slug": "default"}, 409, "Tenant 'default' exists already."),
        ({"slug": "ok", "name": "n" * 201}, 422, "name: at most 200 characters"),
    ],
)
def test_bad_tenant_input_rerenders_the_form_and_stores_nothing(
    app, client, operator, form, status, message
):
    response = client.post("/console/tenants", data=form)
    assert response.status_code == status
    page = text(response)
    assert message in page and 'data-testid="create-tenant"' in page
    assert f'value="{form["slug"]}"' in page
    with app.app_context(), database.connection_context():
        assert [t.slug for t in Tenant.select()] == ["default"]
        assert events("tenant.") == []


def test_audit_page_shows_newest_first_with_compact_detail(app, client, operator):
    client.post("/console/tenants", data={"slug": "acme", "name": "Acme"})
    client.post("/console/users", data=new_user_form(tenant="acme"))
    page = text(client.get("/console/audit"))
    rows = re.findall(r'<tr data-event="\d+">(.*?)</tr>', page, re.S)
    assert len(rows) == 4  # the oldest two: the operator fixture's account and its login
    assert "<td>system</td>" in rows[3] and "user:ops@example.com" in rows[3]
    assert "auth.login" in rows[2]
    assert "user.create" in rows[0] and "tenant.create" in rows[1]
    when = r'<td><time datetime="[\dT:-]+Z" title="[\d :-]+ UTC">just now</time></td>'
    assert re.search(when + "<td>user:ops@example.com</td>", rows[0])
    assert "user:ann@example.com" in rows[0]
    assert '<code>{"name":"Ann","operator":false,"role":"member","tenant":"acme"}</code>' in rows[0]
    assert '<code>{"name":"Acme"}</code>' in rows[1]


def test_audit_page_filters_by_action_prefix_and_target(app, client, operator):
    with app.app_context(), database.connection_context():
        AuditEvent.create(
            actor="cli", action="tenant.create", target="tenant:acme", detail={"name": "Acme"}
        )
        AuditEvent.create(
            actor="user:x@example.com", action="user.create", target="user:a@example.com"
        )
        AuditEvent.create(
            actor="user:x@example.com", action="user.deactivate", target="user:a@example.com"
        )
        AuditEvent.create(
            actor="user:x@example.com", action="user.create", target="user:b@example.com"
        )
        AuditEvent.create(actor="plugin:demo", action="plugin.transition", target="demo")
        AuditEvent.create(actor="cli", action="userx.odd", target="user:a@example.com")

    def shown(**params) -> list[str]:
        page = text(client.get("/console/audit", query_string=params))
        return re.findall(r'<tr data-event="\d+">.*?<td><a [^>]*>([^<]+)</a>', page, re.S)

    # The fourth is the operator fixture's own account.
    assert shown(action="user.") == ["user.create", "user.deactivate", "user.create", "user.create"]
    assert shown(target="user:a@example.com") == ["userx.odd", "user.deactivate", "user.create"]
    assert shown(action="user.", target="user:a@example.com") == ["user.deactivate", "user.create"]
    assert shown(action="user_") == []
    assert shown(action="%") == []
    assert "No events match the filter." in text(client.get("/console/audit?action=nothing"))


def test_audit_page_pages_by_100_with_before(app, client, operator):
    with app.app_context(), database.connection_context():
        for i in range(250):
            AuditEvent.create(actor="cli", action="test.event", target=f"t{i}", detail={"i": i})
        ids = [e.id for e in AuditEvent.select().order_by(AuditEvent.id)]
    assert len(ids) == 252  # with the operator fixture's user.create and auth.login
    first = text(client.get("/console/audit"))
    first_ids = [int(i) for i in re.findall(r'<tr data-event="(\d+)">', first)]
    assert first_ids == ids[::-1][:100]
    older = re.search(r'href="([^"]+)" rel="next"', first).group(1)
    assert older == f"/console/audit?before={ids[152]}"
    second = text(client.get(older))
    assert [int(i) for i in re.findall(r'<tr data-event="(\d+)">', second)] == ids[::-1][100:200]
    third_url = re.search(r'href="([^"]+)" rel="next"', second).group(1)
    third = text(client.get(third_url))
    assert [int(i) for i in re.findall(r'<tr data-event="(\d+)">', third)] == ids[::-1][200:]
    assert 'rel="next"' not in third
    filtered = text(client.get("/console/audit?action=test.&target=t5"))
    assert re.findall(r'<tr data-event="(\d+)">', filtered) == [str(ids[7])]
    bad = client.get("/console/audit?before=abc")
    assert bad.status_code == 400 and "'before' is the id of an audit event." in text(bad)


def test_pagination_keeps_the_filter(app, client, operator):
    with app.app_context(), database.connection_context():
        for i in range(101):
            AuditEvent.create(actor="cli", action="user.create", target=f"user:u{i}@example.com")
            AuditEvent.create(actor="cli", action="tenant.create", target=f"tenant:t{i}")
    first = text(client.get("/console/audit?action=user."))
    older = re.search(r'href="([^"]+)" rel="next"', first).group(1)
    assert "action=user." in older
    rows = re.findall(
        r'<tr data-event="\d+">.*?<td><a [^>]*>([^<]+)</a>', text(client.get(older)), re.S
    )
    assert rows == ["user.create", "user.create"]  # the last is the operator fixture's


def test_a_form_post_without_the_csrf_token_is_refused(app, client, operator):
    app.config["WTF_CSRF_ENABLED"] = True
    refused = client.post("/console/users", data=new_user_form())
    assert refused.status_code == 400 and "CSRF" in text(refused)
    refused_tenant = client.post("/console/tenants", data={"slug": "acme"})
    assert refused_tenant.status_code == 400
    with app.app_context(), database.connection_context():
        assert User.select().count() == 1 and Tenant.select().count() == 1
    form_page = client.get("/console/users").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form_page).group(1)
    accepted = client.post("/console/users", data={**new_user_form(), "csrf_token": token})
    assert accepted.status_code == 303
    with app.app_context(), database.connection_context():
        assert User.select().count() == 2


def test_cli_commands_record_the_cli_as_actor(app, runner):
    tenant = runner.invoke(args=["tenants", "create", "acme", "--name", "Acme"])
    assert tenant.exit_code == 0, tenant.output
    user = runner.invoke(
        args=["users", "create", "Cli@Example.com", "--tenant", "acme", "--name", "Cli User"],
        env={"EXTFW_PASSWORD": NEW_PASSWORD},
    )
    assert user.exit_code == 0, user.output
    admin = runner.invoke(args=["users", "bootstrap-admin"], env={"EXTFW_ADMIN_PASSWORD": ""})
    assert admin.exit_code == 0 and "Users exist already" in admin.output
    with app.app_context(), database.connection_context():
        found = [(e.actor, e.action, e.target, e.detail) for e in AuditEvent.select()]
        assert User.get(User.email == "cli@example.com").name == "Cli User"
    assert found == [
        ("cli", "tenant.create", "tenant:acme", {"name": "Acme"}),
        (
            "cli",
            "user.create",
            "user:cli@example.com",
            {"role": "member", "operator": False, "tenant": "acme", "name": "Cli User"},
        ),
    ]
