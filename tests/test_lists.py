"""The console's plugin, enrolment-key and audit-log lists: search, sort and paging (issue 17)."""

import html
import re

import pytest

from extframework.db import database
from extframework.models import AuditEvent, HealthCheck, Plugin
from extframework.services import enrolment, listing

OPS = "ops@example.com"


@pytest.fixture
def operator(make_user, login):
    make_user(OPS, role="admin", operator=True)
    login(OPS)


def page(client, url: str, **params) -> str:
    response = client.get(url, query_string=params or None)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return html.unescape(response.get_data(as_text=True))


def plugin_ids(body: str) -> list[str]:
    return re.findall(r'<tr data-plugin="([^"]+)">', body)


def key_ids(body: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-key="(\d+)">', body)]


def event_ids(body: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-event="(\d+)">', body)]


@pytest.fixture
def many_plugins(make_plugin):
    """60 plugins: "Plugin 00".."Plugin 59", every tenth one disabled, one named Zebra."""
    for n in range(60):
        state = "disabled" if n % 10 == 0 else "active"
        make_plugin(plugin_id=f"plugin-{n:02d}", name=f"Plugin {n:02d}", state=state)
    make_plugin(plugin_id="zebra", name="Zebra stripes")


def test_plugin_list_pages_by_fifty_in_name_order(client, operator, many_plugins):
    first = page(client, "/console/plugins")
    assert plugin_ids(first) == [f"plugin-{n:02d}" for n in range(50)]
    assert "Page 1 of 2" in first and "61 found" in first
    next_url = re.search(r'href="([^"]+)" rel="next"', first).group(1)
    second = page(client, next_url)
    assert plugin_ids(second) == [f"plugin-{n:02d}" for n in range(50, 60)] + ["zebra"]
    assert 'rel="next"' not in second and 'rel="prev"' in second
    # The same query string after a reload gives the same page.
    assert plugin_ids(page(client, next_url)) == plugin_ids(second)


def test_plugin_list_search_narrows_and_keeps_the_sort(client, operator, many_plugins):
    assert plugin_ids(page(client, "/console/plugins", q="zEBRA")) == ["zebra"]
    disabled = page(client, "/console/plugins", q="disabled", sort="name", dir="desc")
    assert plugin_ids(disabled) == [f"plugin-{n:02d}" for n in (50, 40, 30, 20, 10, 0)]
    assert "6 found" in disabled
    # The sort links carry the search.
    assert 'href="/console/plugins?q=disabled&sort=state&dir=asc"' in disabled
    assert "No plugin matches “100%”" in page(client, "/console/plugins", q="100%")


def test_plugin_list_sorts_by_an_allowed_column_both_ways(client, operator, many_plugins):
    by_state = plugin_ids(page(client, "/console/plugins", sort="state"))
    assert by_state[:6] == [f"plugin-{n:02d}" for n in range(1, 7)]  # active before disabled
    assert plugin_ids(page(client, "/console/plugins", sort="plugin_id", dir="desc"))[0] == "zebra"
    by_state_desc = page(client, "/console/plugins", sort="state", dir="desc")
    assert plugin_ids(by_state_desc)[:6] == [f"plugin-{n:02d}" for n in (50, 40, 30, 20, 10, 0)]
    assert 'aria-sort="descending"' in by_state_desc


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "name; DROP TABLE plugin"},
        {"sort": "password_hash"},
        {"sort": "__class__", "dir": "sideways"},
        {"dir": "desc)"},
        {"page": "-3"},
        {"page": "abc"},
        {"page": "٣"},
        {"page": "99999999999999999999"},
        {"q": "%' OR 1=1 --"},
    ],
)
def test_hostile_list_arguments_fall_back_to_the_default(client, operator, make_plugin, params):
    for n in range(3):
        make_plugin(plugin_id=f"plugin-{n}", name=f"Plugin {n}")
    body = page(client, "/console/plugins", **params)
    if "q" in params:
        assert plugin_ids(body) == [] and "No plugin matches" in body
    elif params.get("page") == "99999999999999999999":
        assert plugin_ids(body) == [] and "on page 100000" in body
    else:
        assert plugin_ids(body) == ["plugin-0", "plugin-1", "plugin-2"]
    assert page(client, "/console/enrolment-keys", **params)
    assert page(client, "/console/audit", **params)


def test_enrolment_keys_search_sort_and_page(app, client, operator):
    with app.app_context(), database.connection_context():
        ids = [
            enrolment.create_key(actor="test", label=f"key {n:02d}", plugin_id=f"p{n % 3}")[0].id
            for n in range(55)
        ]
    newest = page(client, "/console/enrolment-keys")
    assert key_ids(newest) == ids[::-1][:50] and "Page 1 of 2" in newest
    second = page(client, "/console/enrolment-keys", page="2")
    assert key_ids(second) == ids[::-1][50:]
    by_label = key_ids(page(client, "/console/enrolment-keys", sort="label", dir="asc"))
    assert by_label == ids[:50]
    only_p1 = key_ids(page(client, "/console/enrolment-keys", q="p1", sort="id", dir="asc"))
    assert only_p1 == [i for n, i in enumerate(ids) if n % 3 == 1]


def test_audit_log_search_and_sort_with_page_numbers(app, client, operator):
    with app.app_context(), database.connection_context():
        for n in range(120):
            AuditEvent.create(actor=f"cli-{n % 2}", action="test.event", target=f"t{n:03d}")
        AuditEvent.create(actor="cli", action="other.event", target="needle")
    found = page(client, "/console/audit", q="NEEDLE")
    assert len(event_ids(found)) == 1 and "other.event" in found
    by_target = page(client, "/console/audit", sort="target", dir="asc", q="t0")
    targets = re.findall(r'<tr data-event="\d+">.*?target=(t\d+)', by_target, re.S)
    assert targets == [f"t{n:03d}" for n in range(100)]
    assert "Page 1 of 1" not in by_target  # exactly 100: one page, no pager
    by_actor = page(client, "/console/audit", sort="actor", dir="desc", q="cli-")
    assert "Page 1 of 2" in by_actor
    nxt = re.search(r'href="([^"]+)" rel="next"', by_actor).group(1)
    assert "page=2" in nxt and "q=cli-" in nxt
    rest = page(client, nxt)
    assert len(event_ids(rest)) == 20 and "cli-1" not in rest.split("<tbody>")[1]
    # A reload gives the same rows (not the same bytes: the CSRF token carries the second).
    assert event_ids(page(client, nxt)) == event_ids(rest)


def test_listing_parse_keeps_only_allowed_values():
    view = listing.parse(
        {"q": "  x ", "sort": "evil", "dir": "up", "page": "0"}, sorts=["a", "b"], default_sort="b"
    )
    assert (view.q, view.sort, view.dir, view.page) == ("x", "b", "asc", 1)
    view = listing.parse({"sort": "a", "dir": "desc", "page": "7"}, sorts=["a"], default_sort="a")
    assert view.args() == {"q": None, "sort": "a", "dir": "desc", "page": 7}
    assert view.sorted_by("a") == {"q": None, "sort": "a", "dir": "asc"}


def test_plugin_list_shows_each_plugins_newest_health_check(app, client, operator, make_plugin):
    for n in range(3):
        make_plugin(plugin_id=f"plugin-{n}", name=f"Plugin {n}")
    with app.app_context(), database.connection_context():
        for plugin in Plugin.select():
            for k in range(3):
                ok = k < 2 or plugin.plugin_id != "plugin-1"
                HealthCheck.create(plugin=plugin, ok=ok, detail=f"{plugin.plugin_id} check {k}")
    body = page(client, "/console/plugins")
    cells = re.findall(r'<td data-live-health="([^"]+)">(.*?)</td>', body, re.S)
    assert [plugin_id for plugin_id, _ in cells] == ["plugin-0", "plugin-1", "plugin-2"]
    said = dict(cells)
    assert "ok ·" in said["plugin-0"] and "failed ·" in said["plugin-1"]
    assert "plugin-1 check 2" in said["plugin-1"]  # a failure shows its reason


def user_emails(body: str) -> list[str]:
    return re.findall(r'<tr data-user="([^"]+)">', body)


def tenant_slugs(body: str) -> list[str]:
    return re.findall(r'<tr data-tenant="([^"]+)">', body)


@pytest.fixture
def many_users(make_user):
    """55 members of acme (u00..u54), 3 of beta, and the operator in default."""
    for n in range(55):
        make_user(f"u{n:02d}@acme.test", tenant="acme", role="viewer" if n % 5 else "member")
    for n in range(3):
        make_user(f"b{n}@beta.test", tenant="beta")


def test_user_list_searches_sorts_and_pages_in_the_database(client, operator, many_users):
    first = page(client, "/console/users")
    emails = user_emails(first)
    assert len(emails) == 50 and emails == sorted(emails) and "59 found" in first
    second = page(client, re.search(r'href="([^"]+)" rel="next"', first).group(1))
    assert len(user_emails(second)) == 9 and not set(emails) & set(user_emails(second))
    found = page(client, "/console/users", q="BETA")  # the tenant's slug, any case
    assert user_emails(found) == ["b0@beta.test", "b1@beta.test", "b2@beta.test"]
    by_tenant = user_emails(page(client, "/console/users", sort="tenant", dir="desc"))
    # default, beta, acme, and within a tenant by email, all descending
    assert by_tenant[:4] == ["ops@example.com", "b2@beta.test", "b1@beta.test", "b0@beta.test"]
    members = user_emails(page(client, "/console/users", q="member", sort="email"))
    beta = ["b0@beta.test", "b1@beta.test", "b2@beta.test"]  # members too
    assert members == beta + [f"u{n:02d}@acme.test" for n in range(0, 55, 5)]
    for hostile in ({"sort": "password_hash"}, {"dir": "sideways"}, {"page": "-1"}):
        assert user_emails(page(client, "/console/users", **hostile)) == emails


def test_a_tenant_admins_user_list_searches_only_their_tenant(client, make_user, login, many_users):
    make_user("boss@acme.test", tenant="acme", role="admin")
    login("boss@acme.test")
    assert user_emails(page(client, "/console/users", q="beta")) == []
    everyone = user_emails(page(client, "/console/users", page="2"))
    assert everyone and all(e.endswith("@acme.test") for e in everyone)
    assert tenant_slugs(page(client, "/console/tenants", q="")) == ["acme"]
    assert tenant_slugs(page(client, "/console/tenants", q="beta")) == []


def test_tenant_list_searches_and_sorts_by_user_count(client, operator, many_users):
    assert tenant_slugs(page(client, "/console/tenants")) == ["acme", "beta", "default"]
    by_users = page(client, "/console/tenants", sort="users", dir="desc")
    assert tenant_slugs(by_users) == ["acme", "beta", "default"]
    assert tenant_slugs(page(client, "/console/tenants", sort="users")) == [
        "default",
        "beta",
        "acme",
    ]
    assert tenant_slugs(page(client, "/console/tenants", q="ACM")) == ["acme"]
    assert tenant_slugs(page(client, "/console/tenants", sort="drop table")) == [
        "acme",
        "beta",
        "default",
    ]
