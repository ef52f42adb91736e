"""In real headless Chromium: reloading or going back after a console form repeats nothing.

The core runs under gunicorn (two workers, so the page after a redirect may be served by the other
process); the plugin whose token is rotated is tests/support/plugins/health_server.py.
"""

import sqlite3

import pytest
import requests
from playwright.sync_api import expect

from tests.support.registry_fixtures import sample_manifest, start_plugin_process
from tests.support.shell_fixtures import PASSWORD, Demo


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    base = tmp_path_factory.mktemp("prg")
    demo = Demo(base, HEALTH_MONITOR="false")
    plugin = start_plugin_process(base, "healthy")
    try:
        registered = requests.post(
            f"{demo.url}/api/registry/plugins",
            json=sample_manifest(base_url=plugin.url),
            headers={"Authorization": f"Bearer {demo.enrolment_key}"},
            timeout=10,
        )
        assert registered.status_code == 201, registered.text
        yield demo
    finally:
        plugin.stop()
        demo.stop()


@pytest.fixture
def page(core, browser):
    context = browser.new_context(base_url=core.url)
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("Email").fill(core.admin)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("current-user")).to_be_visible()
    yield page
    context.close()


def count(core, sql: str) -> int:
    with sqlite3.connect(core.instance / "extframework.sqlite3") as db:
        return db.execute(sql).fetchone()[0]


ROTATIONS = "SELECT count(*) FROM audit_event WHERE action = 'plugin.rotate_token'"
KEYS = "SELECT count(*) FROM enrolment_key"
USERS = "SELECT count(*) FROM user"


def reload_and_go_back_repeat_nothing(page, core, sql: str, before: int) -> None:
    assert count(core, sql) == before + 1
    reloaded = page.reload()
    assert reloaded.request.method == "GET" and reloaded.status == 200
    page.go_back()
    page.go_forward()
    assert count(core, sql) == before + 1


def test_reload_after_rotating_a_token_rotates_nothing(page, core):
    page.goto("/console/plugins/test-plugin")
    before = count(core, ROTATIONS)
    page.get_by_role("button", name="Rotate token").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()  # it asks first
    expect(page.get_by_test_id("new-token")).to_contain_text("efpt_")
    assert page.url.endswith("/console/plugins/test-plugin")
    shown = page.get_by_test_id("new-token").locator("code").inner_text()
    reload_and_go_back_repeat_nothing(page, core, ROTATIONS, before)
    expect(page.get_by_test_id("new-token")).to_have_count(0)
    own = requests.get(
        f"{core.url}/api/registry/plugins/test-plugin",
        headers={"Authorization": f"Bearer {shown}"},
        timeout=10,
    )
    assert own.status_code == 200


def test_reload_after_creating_an_enrolment_key_creates_nothing(page, core):
    page.goto("/console/enrolment-keys")
    before = count(core, KEYS)
    page.get_by_label("Label", exact=True).fill("from the browser")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("main")).to_contain_text("efek_")
    assert page.url.endswith("/console/enrolment-keys")
    reload_and_go_back_repeat_nothing(page, core, KEYS, before)
    expect(page.locator("main")).not_to_contain_text("efek_")


def test_reload_after_creating_a_user_creates_nothing(page, core):
    page.goto("/console/users")
    before = count(core, USERS)
    form = page.get_by_test_id("create-user")
    form.get_by_label("Email").fill("made-in-chromium@example.com")
    form.get_by_label("Password").fill("a long enough password")
    form.get_by_role("button", name="Create user").click()
    expect(page.locator("main")).to_contain_text("Created user made-in-chromium@example.com")
    assert page.url.endswith("/console/users")
    reload_and_go_back_repeat_nothing(page, core, USERS, before)
