"""A hostile plugin's forms and redirects, in real headless Chromium (issue 11).

The real core under gunicorn, a real plugin process on loopback whose markup aims at the
console, and an operator who clicks. The browser is kept off every host but 127.0.0.1: a
request elsewhere is aborted, so a regression shows as a wrong ``page.url``, never as traffic.
"""

import re
import sqlite3
import sys

import pytest
import requests
from playwright.sync_api import expect

from tests.support.browser import chromium
from tests.support.processes import ROOT, Process, free_port
from tests.support.shell_fixtures import PASSWORD, Demo

# No name but loopback resolves: not even a DNS query leaves for evil.example.
NO_OUTSIDE_HOSTS = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"

PLUGIN = "hostile-markup"
PLANTED = "planted@example.com"
OFF_LOOPBACK = re.compile(r"^(?!https?://127\.0\.0\.1[:/])[a-z]+://")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    demo = Demo(base)
    try:
        port = free_port()
        demo.plugins[PLUGIN] = Process(
            [
                sys.executable,
                str(ROOT / "tests/support/plugins/hostile_markup_plugin.py"),
                str(port),
                demo.url,
            ],
            port,
            "/health",
            log_path=base / "hostile.log",
        )
        demo.register(
            {
                "plugin_id": PLUGIN,
                "name": "Hostile markup",
                "version": "1.0.0",
                "base_url": demo.plugins[PLUGIN].url,
                "menu_items": [
                    {
                        "id": "page",
                        "label": "Hostile page",
                        "view": {"path": "/page"},
                        "actions": [{"id": "add", "method": "POST", "path": "/items"}],
                    },
                    {"id": "redirect", "label": "Hostile redirect", "view": {"path": "/redirect"}},
                ],
            }
        )
        demo.wait_for_state(PLUGIN, "active")
        yield demo
    finally:
        demo.stop()


@pytest.fixture(scope="module")
def browser():
    with chromium(NO_OUTSIDE_HOSTS) as browser:
        yield browser


@pytest.fixture
def context(demo, browser):
    context = browser.new_context(base_url=demo.url)
    context.route(OFF_LOOPBACK, lambda route: route.abort())
    yield context
    context.close()


def log_in(page, email: str, path: str = "/login"):
    page.goto(path)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


@pytest.fixture
def operator(demo, context):
    page = context.new_page()
    log_in(page, demo.admin)
    expect(page.get_by_test_id("current-user")).to_be_visible()
    return page


def planted_accounts(demo) -> int:
    with sqlite3.connect(demo.instance / "extframework.sqlite3") as db:
        return db.execute("SELECT count(*) FROM user WHERE email = ?", (PLANTED,)).fetchone()[0]


def stats(demo) -> dict[str, int]:
    return requests.get(demo.plugins[PLUGIN].url + "/stats", timeout=5).json()


def test_an_operators_click_on_a_form_aimed_at_the_console_creates_no_account(demo, operator):
    view = f"{demo.url}/plugin-proxy/{PLUGIN}/page"
    operator.goto(view)
    main = operator.locator("main")
    expect(main.get_by_role("heading", name="Hostile markup")).to_be_visible()
    main.get_by_role("button", name="Absolute console").click()  # waits for any navigation
    assert planted_accounts(demo) == 0
    assert operator.url == view

    # That form is no form any more, and carries no token; the refusal stays discoverable.
    refused = main.locator("[data-refused-action]")
    expect(refused).to_have_count(1)
    expect(refused).to_have_attribute("data-refused-action", demo.url + "/console/users")
    expect(refused.locator("input[name=csrf_token]")).to_have_count(0)
    expect(main.locator("form[action*='console']:not([action^='/plugin-proxy/'])")).to_have_count(0)

    # The %2e%2e form now posts to the plugin's own (undeclared) path: the shell refuses it.
    main.get_by_role("button", name="Dotted console").click()
    expect(operator.get_by_role("heading", name="Not found")).to_be_visible()
    assert operator.url == f"{demo.url}/plugin-proxy/{PLUGIN}/console/users"
    assert planted_accounts(demo) == 0

    # A link climbing with %2e%2e stays under the plugin's prefix too.
    operator.goto(view)
    link = operator.locator("main").get_by_role("link", name="Dotted link")
    expect(link).to_have_attribute("href", f"/plugin-proxy/{PLUGIN}/console")

    # The same fragment's own form keeps working, with the token the core put in.
    before = stats(demo).get("POST /items", 0)
    operator.locator("main").get_by_label("Title").fill("hello")
    operator.locator("main").get_by_role("button", name="Add item").click()
    expect(operator.locator("#pv-saved")).to_have_text("Saved hello")
    assert stats(demo).get("POST /items", 0) == before + 1
    assert planted_accounts(demo) == 0


def test_a_plugin_redirect_to_tab_slash_host_stays_on_the_core(demo, operator):
    response = operator.goto(f"/plugin-proxy/{PLUGIN}/redirect")
    assert response.status == 502
    expect(operator.get_by_role("alert")).to_contain_text("redirected outside itself")
    assert operator.url == f"{demo.url}/plugin-proxy/{PLUGIN}/redirect"


@pytest.mark.parametrize("next_", ["/%09/evil.example", "/%0a/x", "/%5Cevil.example"])
def test_login_with_an_off_site_next_lands_home(demo, context, next_):
    page = context.new_page()
    log_in(page, demo.admin, f"/login?next={next_}")
    expect(page.get_by_test_id("current-user")).to_be_visible()
    assert page.url == demo.url + "/"
