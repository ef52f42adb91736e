"""On a phone (390 px) the no-script confirmation's question is a short heading of at most two
lines, what follows from it a paragraph below (issue 17).

The page the test client answered is loaded into Chromium with static/shell.css inlined: no
server, and scripts stay on so the heading can be measured.
"""

import re

import pytest

OPS = "ops@example.com"
EMAIL = "ann@example.com"  # a longer address can take a third line (docs/shell.md)


@pytest.fixture
def operator(make_user, login):
    make_user(OPS, role="admin", operator=True)
    login(OPS)


QUESTIONS = [
    ("/console/plugins/test-plugin/disable", "Really disable Test Plugin?"),
    ("/console/plugins/test-plugin/deregister", "Really remove Test Plugin?"),
    ("/console/plugins/test-plugin/rotate-token", "Really rotate Test Plugin's token?"),
    ("/console/users/{user}/password", f"Really set a new password for {EMAIL}?"),
    ("/console/users/{user}/role", f"Really make {EMAIL} viewer?"),
    ("/account/other-sessions/end", "Really sign out of every other session?"),
]


@pytest.mark.parametrize(("action", "asked"), QUESTIONS)
def test_the_no_script_question_takes_at_most_two_lines_on_a_phone(
    app,
    client,
    make_plugin,
    make_user,
    operator,
    browser,
    action,
    asked,
):
    make_plugin()
    user = make_user(EMAIL)
    form = {"role": "viewer", "password": "a long enough password"}
    body = client.post(action.format(user=user.id), data=form).get_data(as_text=True)
    assert 'data-testid="confirm"' in body
    with open(f"{app.static_folder}/shell.css", encoding="utf-8") as sheet:
        style = f"<style>{sheet.read()}</style>"
    body = re.sub(r'<link rel="stylesheet"[^>]*>', lambda _: style, body)
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        page.set_content(body)
        heading = page.get_by_role("heading", name=asked, exact=False)
        assert heading.count() == 1
        height, line = heading.evaluate(
            "h => [h.getBoundingClientRect().height, parseFloat(getComputedStyle(h).lineHeight)"
            " || parseFloat(getComputedStyle(h).fontSize) * 1.2]"
        )
        assert height <= 2 * line + 1, f"the question takes {height / line:.1f} lines"
        scroll, inner = page.evaluate(
            "() => [document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert scroll <= inner
    finally:
        context.close()


def test_the_detail_follows_the_question_in_a_paragraph(client, make_plugin, operator):
    make_plugin()
    body = client.post("/console/plugins/test-plugin/disable", data={}).get_data(as_text=True)
    assert '<h1 class="question">Really disable Test Plugin?</h1>' in body
    assert "<p>Its menus hide; its storage turns read-only.</p>" in body


def test_a_question_without_a_detail_is_the_whole_heading(client, make_plugin, operator):
    make_plugin()
    body = client.post(
        "/console/plugins/test-plugin/uninstall-policy",
        data={"tenant": "default", "policy": "purge"},
    ).get_data(as_text=True)
    assert re.search(r'<h1 class="question">Really purge [^<]+ when it is removed\?</h1>', body)
