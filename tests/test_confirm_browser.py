"""In real headless Chromium (scripts on): a destructive action asks in a <dialog> first, and a
tenant's admin administers their tenant and cannot see or change another.

The core runs under gunicorn with its health monitor; the plugin is
tests/support/plugins/health_server.py on loopback.
"""

import sqlite3

import pytest
import requests
from playwright.sync_api import expect

from tests.support.registry_fixtures import sample_manifest, start_plugin_process
from tests.support.shell_fixtures import PASSWORD, Demo

ALICE = "alice@acme.test"  # acme's admin
BOB = "bob@beta.test"  # a member of beta


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    base = tmp_path_factory.mktemp("confirm")
    demo = Demo(base)
    plugin = start_plugin_process(base, "healthy")
    try:
        registered = requests.post(
            f"{demo.url}/api/registry/plugins",
            json=sample_manifest(base_url=plugin.url),
            headers={"Authorization": f"Bearer {demo.enrolment_key}"},
            timeout=10,
        )
        assert registered.status_code == 201, registered.text
        demo.wait_for_state("test-plugin", "active")
        demo.add_user(ALICE, role="admin", tenant="acme")
        demo.add_user(BOB, role="member", tenant="beta")
        yield demo
    finally:
        plugin.stop()
        demo.stop()


def logged_in(core, browser, email: str, *, scripts: bool = True):
    context = browser.new_context(base_url=core.url, java_script_enabled=scripts)
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("current-user")).to_be_visible()
    return context, page


def query(core, sql: str, *args):
    with sqlite3.connect(core.instance / "extframework.sqlite3") as db:
        return db.execute(sql, args).fetchone()


def plugin_state(core) -> str:
    return query(core, "SELECT state FROM plugin WHERE plugin_id = 'test-plugin'")[0]


def test_a_destructive_action_needs_its_confirmation(core, browser):
    context, page = logged_in(core, browser, core.admin)
    try:
        page.goto("/console/plugins/test-plugin")
        expect(page.get_by_test_id("state")).to_have_text("active")
        page.get_by_role("button", name="Disable").click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_contain_text("Really disable Test Plugin?")
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_have_count(0)
        assert page.url.endswith("/console/plugins/test-plugin")  # nothing was sent
        assert plugin_state(core) == "active"

        page.get_by_role("button", name="Disable").click()
        page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
        expect(page.get_by_test_id("state")).to_have_text("disabled")
        assert plugin_state(core) == "disabled"
    finally:
        core.api.post(f"{core.url}/api/registry/plugins/test-plugin/enable", timeout=10)
        context.close()


def test_without_scripts_the_confirmation_is_a_page(core, browser):
    context, page = logged_in(core, browser, core.admin, scripts=False)
    try:
        page.goto("/console/plugins/test-plugin")
        page.get_by_role("button", name="Disable").click()
        expect(page.get_by_role("heading", name="Really disable Test Plugin?")).to_be_visible()
        assert plugin_state(core) == "active"
        page.get_by_role("link", name="Cancel").click()
        expect(page.get_by_test_id("state")).to_have_text("active")
        assert plugin_state(core) == "active"

        page.get_by_role("button", name="Disable").click()
        page.get_by_test_id("confirm").get_by_role("button", name="Disable").click()
        expect(page.get_by_test_id("state")).to_have_text("disabled")
        assert page.url.endswith("/console/plugins/test-plugin")
    finally:
        core.api.post(f"{core.url}/api/registry/plugins/test-plugin/enable", timeout=10)
        context.close()


def test_a_tenant_admin_creates_a_viewer_and_cannot_see_or_change_another_tenant(core, browser):
    context, page = logged_in(core, browser, ALICE)
    try:
        page.get_by_role("link", name="Console").click()
        expect(page.get_by_role("heading", name="Users of acme")).to_be_visible()
        users = page.get_by_test_id("users")
        expect(users).to_contain_text(ALICE)
        expect(users).not_to_contain_text(BOB)
        expect(users).not_to_contain_text(core.admin)

        form = page.get_by_test_id("create-user")
        expect(form.get_by_label("Tenant").locator("option")).to_have_text(["acme (acme)"])
        expect(form.get_by_label("Operator", exact=False)).to_have_count(0)
        form.get_by_label("Email").fill("vic@acme.test")
        form.get_by_label("Role").select_option("viewer")
        form.get_by_label("Password").fill("a long enough password")
        form.get_by_role("button", name="Create user").click()
        expect(page.locator(".flash[role=status]")).to_contain_text("Created user vic@acme.test.")
        row = page.locator('tr[data-user="vic@acme.test"]')
        expect(row).to_contain_text("viewer")
        assert query(
            core,
            "SELECT t.slug, u.role, u.is_operator FROM user u JOIN tenant t ON t.id = u.tenant_id "
            "WHERE u.email = ?",
            "vic@acme.test",
        ) == ("acme", "viewer", 0)

        # Deactivating asks first, then acts.
        row.get_by_role("button", name="Deactivate").click()
        page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
        expect(page.locator(".flash[role=status]")).to_contain_text("vic@acme.test is deactivated.")

        page.get_by_role("link", name="Tenants").click()
        tenants = page.get_by_test_id("tenants")
        expect(tenants).to_contain_text("acme")
        expect(tenants).not_to_contain_text("beta")
        expect(page.get_by_role("link", name="Plugins", exact=True)).to_have_count(0)

        # Their tenant's page: uninstalling a plugin asks, and takes it out of acme only.
        tenants.get_by_role("link", name="acme").click()
        plugin = page.locator('tr[data-plugin="test-plugin"]')
        plugin.get_by_role("button", name="Uninstall").click()
        page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
        expect(plugin.get_by_test_id("installed")).to_have_text("yes")
        plugin.get_by_role("button", name="Uninstall").click()
        page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
        expect(plugin.get_by_test_id("installed")).to_have_text("no")
        assert query(
            core,
            "SELECT i.installed FROM installation i JOIN tenant t ON t.id = i.tenant_id "
            "WHERE t.slug = 'acme'",
        ) == (0,)
        plugin.get_by_role("button", name="Install").click()  # installing asks nothing
        expect(plugin.get_by_test_id("installed")).to_have_text("yes")

        # Another tenant is not there, by any URL; the operators' pages are closed.
        assert page.goto("/console/tenants/beta").status == 404
        assert page.goto("/console/plugins").status == 403
        page.goto("/console/users")
        csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
        (bob_id,) = query(core, "SELECT id FROM user WHERE email = ?", BOB)
        for path, form in [
            (f"/console/users/{bob_id}/deactivate", {"confirm": "yes"}),
            (f"/console/users/{bob_id}/role", {"role": "admin", "confirm": "yes"}),
            (
                f"/console/users/{bob_id}/password",
                {"password": "taken over now", "confirm": "yes"},
            ),
        ]:
            answer = page.request.post(path, form={**form, "csrf_token": csrf})
            assert answer.status == 404, path
        assert query(core, "SELECT role, is_active FROM user WHERE email = ?", BOB) == (
            "member",
            1,
        )
    finally:
        context.close()
