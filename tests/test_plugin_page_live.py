"""The plugin page's summary follows the plugin without a reload (issue 17).

/console/live sends, for the plugin a page summarises (``summary=<id>``), the same words the
page renders for uptime, last failure, version and token last use; static/live.js swaps them
in. The Chromium journey has a real plugin fail its health checks while the page is open.
"""

import re

import pytest
from playwright.sync_api import expect

from extframework.db import database
from extframework.models import HealthCheck, Plugin
from tests.support.registry_fixtures import sample_manifest, start_plugin_process
from tests.support.shell_fixtures import PASSWORD, Demo

MARKERS = ("uptime", "last-failure", "version", "token-used")


@pytest.fixture
def operator(make_user, login):
    make_user("ops@example.com", role="admin", operator=True)
    login("ops@example.com")


def summary(client, *query: str) -> dict:
    answer = client.get("/console/live?" + "&".join(query))
    assert answer.status_code == 200
    return answer.json["plugins"]


def test_console_live_sends_the_summary_the_page_shows(app, client, operator, make_plugin):
    plugin, _ = make_plugin()
    with app.app_context(), database.connection_context():
        HealthCheck.delete().where(HealthCheck.plugin == plugin).execute()
    page = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    for marker in MARKERS:
        assert f'data-live-{marker}="test-plugin"' in page, marker
    first = summary(client, "plugin=test-plugin", "summary=test-plugin")["test-plugin"]["summary"]
    assert first["uptime"] == ["no health checks yet"]
    assert first["last_failure"] == ["none recorded"]
    assert first["version"] == ["1.0.0"]
    assert first["token_used"][0] == "not yet"

    with app.app_context(), database.connection_context():
        HealthCheck.create(plugin=plugin, ok=True, status_code=200, detail="")
        HealthCheck.create(
            plugin=plugin, ok=False, status_code=500, detail="http://x/health answered 500"
        )
        Plugin.update(consecutive_failures=1).where(Plugin.id == plugin.id).execute()
    later = summary(client, "plugin=test-plugin", "summary=test-plugin")["test-plugin"]["summary"]
    assert later["uptime"] == [
        "50% — 1 of the last 2 health checks passed",
        "; ",
        {"strong": "1 failure(s) in a row"},
    ]
    when, reason = later["last_failure"][0], later["last_failure"][1:]
    assert when["ago"] == "just now" and when["at"].endswith("Z") and when["title"].endswith("UTC")
    assert reason == [": http://x/health answered 500"]  # the status once (issue 17)
    # The page renders the same parts, so a reload and the live swap agree.
    page = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    assert "50% — 1 of the last 2 health checks passed; <b>1 failure(s) in a row</b>" in page
    assert ">just now</time>: http://x/health answered 500</dd>" in page


def test_only_pages_that_ask_get_the_summary(client, operator, make_plugin):
    make_plugin()
    make_plugin()
    plugins = summary(client, "plugin=test-plugin", "plugin=test-plugin-2")
    assert all("summary" not in p for p in plugins.values())  # the list pages don't pay for it
    plugins = summary(client, "plugin=test-plugin", "summary=test-plugin", "summary=nope")
    assert "summary" in plugins["test-plugin"] and list(plugins) == ["test-plugin"]
    many = "&".join(f"summary=p{n}" for n in range(500))
    assert client.get(f"/console/live?plugin=test-plugin&{many}").status_code == 200


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    base = tmp_path_factory.mktemp("page-live")
    # Failures never degrade it here: the summary must change while the state stays put.
    demo = Demo(base, HEALTH_INTERVAL_S=0.3, HEALTH_FAILURES=1000, LIVE_POLL_S=0.5)
    plugin = start_plugin_process(base)
    try:
        demo.register(sample_manifest(base_url=plugin.url))
        demo.wait_for_state("test-plugin", "active")
        demo.health = plugin
        yield demo
    finally:
        plugin.stop()
        demo.stop()


def test_a_failed_check_shows_on_the_plugin_page_without_a_reload(core, browser):
    context = browser.new_context(base_url=core.url)
    page = context.new_page()
    refused = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)
    try:
        page.goto("/login")
        page.get_by_label("Email").fill(core.admin)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_test_id("current-user")).to_be_visible()
        page.goto("/console/plugins/test-plugin")
        expect(page.locator("body")).to_have_attribute("data-live", "on")
        page.evaluate("window.notReloaded = true")
        expect(page.get_by_test_id("last-failure")).to_have_text("none recorded")
        expect(page.get_by_test_id("uptime")).to_contain_text("100%", timeout=20_000)

        core.health.set_mode("error")

        last = page.get_by_test_id("last-failure")
        expect(last).to_contain_text("/health answered HTTP 500", timeout=20_000)
        expect(last).not_to_contain_text("(HTTP 500)")  # said once
        expect(last.locator("time")).to_have_attribute(
            "title", re.compile(r"^\d{4}-\d\d-\d\d .* UTC$")
        )
        expect(page.get_by_test_id("uptime")).to_contain_text("failure(s) in a row")
        expect(page.get_by_test_id("uptime").locator("b")).to_be_visible()
        # "Last check" goes live as the page renders it: a <time>, not plain text (issue 17).
        check = page.locator('[data-live-health="test-plugin"]')
        expect(check).to_contain_text("failed · ")
        expect(check.locator("time")).to_have_attribute("title", re.compile(r" UTC$"))
        expect(check.locator("b")).to_contain_text("failure(s) in a row")
        expect(page.get_by_test_id("state")).to_have_text("active")
        assert page.evaluate("window.notReloaded") is True

        core.health.set_mode("healthy")

        expect(page.get_by_test_id("uptime")).not_to_contain_text("in a row", timeout=20_000)
        expect(last).to_contain_text("answered HTTP 500")  # it stays until a newer failure
        assert page.evaluate("window.notReloaded") is True
        assert refused == []
    finally:
        context.close()
