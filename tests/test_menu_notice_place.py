"""A plugin that left the menu leaves its notice where its entries were (issue 17).

The server render alone (no script) puts the notice in the menu's own order, and /shell/live
says that order so static/live.js can keep it; tests/test_menu_notice_place_browser.py shows
the swap in Chromium.
"""

import re

import pytest
import requests
from playwright.sync_api import expect

from extframework.db import database
from extframework.models import Plugin
from extframework.services import menu, menu_notices
from tests.support.registry_fixtures import sample_manifest, start_plugin_process
from tests.support.shell_fixtures import PASSWORD, Demo

VIEWS = [{"menu_id": "notes", "label": "Notes", "method": "GET", "path": "/notes"}]


@pytest.fixture
def member(make_user, login):
    make_user("ann@example.com", role="member")
    login("ann@example.com")


def nav_order(body: str) -> list[tuple[str, str]]:
    """The plugins in the menu as the page shows them: ("menu", id) or ("notice", id)."""
    nav = body.split('<nav class="menu"', 1)[1].split("</nav>", 1)[0]
    found = re.findall(r'<ul aria-labelledby="menu-[^"]+" data-plugin="([^"]+)"|'
                       r'<div class="menu-notice" data-notice="([^"]+)"', nav)  # fmt: skip
    return [("menu", ul) if ul else ("notice", div) for ul, div in found]


def set_state(plugin_id: str, state: str) -> None:
    with database.connection_context():
        Plugin.update(state=state).where(Plugin.plugin_id == plugin_id).execute()


@pytest.mark.parametrize("state", ["degraded", "disabled", "migrating"])
def test_the_notice_takes_the_place_of_the_entries_in_the_first_render(
    client, member, shell_plugin, state
):
    # Menu order is by name, then plugin id: "zz-middle" sorts last by id but sits in the middle.
    shell_plugin("a-first", routes=VIEWS, name="Alpha")
    shell_plugin("zz-middle", routes=VIEWS, name="Beta")
    shell_plugin("b-last", routes=VIEWS, name="Gamma")
    before = nav_order(client.get("/").get_data(as_text=True))
    assert before == [("menu", "a-first"), ("menu", "zz-middle"), ("menu", "b-last")]
    set_state("zz-middle", state)
    after = nav_order(client.get("/").get_data(as_text=True))
    assert after == [("menu", "a-first"), ("notice", "zz-middle"), ("menu", "b-last")]
    set_state("zz-middle", "active")
    assert nav_order(client.get("/").get_data(as_text=True)) == before


def test_the_folded_menu_says_how_many_plugins_are_unavailable(client, member, shell_plugin):
    shell_plugin("a-first", routes=VIEWS, name="Alpha")
    shell_plugin("zz-middle", routes=VIEWS, name="Beta")
    shell_plugin("b-last", routes=VIEWS, name="Gamma")
    hint = re.compile(
        r"<summary><span>Menu</span>\s*"
        r"<span class=\"menu-alert\" data-menu-alert( hidden)?>([^<]*)<"
    )
    assert hint.search(client.get("/").get_data(as_text=True)).group(1) == " hidden"
    set_state("zz-middle", "degraded")
    assert hint.search(client.get("/").get_data(as_text=True)).groups() == (
        None,
        "1 plugin unavailable",
    )
    set_state("b-last", "disabled")
    assert hint.search(client.get("/").get_data(as_text=True)).group(2) == "2 plugins unavailable"


def test_the_live_answer_says_the_order_of_entries_and_notices(client, member, shell_plugin):
    shell_plugin("a-first", routes=VIEWS, name="Alpha")
    shell_plugin("zz-middle", routes=VIEWS, name="Beta", state="degraded")
    shell_plugin("b-last", routes=VIEWS, name="Gamma", state="disabled")
    shell_plugin("c-end", routes=VIEWS, name="Omega")
    live = client.get("/shell/live").json
    assert live["order"] == ["a-first", "zz-middle", "b-last", "c-end"]
    assert [m["plugin_id"] for m in live["menu"]] == ["a-first", "c-end"]
    assert [n["plugin_id"] for n in live["notices"]] == ["zz-middle", "b-last"]


def test_in_menu_order_merges_notices_by_name_then_plugin_id(app, shell_plugin):
    shell_plugin("same-2", routes=VIEWS, name="Same")
    shell_plugin("same-1", routes=VIEWS, name="Same", state="degraded")
    shell_plugin("upper", routes=VIEWS, name="Zeta")
    shell_plugin("lower", routes=VIEWS, name="beta", state="disabled")  # byte order: Z < b
    with app.app_context(), database.connection_context():
        placed = menu_notices.in_menu_order(
            menu.menu_for("admin", "default"), menu_notices.notices_for("admin", "default")
        )
    assert [(type(item).__name__, item.plugin_id) for item in placed] == [
        ("Notice", "same-1"),
        ("PluginMenu", "same-2"),
        ("PluginMenu", "upper"),
        ("Notice", "lower"),
    ]


# In Chromium: the middle plugin goes degraded and comes back, the page is never reloaded.

MEMBER = "ann@example.com"
ORDER_JS = """() => Array.from(document.querySelectorAll(
    'nav ul[data-plugin]:not([hidden]), nav .menu-notice[data-notice]'))
  .map(n => [n.matches('ul') ? 'menu' : 'notice',
             n.getAttribute('data-plugin') || n.getAttribute('data-notice'),
             Math.round(n.getBoundingClientRect().top)])"""


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    base = tmp_path_factory.mktemp("place")
    demo = Demo(base, HEALTH_INTERVAL_S=0.3, HEALTH_FAILURES=1, LIVE_POLL_S=0.5)
    steady, failing = start_plugin_process(base), start_plugin_process(base)
    try:
        demo.add_user(MEMBER)
        for plugin_id, name, server in (
            ("alpha", "Alpha", steady),
            ("beta", "Beta", failing),
            ("gamma", "Gamma", steady),
        ):
            manifest = sample_manifest(
                plugin_id=plugin_id, name=name, base_url=f"{server.url}/{plugin_id}"
            )
            registered = requests.post(
                f"{demo.url}/api/registry/plugins",
                json=manifest,
                headers={"Authorization": f"Bearer {demo.enrolment_key}"},
                timeout=10,
            )
            assert registered.status_code == 201, registered.text
            demo.wait_for_state(plugin_id, "active")
        demo.failing = failing
        yield demo
    finally:
        steady.stop()
        failing.stop()
        demo.stop()


def logged_in_phone(browser, core):
    context = browser.new_context(base_url=core.url, viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("Email").fill(MEMBER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("body")).to_have_attribute("data-live", "on")
    return page


def test_the_notice_appears_where_the_entry_was_without_a_reload(core, browser):
    context = browser.new_context(base_url=core.url, viewport={"width": 1366, "height": 900})
    page, phone = context.new_page(), None
    try:
        page.goto("/login")
        page.get_by_label("Email").fill(MEMBER)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_test_id("current-user")).to_be_visible()
        expect(page.locator("body")).to_have_attribute("data-live", "on")
        page.evaluate("window.notReloaded = true")
        phone = logged_in_phone(browser, core)
        expect(phone.locator("[data-menu-alert]")).to_be_hidden()
        before = page.evaluate(ORDER_JS)
        assert [kind_id[:2] for kind_id in before] == [
            ["menu", "alpha"], ["menu", "beta"], ["menu", "gamma"]
        ]  # fmt: skip

        core.failing.set_mode("error")

        notice = page.locator('nav .menu-notice[data-notice="beta"]')
        expect(notice).to_be_visible(timeout=20_000)
        expect(notice).to_contain_text("Beta is not answering its health checks")
        expect(page.locator('nav ul[data-plugin="beta"]')).to_be_hidden()
        during = page.evaluate(ORDER_JS)
        assert [kind_id[:2] for kind_id in during] == [
            ["menu", "alpha"], ["notice", "beta"], ["menu", "gamma"]
        ]  # fmt: skip
        tops = [top for _, _, top in during]
        assert tops[0] < tops[1] < tops[2]  # on screen too, between its neighbours
        # The element right after Alpha's entries is Beta's notice, and Gamma's heading follows.
        assert (
            page.evaluate(
                """() => document.querySelector('nav ul[data-plugin="alpha"]')
                 .nextElementSibling.getAttribute('data-notice')"""
            )
            == "beta"
        )
        expect(page.locator("#menu-notices")).to_contain_text("Beta is not answering")
        assert page.evaluate("window.notReloaded") is True
        # On a phone the menu is folded: its button says a plugin is unavailable.
        expect(phone.locator("[data-menu-alert]")).to_have_text("1 plugin unavailable")
        expect(phone.locator("summary")).to_contain_text("Menu 1 plugin unavailable")
        expect(phone.locator('.menu-notice[data-notice="beta"]')).to_be_hidden()  # folded
        phone.get_by_text("Menu", exact=True).click()
        expect(phone.locator('.menu-notice[data-notice="beta"]')).to_be_visible()

        core.failing.set_mode("healthy")

        expect(notice).to_have_count(0, timeout=20_000)
        expect(page.locator('nav ul[data-plugin="beta"]')).to_be_visible()
        after = page.evaluate(ORDER_JS)
        assert [kind_id[:2] for kind_id in after] == [kind_id[:2] for kind_id in before]
        expect(page.locator("#menu-notices")).to_contain_text("Beta is available again.")
        expect(phone.locator("[data-menu-alert]")).to_be_hidden()
        assert page.evaluate("window.notReloaded") is True
    finally:
        context.close()
        if phone is not None:
            phone.context.close()
