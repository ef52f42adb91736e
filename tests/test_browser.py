"""End to end in real headless Chromium: the real core under gunicorn, both demo plugins.

One core and the two demo plugins serve the whole module (starting them takes seconds);
tests that change shared state (disable, kill) put it back before they end.
"""

import re
import sys
import time

import pytest
import requests
from playwright.sync_api import expect

from tests.support.processes import ROOT, Process, free_port
from tests.support.shell_fixtures import PASSWORD, Demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    demo = Demo(tmp_path_factory.mktemp("demo"))
    try:
        demo.add_user("member@example.com", role="member")
        demo.add_user("viewer@example.com", role="viewer")
        demo.add_user("acme@example.com", role="member", tenant="acme")
        demo.start_python_plugin()
        demo.start_node_plugin()
        demo.wait_for_state("notebook", "active")
        demo.wait_for_state("tasks", "active")
        response = demo.api.put(
            f"{demo.url}/api/registry/plugins/notebook/tenants",
            json={"tenants": ["default"]},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        yield demo
    finally:
        demo.stop()


@pytest.fixture
def as_user(demo, browser):
    """Return a logged-in page for a user; each call gets its own browser context."""
    contexts = []

    def login(email: str):
        context = browser.new_context(base_url=demo.url)
        contexts.append(context)
        page = context.new_page()
        page.goto("/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_test_id("current-user")).to_be_visible()
        return page

    yield login
    for context in contexts:
        context.close()


def menu(page):
    return page.get_by_role("navigation", name="Plugins")


def test_both_demo_menus_appear_after_login(as_user):
    page = as_user("member@example.com")
    nav = menu(page)
    for label in ("Notes", "Categories", "Tasks", "About tasks"):
        expect(nav.get_by_role("link", name=label, exact=True)).to_be_visible()
    expect(nav.get_by_text("Notebook")).to_be_visible()


def test_create_edit_and_delete_a_note_through_the_forms(as_user, demo):
    page = as_user("member@example.com")
    menu(page).get_by_role("link", name="Categories").click()
    page.get_by_label("Name").fill("work")
    page.get_by_role("button", name="Add category").click()
    expect(page.locator(".categories")).to_contain_text("work")

    menu(page).get_by_role("link", name="Notes").click()
    expect(page).to_have_url(re.compile(r"/plugin-proxy/notebook/notes$"))
    page.get_by_label("Title").fill("Buy <milk>")
    page.get_by_label("Body").fill("two litres")
    page.get_by_label("Category", exact=True).select_option("work")
    page.get_by_role("button", name="Add note").click()
    row = page.get_by_role("row", name=re.compile("Buy <milk>"))
    expect(row).to_contain_text("work")
    expect(page).to_have_url(re.compile(r"/plugin-proxy/notebook/notes$"))  # 303 into the shell

    row.get_by_role("link", name="Edit").click()
    expect(page).to_have_url(re.compile(r"/plugin-proxy/notebook/notes/[0-9a-f]+$"))
    page.get_by_label("Title").fill("Buy oat milk")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("row", name=re.compile("Buy oat milk"))).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("Buy <milk>"))).to_have_count(0)

    page.get_by_role("row", name=re.compile("Buy oat milk")).get_by_role(
        "link", name="Edit"
    ).click()
    page.get_by_role("button", name="Delete note").click()
    expect(page.get_by_role("row", name=re.compile("Buy oat milk"))).to_have_count(0)
    stats = demo.stats("notebook")
    assert stats.get("PUT /notes/<note_id>") == 1 and stats.get("DELETE /notes/<note_id>") == 1


def test_invalid_input_shows_the_plugins_errors(as_user):
    page = as_user("member@example.com")
    page.goto("/plugin-proxy/notebook/notes")
    page.get_by_role("button", name="Add note").click()
    expect(page.get_by_role("alert")).to_contain_text("correct the field marked below")
    title = page.get_by_label("Title")
    expect(title).to_have_attribute("aria-invalid", "true")
    expect(title).to_have_accessible_description("Title is required.")


def test_node_plugin_create_toggle_delete(as_user):
    page = as_user("member@example.com")
    menu(page).get_by_role("link", name="Tasks", exact=True).click()
    page.get_by_role("textbox", name="Task").fill("Water plants")
    page.get_by_role("button", name="Add task").click()
    item = page.locator("li", has_text="Water plants")
    expect(item).to_have_class("open")
    page.get_by_role("button", name="Done Water plants").click()
    expect(page.locator("li", has_text="Water plants")).to_have_class("done")
    page.get_by_role("button", name="Delete Water plants").click()
    expect(page.locator("li", has_text="Water plants")).to_have_count(0)


def test_iframe_view_is_sandboxed(as_user):
    page = as_user("member@example.com")
    menu(page).get_by_role("link", name="About tasks").click()
    frame_element = page.locator("iframe.plugin-frame")
    expect(frame_element).to_have_attribute("sandbox", "allow-forms")
    expect(page.frame_locator("iframe.plugin-frame").get_by_role("heading")).to_have_text(
        "About Tasks"
    )


def test_operator_disabling_a_plugin_removes_its_menu(as_user, demo):
    page = as_user("member@example.com")
    expect(menu(page).get_by_role("link", name="Tasks", exact=True)).to_be_visible()
    demo.operator("tasks", "disable")
    try:
        page.reload()
        expect(menu(page).get_by_role("link", name="Tasks", exact=True)).to_have_count(0)
        expect(menu(page).get_by_role("link", name="Notes")).to_be_visible()
        response = page.goto("/plugin-proxy/tasks/tasks")
        assert response.status == 503
    finally:
        demo.operator("tasks", "enable")
    page.reload()
    expect(menu(page).get_by_role("link", name="Tasks", exact=True)).to_be_visible()


def test_a_killed_plugin_shows_the_error_panel_while_the_other_works(as_user, demo):
    page = as_user("member@example.com")
    port = demo.plugins["tasks"].port
    demo.plugins["tasks"].kill()
    try:
        response = page.goto("/plugin-proxy/tasks/tasks")
        assert response.status == 502
        panel = page.get_by_role("alert")
        expect(panel).to_contain_text("Tasks is not reachable")
        expect(menu(page).get_by_role("link", name="Notes")).to_be_visible()
        menu(page).get_by_role("link", name="Notes").click()
        expect(page.locator("main h1")).to_have_text("Notes")
    finally:
        demo.start_node_plugin(port)  # same port, same token file: it sends an update
    page.goto("/plugin-proxy/tasks/tasks")
    expect(page.locator("main h1")).to_have_text("Tasks")


def test_fragment_payloads_run_nothing_in_the_shell(as_user, demo, browser, tmp_path):
    port = free_port()
    hostile = Process(
        [sys.executable, str(ROOT / "tests/support/hostile_plugin.py"), str(port)], port, "/health"
    )
    try:
        manifest = {
            "plugin_id": "hostile",
            "name": "Hostile",
            "version": "1.0.0",
            "base_url": hostile.url,
            "menu_items": [{"id": "page", "label": "Payload", "view": {"path": "/page"}}],
        }
        demo.register(manifest)
        demo.wait_for_state("hostile", "active")

        page = as_user("member@example.com")
        menu(page).get_by_role("link", name="Payload").click()
        expect(page.get_by_text("end of payload")).to_be_visible()
        page.get_by_text("click me").click()
        page.get_by_text("hover me").hover()
        page.get_by_role("button", name="submit me").click()
        page.wait_for_load_state()
        time.sleep(0.3)
        assert page.evaluate("() => window.__pwned") is None
        assert page.locator("main script, main iframe, main [onerror]").count() == 0

        # The same markup served directly does run: the check above can fail.
        direct = browser.new_page()
        direct.goto(hostile.url + "/page")
        direct.wait_for_function("() => window.__pwned !== undefined")
        direct.close()
    finally:
        demo.operator("hostile", "disable")
        hostile.stop()


def csrf_token(page) -> str:
    return page.locator("input[name=csrf_token]").first.get_attribute("value")


def test_a_post_without_csrf_token_is_refused(as_user, demo):
    page = as_user("member@example.com")
    page.goto("/plugin-proxy/notebook/notes")
    before = demo.stats("notebook").get("POST /notes", 0)
    response = page.request.post(demo.url + "/plugin-proxy/notebook/notes", form={"title": "x"})
    assert response.status == 400
    assert "CSRF" in response.text()
    assert demo.stats("notebook").get("POST /notes", 0) == before


def test_a_viewer_cannot_submit_a_member_action(as_user, demo):
    page = as_user("viewer@example.com")
    page.goto("/plugin-proxy/notebook/notes")
    expect(page.get_by_role("button", name="Add note")).to_have_count(0)
    before = demo.stats("notebook").get("POST /notes", 0)
    response = page.request.post(
        demo.url + "/plugin-proxy/notebook/notes",
        form={"title": "sneaky", "csrf_token": csrf_token(page)},
    )
    assert response.status == 403
    assert demo.stats("notebook").get("POST /notes", 0) == before


def test_another_tenant_sees_no_menu_of_a_plugin_not_installed_there(as_user):
    page = as_user("acme@example.com")
    expect(menu(page).get_by_role("link", name="Tasks", exact=True)).to_be_visible()
    expect(menu(page).get_by_role("link", name="Notes")).to_have_count(0)
    assert page.goto("/plugin-proxy/notebook/notes").status == 404


@pytest.mark.parametrize(("plugin_id", "path"), [("notebook", "/notes"), ("tasks", "/tasks")])
def test_demo_plugins_refuse_calls_without_a_request_jwt(demo, plugin_id, path):
    url = demo.plugins[plugin_id].url + path
    assert requests.get(url, timeout=5).status_code == 401
    user_jwt = demo.api.headers["Authorization"]  # a user JWT: audience is the core, not them
    assert requests.get(url, headers={"Authorization": user_jwt}, timeout=5).status_code == 401
