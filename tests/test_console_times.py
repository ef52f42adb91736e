"""Console polish of issue 17: every time relative with the exact time on hover, a health
failure's status said once, and the live "Last check" the same ``<time>`` as the page."""

import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest

from extframework.db import database
from extframework.models import Archive, HealthCheck, MigrationRun, Plugin, utcnow
from extframework.services import audit, enrolment, faults, plugin_page
from tests.support.registry_fixtures import sample_manifest

OPS = "ops@example.com"
RAW_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
FAILURE = "http://127.0.0.1:9/health answered HTTP 500 Internal Server Error"


class VisibleText(HTMLParser):
    """The text a person reads: no attributes, no scripts; ``<code>`` apart (JSON details)."""

    def __init__(self):
        super().__init__()
        self.text, self.times, self._skip = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "code", "textarea"):
            self._skip.append(tag)
        if tag == "time":
            self.times.append(dict(attrs))

    def handle_endtag(self, tag):
        if self._skip and self._skip[-1] == tag:
            self._skip.pop()

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def read(body: str) -> VisibleText:
    parser = VisibleText()
    parser.feed(body)
    return parser


@pytest.fixture
def operator(make_user, login):
    make_user(OPS, role="admin", operator=True)
    login(OPS)


@pytest.fixture
def plugin_with_history(app, make_plugin, operator):
    """A plugin with a failed check, a failed migration run, a restored archive and a fault."""
    make_plugin(state="degraded")
    with app.app_context(), database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == "test-plugin")
        earlier = utcnow() - timedelta(minutes=5)
        HealthCheck.create(
            plugin=plugin, at=earlier, ok=False, status_code=500, latency_ms=2.0, detail=FAILURE
        )
        Plugin.update(last_health_at=earlier, last_health_ok=False, consecutive_failures=3).where(
            Plugin.id == plugin.id
        ).execute()
        MigrationRun.create(
            plugin=plugin,
            from_version="1.0.0",
            to_version="2.0.0",
            manifest={**sample_manifest(), "migration": {"path": "/migrate"}},
            state="failed",
            started_at=earlier,
            finished_at=earlier + timedelta(seconds=30),
            last_error="the handler answered 500",
        )
        Archive.create(
            plugin_id="test-plugin",
            tenant="default",
            path="test-plugin/default.jsonl.gz",
            sha256="0" * 64,
            documents=1,
            size_bytes=10,
            created_by="test",
            restored_at=earlier,
            restored_by="test",
        )
        audit.record(OPS, "test.event", "plugin:test-plugin", {"n": 1})
        enrolment.create_key(actor="test", uses=None, expires_in=None, label="ci")
    fault = faults.Fault("timeout", "Test Plugin is slow", "No answer in time.", 504, (), "")
    faults.remember("test-plugin", "GET", "/notes", "req-1", fault)


@pytest.mark.parametrize(
    "url",
    [
        "/console/audit",
        "/console/plugins",
        "/console/plugins/test-plugin",
        "/console/users",
        "/console/tenants",
        "/console/enrolment-keys",
        "/console/tenants/default",
        "/account/password",
    ],
)
def test_console_pages_show_no_raw_iso_time(client, plugin_with_history, url):
    answer = client.get(url)
    assert answer.status_code == 200, url
    page = read(answer.get_data(as_text=True))
    raw = [line for line in "".join(page.text).splitlines() if RAW_ISO.search(line)]
    assert raw == [], f"{url} shows raw times: {raw}"
    if url not in ("/console/tenants/default", "/account/password"):  # no times there
        assert page.times, f"{url} has no <time> element"
    for attrs in page.times:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", attrs["datetime"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", attrs["title"])


def test_the_audit_log_says_when_as_a_time_element(client, plugin_with_history):
    body = client.get("/console/audit").get_data(as_text=True)
    row = re.search(r'<tr data-event="\d+"><td>\d+</td><td>(.*?)</td>', body).group(1)
    assert re.fullmatch(r'<time datetime="[^"]+" title="[^"]+ UTC">just now</time>', row), row


def test_a_health_failure_says_its_status_once(client, plugin_with_history):
    body = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    text = "".join(read(body).text)
    assert FAILURE in text
    assert text.count("HTTP 500") == text.count(FAILURE), "the status is said twice"
    live = client.get("/console/live?plugin=test-plugin&summary=test-plugin").json
    parts = live["plugins"]["test-plugin"]["summary"]["last_failure"]
    said = "".join(part for part in parts if isinstance(part, str))
    assert said.count("HTTP 500") == 1, said


def test_a_status_the_reason_does_not_say_is_added(app, client, make_plugin, operator):
    make_plugin(state="degraded")
    with app.app_context(), database.connection_context():
        plugin = Plugin.get(Plugin.plugin_id == "test-plugin")
        HealthCheck.create(plugin=plugin, ok=False, status_code=503, detail="not ready")
    live = client.get("/console/live?plugin=test-plugin&summary=test-plugin").json
    failure = live["plugins"]["test-plugin"]["summary"]["last_failure"]
    assert "".join(failure[1:]) == ": not ready (HTTP 503)"
    body = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    assert "not ready (HTTP 503)" in "".join(read(body).text)


def _last_check(body: str) -> str:
    return re.search(r'<dd data-live-health="test-plugin">(.*?)</dd>', body, re.S).group(1)


def test_the_live_last_check_is_the_time_element_the_page_renders(client, plugin_with_history):
    body = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    rendered = _last_check(body)
    assert re.fullmatch(
        r'failed · <time datetime="[^"]+Z" title="[^"]+ UTC">5 min ago</time>'
        r" · <b>3 failure\(s\) in a row</b>",
        rendered,
    ), rendered
    live = client.get("/console/live?plugin=test-plugin&summary=test-plugin").json
    parts = live["plugins"]["test-plugin"]["health_parts"]
    time = re.search(r'datetime="([^"]+)" title="([^"]+)">([^<]+)<', rendered).groups()
    assert parts == [
        "failed · ",
        dict(zip(("at", "title", "ago"), time, strict=True)),
        " · ",
        {"strong": "3 failure(s) in a row"},
    ]


def test_a_plugin_never_checked_says_so_live_and_on_the_page(client, make_plugin, operator):
    make_plugin(state="registered")
    body = client.get("/console/plugins/test-plugin").get_data(as_text=True)
    assert _last_check(body) == "not checked yet"
    live = client.get("/console/live?plugin=test-plugin").json["plugins"]["test-plugin"]
    assert live["health_parts"] == ["not checked yet"]


@pytest.mark.parametrize(
    ("detail", "status", "said"),
    [
        (FAILURE, 500, FAILURE),
        ("http://x/health answered 500", 500, "http://x/health answered 500"),
        ("not ready", 503, "not ready (HTTP 503)"),
        (
            "http://127.0.0.1:5000/health gave no answer",
            None,
            "http://127.0.0.1:5000/health gave no answer",
        ),
        (
            "http://127.0.0.1:500/health refused",
            500,
            "http://127.0.0.1:500/health refused (HTTP 500)",
        ),
    ],
)
def test_reason_adds_the_status_only_when_not_said(detail, status, said):
    assert plugin_page.reason(detail, status) == said
