"""The console's plugin page: a summary first, then sections; health history collapsed and paged,
times relative with the exact time on hover (issue 17)."""

import html
import re
from datetime import datetime, timedelta

import pytest

from extframework.db import database
from extframework.models import HealthCheck, Plugin, PluginToken, utcnow
from extframework.relative_time import relative, time_tag
from extframework.services import lifecycle

OPS = "ops@example.com"
TIME = (
    r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">'
)


@pytest.fixture
def operator(make_user, login):
    make_user(OPS, role="admin", operator=True)
    login(OPS)


def add_checks(app, plugin_id: str, results: list[bool], *, start: datetime | None = None):
    """Store health checks oldest first, one a minute, ending a minute ago."""
    start = start or utcnow() - timedelta(minutes=len(results))
    with app.app_context(), database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == plugin_id)
        for n, ok in enumerate(results):
            HealthCheck.create(
                plugin=plugin,
                at=start + timedelta(minutes=n),
                ok=ok,
                status_code=200 if ok else 503,
                latency_ms=3.0,
                detail="ok" if ok else f"HTTP 503 number {n}",
            )


def section(body: str, testid: str) -> str:
    return re.search(rf'data-testid="{testid}"[^>]*>(.*?)</dd>', body, re.S).group(1)


def test_the_summary_says_state_meaning_uptime_last_failure_version_and_token_use(
    app, client, make_plugin, operator
):
    _, token = make_plugin(state="degraded", version="2.4.1")
    add_checks(app, "test-plugin", [True, True, False, True, False, False, False])
    client.get("/api/storage/items", headers={"Authorization": f"Bearer {token}"})
    body = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    summary = body.split('data-testid="summary"')[1].split("</section>")[0]
    # The summary comes before every other section, the action forms inside it.
    assert body.index('data-testid="summary"') < body.index('data-testid="tokens"')
    assert "/console/plugins/test-plugin/disable" in summary
    assert 'data-testid="state"' in summary and ">degraded<" in summary
    assert "Its health checks fail; it becomes active again when they pass." in summary
    assert "menus hidden · views not served · storage open · health checked" in summary
    assert "43% — 3 of the last 7 health checks passed" in html.unescape(section(body, "uptime"))
    failure = section(body, "last-failure")
    assert re.search(TIME + r"1 min ago</time>: HTTP 503 number 6$", failure)
    assert section(body, "version") == "2.4.1"
    assert re.search(TIME + "just now</time>", section(body, "token-last-used"))


def test_a_plugin_never_checked_or_failed_says_so(app, client, make_plugin, operator):
    make_plugin(state="registered")
    body = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    assert "no health checks yet" in section(body, "uptime")
    assert section(body, "last-failure") == "none recorded"
    assert section(body, "token-last-used").startswith("not yet")
    assert "becomes active when a health check first passes" in body


def test_last_failure_falls_back_to_the_move_to_degraded(app, client, make_plugin, operator):
    plugin, _ = make_plugin()
    with app.app_context(), database.connection_context():
        lifecycle.transition(plugin, "degraded", cause="3 failed checks", actor="health")
    body = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    assert re.search(TIME + r"just now</time>: 3 failed checks", section(body, "last-failure"))


def rows(body: str) -> list[str]:
    table = body.split('data-testid="health-history"')[1].split("</table>")[0]
    return re.findall(r"HTTP 503 number (\d+)|<td>ok</td>", table)


def test_health_history_is_collapsed_and_paged_by_the_query_string(
    app, client, make_plugin, operator
):
    make_plugin()
    add_checks(app, "test-plugin", [False] * 45)
    first = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    assert re.search(r'<details data-testid="health-details">\s*<summary>45 check', first)
    assert rows(first) == [str(n) for n in range(44, 24, -1)]
    assert len(re.findall(TIME, first.split('data-testid="health-history"')[1])) >= 20
    older = html.unescape(
        re.search(r'href="([^"]+)" rel="next" data-testid="health-older"', first).group(1)
    )
    assert older == "/console/plugins/test-plugin?health_page=2#health"
    third = client.get("/console/plugins/test-plugin?health_page=3").get_data(as_text=True)
    assert '<details data-testid="health-details" open>' in third
    assert rows(third) == [str(n) for n in range(4, -1, -1)]
    assert 'data-testid="health-older"' not in third and 'rel="prev"' in third
    again = client.get("/console/plugins/test-plugin?health_page=3").get_data(as_text=True)
    assert rows(again) == rows(third)
    for bad in ("abc", "-1", "0", "1e9"):
        response = client.get(f"/console/plugins/test-plugin?health_page={bad}")
        assert response.status_code == 200
        assert rows(response.get_data(as_text=True)) == rows(first), bad


def test_token_times_are_relative_with_the_exact_time_on_hover(app, client, make_plugin, operator):
    make_plugin()
    with app.app_context(), database.connection_context():
        PluginToken.update(last_used_at=utcnow() - timedelta(minutes=3)).execute()
    body = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    tokens = body.split('data-testid="tokens"')[1].split("</section>")[0]
    assert re.search(TIME + "3 min ago</time>", tokens)
    assert re.search(TIME + "3 min ago</time>", section(body, "token-last-used"))


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0, "just now"),
        (42, "42 s ago"),
        (180, "3 min ago"),
        (7200 + 59, "2 h ago"),
        (86400, "1 day ago"),
        (3 * 86400, "3 days ago"),
        (400 * 86400, "1 year ago"),
        (-3600, "in 1 h"),
    ],
)
def test_relative_time_says_the_largest_whole_unit(seconds, said):
    now = datetime(2026, 12, 1, 12, 0, 0)
    assert relative(now - timedelta(seconds=seconds), now) == said


def test_the_time_tag_carries_the_exact_time_and_escapes():
    now = datetime(2026, 12, 1, 12, 0, 0)
    tag = time_tag("2026-12-01T11:57:00.123456Z", now=now)  # 2 min 59.9 s ago
    exact = '<time datetime="2026-12-01T11:57:00Z" title="2026-12-01 11:57:00 UTC">'
    assert tag == exact + "2 min ago</time>"
    assert time_tag(None, "<never>") == "&lt;never&gt;"
