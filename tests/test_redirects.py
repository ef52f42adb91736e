"""Redirects a browser follows stay on the core: plugin `Location`s and the login's `next`.

Issue 11: `/<TAB>/host` and `/\\host` are other hosts to a browser, whatever `urlsplit` says.
"""

from types import SimpleNamespace

import pytest

from extframework.services import proxy

PLUGIN = SimpleNamespace(plugin_id="notes", base_url="http://127.0.0.1:9001/plugin")
REQUEST_URL = PLUGIN.base_url + "/notes"

OFF_SITE = [
    "/\t/evil.example/x",
    "/\n/evil.example/x",
    "/\r\n/evil.example/x",
    "/\\evil.example/x",
    "\\\\evil.example/x",
    "\\/evil.example/x",
    "//evil.example/x",
    " //evil.example/x",
    "\x01//evil.example/x",
    "ht\ttps://evil.example/x",
    "https://evil.example/plugin/notes",
    "http://127.0.0.1:9001/other",
    "http://127.0.0.1:9001/plugin/../other",
    "javascript:alert(1)",
]


@pytest.mark.parametrize("location", OFF_SITE)
def test_a_plugin_redirect_that_a_browser_reads_as_off_site_is_refused(location):
    assert proxy.shell_location(location, REQUEST_URL, PLUGIN) is None


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/notes", "/plugin-proxy/notes/notes"),
        ("/plugin/notes/3", "/plugin-proxy/notes/notes/3"),
        ("notes?saved=1", "/plugin-proxy/notes/notes?saved=1"),
        ("/%2e%2e/%2e%2e/console/users", "/plugin-proxy/notes/console/users"),
        ("/.//evil.example/x", "/plugin-proxy/notes//evil.example/x"),
        ("/no\ttes#top", "/plugin-proxy/notes/notes#pv-top"),
        ("http://127.0.0.1:9001/plugin/a/%2E%2E/b", "/plugin-proxy/notes/b"),
    ],
)
def test_a_plugin_redirect_inside_the_plugin_maps_to_the_shell(location, expected):
    assert proxy.shell_location(location, REQUEST_URL, PLUGIN) == expected


@pytest.fixture
def member(make_user, login):
    make_user("member@example.com", role="member")
    login("member@example.com")


def test_a_tab_redirect_from_a_real_plugin_is_the_bad_redirect_panel(
    client, member, shell_plugin, stub_plugin
):
    shell_plugin(base_url=stub_plugin.url)
    stub_plugin.reply("POST", "/notes", status=303, headers={"Location": "/\t/evil.example/x"})
    response = client.post("/plugin-proxy/notes/notes", data={"title": "x"})
    assert response.status_code == 502
    assert 'data-fault="bad-redirect"' in response.get_data(as_text=True)
    assert "Location" not in response.headers


@pytest.fixture
def person(make_user):
    make_user("person@example.com")
    return {"email": "person@example.com", "password": "correct horse battery"}


@pytest.mark.parametrize(
    "next_",
    [
        "/%09/evil.example",
        "/%0a/x",
        "/%0d%0a/x",
        "/%5Cevil.example",
        "%5C%5Cevil.example",
        "//evil.example",
        "%20//evil.example",
        "https://evil.example/",
        "http://localhost/console",
        "javascript:alert(1)",
    ],
)
def test_an_off_site_next_after_login_goes_home(client, person, next_):
    response = client.post(f"/login?next={next_}", data=person)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize(
    ("next_", "expected"),
    [
        ("/console/users", "/console/users"),
        ("/plugin-proxy/notes/notes?page=2", "/plugin-proxy/notes/notes?page=2"),
        ("/plugin-proxy/notes/%2e%2e/%2e%2e/console", "/console"),
        ("/.//evil.example", "/evil.example"),  # a path here, never "//evil.example"
    ],
)
def test_an_on_site_next_is_followed(client, person, next_, expected):
    response = client.post(f"/login?next={next_}", data=person)
    assert response.status_code == 302 and response.headers["Location"] == expected
