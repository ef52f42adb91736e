"""Issue 16: plugin fragments can look native with the shell's ``xf-*`` classes.

``static/plugins.css`` defines the classes, the plugin guide documents each of them, and the
shell's sanitizer keeps each on the element a plugin puts it on.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CSS = (ROOT / "static/plugins.css").read_text()
GUIDE = (ROOT / "docs/plugin-guide.md").read_text()

# Each class on the element it is meant for, as a plugin would write it.
SAMPLES = {
    "xf-toolbar": '<div class="xf-toolbar"><h2>Notes</h2></div>',
    "xf-muted": '<p class="xf-muted">3 notes</p>',
    "xf-table": '<table class="xf-table"><tr><td>a</td></tr></table>',
    "xf-form": '<form method="post" action="/notes" class="xf-form"><input name="t"></form>',
    "xf-form--inline": '<form method="get" action="/notes" class="xf-form xf-form--inline">'
    '<input name="q"></form>',
    "xf-button": '<a class="xf-button" href="/notes/new">New</a>',
    "xf-button--primary": '<button type="submit" class="xf-button xf-button--primary">Add</button>',
    "xf-button--danger": '<form method="delete" action="/notes/1">'
    '<button class="xf-button xf-button--danger">Delete</button></form>',
    "xf-notice": '<div class="xf-notice" role="status">Saved.</div>',
    "xf-notice--info": '<p class="xf-notice xf-notice--info">Info</p>',
    "xf-notice--warning": '<p class="xf-notice xf-notice--warning">Careful</p>',
    "xf-notice--error": '<p class="xf-notice xf-notice--error" role="alert">Wrong</p>',
    "xf-notice--success": '<p class="xf-notice xf-notice--success">Done</p>',
    "xf-empty": '<div class="xf-empty"><p>No notes yet.</p></div>',
}


def css_classes() -> set[str]:
    """Every xf-* class the stylesheet styles (the --xf-* variables are not classes)."""
    return set(re.findall(r"\.(xf-[a-z0-9-]+)", CSS))


def test_the_samples_cover_every_class_the_stylesheet_styles():
    assert css_classes() == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_native_class_is_documented_in_the_guide(name):
    section = GUIDE.split("## Looking native", 1)[1].split("\n## ", 1)[0]
    assert f"`{name}`" in section, f"{name} is styled but the guide does not name it"


@pytest.fixture
def member(make_user, login):
    make_user("member@example.com", role="member")
    login("member@example.com")


def test_each_native_class_comes_through_the_shell_on_its_element(
    client, member, shell_plugin, stub_plugin
):
    shell_plugin(base_url=stub_plugin.url)
    stub_plugin.reply("GET", "/notes", body="\n".join(SAMPLES.values()))
    html = client.get("/plugin-proxy/notes/notes").get_data(as_text=True)
    fragment = html.split('<div class="plugin-fragment">', 1)[1]
    for name, sample in SAMPLES.items():
        tag = "form" if "xf-form" in name else re.search(rf'<(\w+)[^>]*"[^"]*{name}', sample)[1]
        classes = re.search(r'class="([^"]*)"', sample[sample.index(f"<{tag}") :])[1]
        kept = re.search(rf'<{tag}\b[^>]*\bclass="{re.escape(classes)}"', fragment)
        assert kept, f"{name} did not survive on <{tag}>"
