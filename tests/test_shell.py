"""The shell over HTTP: the menu, the proxy routes, fault panels, CSRF and security headers."""

import re

import pytest

NOTES = "/plugin-proxy/notes"


@pytest.fixture
def member(make_user, login):
    make_user("member@example.com", role="member")
    login("member@example.com")


@pytest.fixture
def notes(shell_plugin, stub_plugin):
    shell_plugin(base_url=stub_plugin.url, name="Notebook")
    stub_plugin.reply(
        "GET",
        "/notes",
        body='<h1>Notes</h1><a href="/notes/1">first</a>'
        '<form method="post" action="/notes"><input name="title"></form>',
    )
    return stub_plugin


def menu_links(html: str) -> list[str]:
    nav = html.split('<nav class="menu"', 1)[1].split("</nav>", 1)[0]
    return re.findall(r'href="(/plugin-proxy/[^"]*)"', nav)


def test_menu_lists_active_installed_views_the_role_allows(client, make_user, login, shell_plugin):
    make_user("viewer@example.com", role="viewer")
    login("viewer@example.com")
    shell_plugin(
        routes=[
            {"menu_id": "notes", "label": "Notes", "method": "GET", "path": "/notes"},
            {
                "menu_id": "audit",
                "label": "Audit",
                "method": "GET",
                "path": "/audit",
                "role": "admin",
            },
            {"menu_id": "one", "label": "One", "method": "GET", "path": "/notes/:id"},
            {"menu_id": "notes", "action_id": "create", "method": "POST", "path": "/notes"},
        ]
    )
    shell_plugin("sleepy", state="disabled")
    html = client.get("/").get_data(as_text=True)
    assert menu_links(html) == ["/plugin-proxy/notes/notes"]
    assert ">Notes</a>" in html and "Audit" not in html and ">Sleepy</a>" not in html
    # A disabled plugin leaves a notice in place of its entry, not a link (issue 17).
    assert '<div class="menu-notice" data-notice="sleepy" data-state="disabled">' in html


def test_menu_hides_plugins_not_installed_in_the_users_tenant(
    client, make_user, login, shell_plugin, app
):
    make_user("other@example.com", tenant="acme")
    shell_plugin("everywhere")
    shell_plugin("acme-only", installed_in=["acme"])
    shell_plugin("elsewhere", installed_in=["default"])
    login("other@example.com")
    links = menu_links(client.get("/").get_data(as_text=True))
    assert "/plugin-proxy/everywhere/notes" in links
    assert "/plugin-proxy/acme-only/notes" in links
    assert not any(link.startswith("/plugin-proxy/elsewhere") for link in links)
    assert client.get("/plugin-proxy/elsewhere/notes").status_code == 404


def test_view_is_rendered_inside_the_layout_with_rewritten_links(client, member, notes):
    response = client.get(f"{NOTES}/notes")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<nav class="menu"' in html and "<h1>Notes</h1>" in html
    assert 'href="/plugin-proxy/notes/notes/1"' in html
    assert 'action="/plugin-proxy/notes/notes" method="post"' in html
    assert re.search(r'<input type="hidden" name="csrf_token" value="[^"]+">', html)
    assert 'aria-current="page"' in html
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "object-src 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"


def test_logged_out_users_are_sent_to_login_and_the_plugin_is_not_called(client, notes):
    response = client.get(f"{NOTES}/notes")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert notes.calls == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/secret"), ("GET", "/notes/1/raw"), ("POST", "/admin"), ("PATCH", "/notes/1")],
)
def test_undeclared_routes_are_404_without_calling_the_plugin(client, member, notes, method, path):
    response = client.open(f"{NOTES}{path}", method=method, data={"x": "1"})
    assert response.status_code == 404
    assert notes.calls == []


def test_a_viewer_cannot_submit_a_member_action(client, make_user, login, notes):
    make_user("viewer@example.com", role="viewer")
    login("viewer@example.com")
    response = client.post(f"{NOTES}/notes", data={"title": "x"})
    assert response.status_code == 403
    assert "needs member" in response.get_data(as_text=True)
    assert notes.calls == []


def test_method_field_selects_the_declared_action(client, member, notes):
    notes.reply("DELETE", "/notes/5", status=303, headers={"Location": "/notes"})
    response = client.post(
        f"{NOTES}/notes/5", data={"_method": "DELETE", "csrf_token": "t", "why": "done"}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/plugin-proxy/notes/notes"
    (call,) = notes.calls
    assert call.method == "DELETE" and call.form == [("why", "done")]


def test_an_unknown_method_override_is_refused(client, member, notes):
    response = client.post(f"{NOTES}/notes", data={"_method": "TRACE"})
    assert response.status_code == 400
    assert notes.calls == []


def test_a_post_without_csrf_token_is_refused(app, client, member, notes):
    app.config["WTF_CSRF_ENABLED"] = True
    response = client.post(f"{NOTES}/notes", data={"title": "x"})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    assert notes.calls == []


def test_a_post_with_the_pages_csrf_token_goes_through(app, client, member, notes):
    app.config["WTF_CSRF_ENABLED"] = True
    notes.reply("POST", "/notes", body="<p>created</p>")
    html = client.get(f"{NOTES}/notes").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    response = client.post(f"{NOTES}/notes", data={"title": "x", "csrf_token": token})
    assert response.status_code == 200 and "<p>created</p>" in response.get_data(as_text=True)
    assert notes.calls_to("POST", "/notes")[0].form == [("title", "x")]


@pytest.mark.parametrize(
    ("reply", "status", "text"),
    [
        ({"status": 500}, 502, "ran into an error"),
        ({"status": 200, "body": "{}", "content_type": "application/json"}, 502, "not a page"),
        ({"status": 200, "delay_s": 1.5}, 504, "did not answer in time"),
    ],
)
def test_a_failing_plugin_shows_a_panel_in_the_layout(
    app, client, member, notes, shell_plugin, reply, status, text
):
    app.config["PROXY_TIMEOUT_S"] = 0.5
    shell_plugin(
        "healthy",
        base_url=notes.url,
        routes=[{"menu_id": "home", "label": "Home", "method": "GET", "path": "/home"}],
    )
    notes.reply("GET", "/notes", **reply)
    notes.reply("GET", "/home", body="<p>still here</p>")
    response = client.get(f"{NOTES}/notes")
    html = response.get_data(as_text=True)
    assert response.status_code == status
    assert 'class="panel-error" role="alert"' in html and text in html and "Notebook" in html
    assert "/plugin-proxy/healthy/home" in menu_links(html)
    assert "<p>still here</p>" in client.get("/plugin-proxy/healthy/home").get_data(as_text=True)


def test_a_refused_connection_shows_a_panel(client, member, shell_plugin):
    from tests.support.processes import free_port

    shell_plugin(base_url=f"http://127.0.0.1:{free_port()}")
    response = client.get(f"{NOTES}/notes")
    assert response.status_code == 502
    assert "is not reachable" in response.get_data(as_text=True)


def test_a_disabled_plugin_is_unavailable(client, member, notes, set_plugin_state):
    set_plugin_state("notes", "disabled")
    response = client.get(f"{NOTES}/notes")
    assert response.status_code == 503
    assert notes.calls == []


def test_iframe_views_load_in_a_sandboxed_frame(client, member, shell_plugin, stub_plugin):
    shell_plugin(
        "framed",
        base_url=stub_plugin.url,
        routes=[
            {"menu_id": "page", "label": "Page", "method": "GET", "path": "/page", "mode": "iframe"}
        ],
    )
    stub_plugin.reply("GET", "/page", body="<p>framed</p><script>x()</script>")
    html = client.get("/plugin-proxy/framed/page?x=1").get_data(as_text=True)
    frame = re.search(r"<iframe[^>]*>", html).group(0)
    assert 'src="/plugin-frame/framed/page?x=1"' in frame
    assert 'sandbox="allow-forms"' in frame
    assert stub_plugin.calls == []
    response = client.get("/plugin-frame/framed/page?x=1")
    assert "<p>framed</p>" in response.get_data(as_text=True)
    assert "<script" not in response.get_data(as_text=True)
    assert response.headers["Content-Security-Policy"].startswith("sandbox allow-forms;")
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert stub_plugin.calls[0].query == [("x", "1")]


def test_home_still_works_without_plugins(client, member):
    html = client.get("/").get_data(as_text=True)
    assert "No plugins are available to you yet." in html
