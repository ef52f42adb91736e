"""The ≤ 40-line example plugins (examples/minimal-*) in real headless Chromium: each registers
itself with an enrolment key, shows its menu entry, stores an item from its form and lists it."""

import re
import sys

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.processes import ROOT, Process, free_port
from tests.support.shell_fixtures import PASSWORD, Demo

EXAMPLES = {
    "minimal-python": ([sys.executable, "examples/minimal-python/plugin.py"], "Python items"),
    "minimal-node": (["node", "examples/minimal-node/server.mjs"], "Node items"),
}
SOURCES = ["examples/minimal-python/plugin.py", "examples/minimal-node/server.mjs"]


@pytest.mark.parametrize("source", SOURCES)
def test_each_example_fits_in_40_lines(source):
    assert len((ROOT / source).read_text().splitlines()) <= 40


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    demo = Demo(tmp_path_factory.mktemp("examples"))
    try:
        demo.add_user("member@example.com", role="member")
        for plugin_id, (command, _) in EXAMPLES.items():
            port = free_port()
            demo.plugins[plugin_id] = Process(
                command,
                port,
                "/health",
                env={**demo.plugin_env(plugin_id), "PORT": str(port)},
                log_path=demo.base / f"{plugin_id}.log",
            )
        for plugin_id in EXAMPLES:
            demo.wait_for_state(plugin_id, "active")  # registered itself, then passed a check
        yield demo
    finally:
        demo.stop()


@pytest.fixture(scope="module")
def page(demo):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(base_url=demo.url).new_page()
        page.goto("/login")
        page.get_by_label("Email").fill("member@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_test_id("current-user")).to_be_visible()
        yield page
        browser.close()


@pytest.mark.parametrize("plugin_id", list(EXAMPLES))
def test_an_example_shows_its_menu_stores_and_lists_an_item(demo, page, plugin_id):
    label = EXAMPLES[plugin_id][1]
    page.get_by_role("navigation", name="Plugins").get_by_role("link", name=label).click()
    expect(page).to_have_url(re.compile(rf"/plugin-proxy/{plugin_id}/items$"))
    text = f"<b>{plugin_id}</b> item"
    page.get_by_label("Text").fill(text)
    page.get_by_role("button", name="Add item").click()
    expect(page).to_have_url(re.compile(rf"/plugin-proxy/{plugin_id}/items$"))  # 303 back
    expect(page.locator("ul.items li", has_text=text)).to_have_count(1)  # shown as text
