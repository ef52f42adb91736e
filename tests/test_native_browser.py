"""Issue 16 in real Chromium: a Notebook view wears the shell's xf-* styles, light and dark.

The real core under gunicorn and the Python demo plugin; one browser context per colour scheme.
What is checked is computed style, not pixels: an ``xf-button`` is styled unlike a plain
``<button>`` placed beside it, the empty state and the error notice carry their look, and in
dark mode the fragment turns dark while its primary button stays legible.
"""

import re

import pytest
from playwright.sync_api import expect

from tests.support.shell_fixtures import PASSWORD, Demo

STYLES = """() => {
  const fragment = document.querySelector('.plugin-fragment');
  const plain = document.createElement('button');
  plain.textContent = 'plain';
  fragment.appendChild(plain);
  const pick = (el) => {
    const s = getComputedStyle(el);
    return {background: s.backgroundColor, color: s.color, border: s.borderTopStyle,
            borderLeft: s.borderLeftColor, weight: s.fontWeight};
  };
  const out = {
    fragment: pick(fragment),
    plain: pick(plain),
    primary: pick(document.querySelector('.xf-button--primary')),
    empty: pick(document.querySelector('.xf-empty')),
    notice: pick(document.querySelector('.xf-notice--error')),
  };
  plain.remove();
  return out;
}"""


def luminance(css_colour: str) -> float:
    """Relative luminance (WCAG) of a computed colour: ``rgb(...)`` or ``color(srgb ...)``."""
    values = [float(v) for v in re.findall(r"[\d.]+", css_colour)[:3]]
    r, g, b = values if css_colour.startswith("color(srgb") else (v / 255 for v in values)

    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    demo = Demo(tmp_path_factory.mktemp("native"))
    try:
        demo.add_user("member@example.com", role="member")
        demo.start_python_plugin()
        demo.wait_for_state("notebook", "active")
        yield demo
    finally:
        demo.stop()


def styles_of_the_categories_view(demo, browser, scheme: str) -> dict:
    context = browser.new_context(base_url=demo.url, color_scheme=scheme)
    try:
        page = context.new_page()
        page.goto("/login")
        page.get_by_label("Email").fill("member@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_test_id("current-user")).to_be_visible()
        # A loaded machine can make a health probe time out: the view needs the plugin active.
        demo.wait_for_state("notebook", "active", timeout_s=60)
        page.goto("/plugin-proxy/notebook/categories")
        add = page.get_by_role("button", name="Add category")
        expect(add, f"no form on: {page.content()[:1500]}").to_be_visible()
        add.click()  # empty name: an error notice
        expect(page.get_by_role("alert")).to_be_visible()
        expect(page.locator(".xf-empty")).to_be_visible()
        return page.evaluate(STYLES)
    finally:
        context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_demo_view_wears_the_native_classes(demo, browser, scheme):
    styles = styles_of_the_categories_view(demo, browser, scheme)
    plain, primary = styles["plain"], styles["primary"]
    assert (primary["border"], primary["weight"]) != (plain["border"], plain["weight"])
    assert primary["border"] == "solid" and plain["border"] == "none"
    assert contrast(primary["color"], primary["background"]) >= 4.5
    assert styles["empty"]["border"] == "dashed"
    notice = styles["notice"]
    assert notice["background"] != styles["fragment"]["background"]  # a tint of the card
    assert contrast(notice["color"], notice["background"]) >= 4.5
    fragment = luminance(styles["fragment"]["background"])
    if scheme == "light":
        assert fragment > 0.9
    else:
        assert fragment < 0.1
        assert luminance(styles["fragment"]["color"]) > 0.6


def test_dark_and_light_differ(demo, browser):
    light = styles_of_the_categories_view(demo, browser, "light")
    dark = styles_of_the_categories_view(demo, browser, "dark")
    for part in ("fragment", "primary", "notice"):
        assert light[part]["background"] != dark[part]["background"], part
