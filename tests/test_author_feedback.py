"""Issue 16: the core tells a plugin's author what their plugin did.

A plugin answering ``401`` refused the request JWT the core signed; one answering ``403``
(without an HTML fragment of its own) refused the person. Each gets a panel saying so, with a
hint an author can act on, instead of "sent something that is not a page". Every panel, and the
plugin's console page, shows the request id the plugin received as ``X-Request-ID``.
"""

import re

import pytest

NOTES = "/plugin-proxy/notes/notes"
INVALID_TOKEN = 'Bearer error="invalid_token", error_description="kid not found"'


@pytest.fixture
def member(make_user, login):
    make_user("member@example.com", role="member")
    login("member@example.com")


@pytest.fixture
def notes(shell_plugin, stub_plugin):
    shell_plugin(base_url=stub_plugin.url, name="Notebook")
    return stub_plugin


def panel(html: str) -> str:
    return html.split('class="panel-error"', 1)[1].split("</div>", 1)[0]


def shown_request_id(html: str) -> str:
    return re.search(r'class="request-id">Request id <code>([^<]+)</code>', html).group(1)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("text/plain", "invalid token"), ("text/html; charset=utf-8", "<p>go away</p>")],
)
def test_a_plugin_refusing_the_request_jwt_gets_a_panel_naming_it(
    client, member, notes, content_type, body
):
    notes.reply(
        "GET",
        "/notes",
        status=401,
        body=body,
        content_type=content_type,
        headers={"WWW-Authenticate": INVALID_TOKEN},
    )
    response = client.get(NOTES)
    html = response.get_data(as_text=True)
    assert response.status_code == 502  # the person's login is fine; the plugin refused the core
    assert "WWW-Authenticate" not in response.headers  # not the browser's credentials
    text = panel(html)
    assert 'data-fault="jwt-refused"' in html
    assert "Notebook refused the core&#39;s credentials" in text
    assert "not a page" not in text and "go away" not in text
    assert "JWKS" in text and "kid" in text and "leeway" in text
    assert "kid not found" in text  # what the plugin said in its challenge, for its author
    assert 'data-problem-type="urn:extframework:problem:bad-gateway"' in html


def test_a_plugin_refusing_the_person_gets_a_forbidden_panel(client, member, notes):
    notes.reply("POST", "/notes", status=403, body="forbidden", content_type="text/plain")
    response = client.post(NOTES, data={"title": "x"})
    html = response.get_data(as_text=True)
    assert response.status_code == 403
    text = panel(html)
    assert 'data-fault="person-refused"' in html
    assert "Notebook refused you" in text and "member" in text
    assert "not a page" not in text
    assert 'data-problem-type="urn:extframework:problem:forbidden"' in html


def test_a_plugins_own_403_page_is_still_shown(client, member, notes):
    notes.reply("GET", "/notes", status=403, body="<p>Only the owner may see this.</p>")
    response = client.get(NOTES)
    assert response.status_code == 403
    assert "<p>Only the owner may see this.</p>" in response.get_data(as_text=True)


@pytest.mark.parametrize("status", [401, 403])
def test_the_panel_shows_the_request_id_the_plugin_received(client, member, notes, status):
    notes.reply("GET", "/notes", status=status, body="no", content_type="text/plain")
    response = client.get(NOTES)
    html = response.get_data(as_text=True)
    sent = notes.calls_to("GET", "/notes")[-1].headers["X-Request-ID"]
    assert shown_request_id(html) == sent == response.headers["X-Request-ID"]


def test_the_plugins_console_page_lists_its_recent_faults_with_request_ids(
    client, make_user, login, notes
):
    make_user("op@example.com", role="admin", operator=True)
    login("op@example.com")
    notes.reply("GET", "/notes", status=401, body="bad token", content_type="text/plain")
    seen = client.get(NOTES).headers["X-Request-ID"]
    html = client.get("/console/plugins/notes").get_data(as_text=True)
    faults = html.split('data-testid="recent-faults"', 1)[1].split("</section>", 1)[0]
    assert seen in faults
    assert "GET /notes" in faults and "refused the core&#39;s credentials" in faults


def test_whatever_a_plugin_puts_in_its_challenge_is_shown_as_text(client, member, notes):
    """The plugin's WWW-Authenticate is quoted on the panel: escaped, printable, bounded."""
    hostile = 'Bearer error="<img src=x onerror=alert(1)>", x=\'"><script>steal()</script>'
    notes.reply(
        "GET",
        "/notes",
        status=401,
        body="",
        content_type="text/plain",
        headers={"WWW-Authenticate": hostile + "\u00e9" + "x" * 500},
    )
    response = client.get(NOTES)
    html = response.get_data(as_text=True)
    assert response.status_code == 502
    text = panel(html)
    assert "<img" not in html and "<script>steal" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "&lt;script&gt;steal()&lt;/script&gt;" in text
    assert "x" * 200 not in text  # bounded
