"""Screenshots of the main pages at 1366×900 and 390×844 into docs/screenshots/ (issue 17).

Usage, from the repository's root: .venv/bin/python scripts/screenshots.py

It starts what the browser tests start (tests/support/shell_fixtures.py's Demo: the core under
gunicorn and both demo plugins on loopback ports, in a temporary folder), plus "Reports", a
small plugin (tests/support/plugins/health_server.py) that is made to fail its health checks for
the degraded-notice shots. Debian's Chromium, never a downloaded browser. JPEG, quality 60, the
viewport only. Not part of `make test`.
"""

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import Browser, Page, expect  # noqa: E402

from tests.support.browser import chromium  # noqa: E402
from tests.support.registry_fixtures import sample_manifest, start_plugin_process  # noqa: E402
from tests.support.shell_fixtures import PASSWORD, Demo  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
WIDTHS = {"desktop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}
MEMBER = "member@example.com"
TENANT_ADMIN = "acme-admin@example.com"


def start(base: Path) -> tuple[Demo, object]:
    """The demo stack with a few people, a note, and the Reports plugin active."""
    demo = Demo(base, HEALTH_INTERVAL_S=0.5, HEALTH_FAILURES=2, LIVE_POLL_S=1)
    reports = start_plugin_process(base)
    demo.plugins["reports"] = reports
    demo.add_user(MEMBER, role="member")
    demo.add_user("viewer@example.com", role="viewer")
    demo.add_user(TENANT_ADMIN, role="admin", tenant="acme")
    demo.add_user("carol@example.com", role="member", tenant="acme")
    demo.start_python_plugin()
    demo.start_node_plugin()
    demo.register(
        sample_manifest(plugin_id="reports", name="Reports", base_url=f"{reports.url}/reports")
    )
    for plugin_id in ("notebook", "tasks", "reports"):
        demo.wait_for_state(plugin_id, "active")
    for plugin_id in ("notebook", "tasks"):
        answer = demo.api.put(
            f"{demo.url}/api/registry/plugins/{plugin_id}/tenants",
            json={"tenants": ["default", "acme"]},
            timeout=10,
        )
        answer.raise_for_status()
    return demo, reports


@contextmanager
def logged_in(
    browser: Browser, demo: Demo, email: str, width: str, **options: object
) -> Iterator[Page]:
    context = browser.new_context(base_url=demo.url, viewport=WIDTHS[width], **options)
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("current-user")).to_be_attached()
    try:
        yield page
    finally:
        context.close()


def shot(page: Page, name: str) -> None:
    page.wait_for_load_state("networkidle")
    path = OUT / f"{name}.jpg"
    page.screenshot(path=path, type="jpeg", quality=60, full_page=False)
    print(f"{path.relative_to(ROOT)}  {path.stat().st_size // 1024} KiB")


def add_a_note(browser: Browser, demo: Demo) -> None:
    with logged_in(browser, demo, MEMBER, "desktop") as page:
        page.get_by_role("navigation", name="Plugins").get_by_role("link", name="Notes").click()
        main = page.locator("main")
        main.get_by_label("Title", exact=True).fill("Quarterly planning")
        main.get_by_label("Body", exact=True).fill("Agenda: budgets, hiring, the Q3 roadmap.")
        main.get_by_role("button", name="Add note").click()
        page.wait_for_load_state("networkidle")


def pages(browser: Browser, demo: Demo, width: str) -> None:
    with logged_in(browser, demo, MEMBER, width) as page:
        if width == "phone":  # the phone's home is the folded menu
            shot(page, "menu-folded-phone")
            page.get_by_text("Menu", exact=True).click()
            shot(page, "menu-unfolded-phone")
            page.get_by_text("Menu", exact=True).click()
        else:
            shot(page, "shell-home-desktop")
        page.goto("/plugin-proxy/notebook/notes")
        shot(page, f"plugin-view-{width}")
    with logged_in(browser, demo, demo.admin, width) as page:
        for path, name in (
            ("/console/plugins", "console-plugins"),
            ("/console/plugins/notebook", "plugin-page"),
            ("/console/users", "users"),
            ("/console/audit", "audit-log"),
        ):
            page.goto(path)
            shot(page, f"{name}-{width}")
    with logged_in(browser, demo, TENANT_ADMIN, width) as page:
        page.goto("/console/tenants/acme")
        shot(page, f"tenant-admin-{width}")
    # Without scripts a destructive action answers with a confirmation step (a page).
    with logged_in(browser, demo, demo.admin, width, java_script_enabled=False) as page:
        page.goto("/console/plugins/tasks")
        page.get_by_role("button", name="Disable", exact=True).click()
        shot(page, f"confirm-step-{width}")
    with logged_in(browser, demo, demo.admin, width, color_scheme="dark") as page:
        page.goto("/console/plugins/notebook")
        shot(page, f"dark-plugin-page-{width}")


def degraded(browser: Browser, demo: Demo, width: str) -> None:
    with logged_in(browser, demo, MEMBER, width) as page:
        notice = page.locator('.menu-notice[data-notice="reports"]')
        if width == "phone":
            expect(page.locator("[data-menu-alert]")).to_be_visible(timeout=30_000)
            shot(page, "degraded-menu-folded-phone")
            page.get_by_text("Menu", exact=True).click()
        expect(notice).to_be_visible(timeout=30_000)
        shot(page, f"degraded-notice-{width}")
    if width == "desktop":  # the summary with a last failure and its reason
        with logged_in(browser, demo, demo.admin, width) as page:
            page.goto("/console/plugins/reports")
            expect(page.get_by_test_id("last-failure")).to_contain_text("answered")
            shot(page, "plugin-page-degraded-desktop")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.jpg"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp:
        demo, reports = start(Path(tmp))
        try:
            with chromium() as browser:
                add_a_note(browser, demo)
                for width in WIDTHS:
                    pages(browser, demo, width)
                reports.set_mode("error")
                demo.wait_for_state("reports", "degraded")
                for width in WIDTHS:
                    degraded(browser, demo, width)
        finally:
            demo.stop()
    total = sum(path.stat().st_size for path in OUT.glob("*.jpg"))
    print(f"{len(list(OUT.glob('*.jpg')))} screenshots, {total // 1024} KiB in {OUT}")


if __name__ == "__main__":
    main()
