"""In real headless Chromium: a plugin going degraded shows without a reload (issue 17).

A person has the shell open and an operator the plugin's console page; the plugin
(tests/support/plugins/health_server.py) starts failing its health checks, the core's monitor
marks it degraded, and static/live.js brings the notice and the new state to both pages. A
marker set on each page's window before the change proves neither page was reloaded.
"""

import pytest
from playwright.sync_api import expect

from tests.support.registry_fixtures import sample_manifest, start_plugin_process
from tests.support.shell_fixtures import PASSWORD, Demo

MEMBER = "ann@example.com"


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    base = tmp_path_factory.mktemp("live")
    demo = Demo(base, HEALTH_INTERVAL_S=0.3, HEALTH_FAILURES=1, LIVE_POLL_S=0.5)
    plugin = start_plugin_process(base, "healthy")
    try:
        demo.add_user(MEMBER)
        demo.register(sample_manifest(base_url=plugin.url))
        demo.wait_for_state("test-plugin", "active")
        demo.health = plugin
        yield demo
    finally:
        plugin.stop()
        demo.stop()


def logged_in(browser, core, email: str, path: str):
    context = browser.new_context(base_url=core.url)
    page = context.new_page()
    refused = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("current-user")).to_be_visible()
    page.goto(path)
    expect(page.locator("body")).to_have_attribute("data-live", "on")
    page.evaluate("window.notReloaded = true")
    return context, page, refused


def test_degraded_plugin_shows_its_notice_and_its_state_without_a_reload(core, browser):
    person, shell, shell_refused = logged_in(browser, core, MEMBER, "/")
    ops, console, console_refused = logged_in(
        browser, core, core.admin, "/console/plugins/test-plugin"
    )
    try:
        entry = shell.locator('nav ul[data-plugin="test-plugin"]')
        expect(entry).to_be_visible()
        expect(shell.locator('[data-notice="test-plugin"]')).to_have_count(0)
        expect(console.get_by_test_id("state")).to_have_text("active")

        core.health.set_mode("error")

        notice = shell.locator('[data-notice="test-plugin"]')
        expect(notice).to_be_visible(timeout=20_000)
        expect(notice).to_contain_text("Test Plugin is not answering its health checks")
        expect(entry).to_be_hidden()
        expect(console.get_by_test_id("state")).to_have_text("degraded", timeout=20_000)
        expect(console.get_by_test_id("state-meaning")).to_contain_text("health checks fail")
        expect(console.locator('[data-live-changed="test-plugin"]')).to_be_visible()
        assert shell.evaluate("window.notReloaded") is True
        assert console.evaluate("window.notReloaded") is True

        core.health.set_mode("healthy")

        expect(notice).to_have_count(0, timeout=20_000)
        expect(entry).to_be_visible()
        expect(console.get_by_test_id("state")).to_have_text("active", timeout=20_000)
        assert shell.evaluate("window.notReloaded") is True
        assert shell_refused == [] and console_refused == []
    finally:
        person.close()
        ops.close()
