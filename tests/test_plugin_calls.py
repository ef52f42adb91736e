"""How the core calls plugins (issue 14): urllib3 directly, with requests' guarantees kept."""

import subprocess
import sys

import pytest

from extframework.services import plugin_http, proxy
from tests.support.processes import ROOT
from tests.support.shell_fixtures import StubPlugin

CALLER = proxy.Caller(
    user_id=7, name="Ada", email="ada@example.com", tenant="default", role="member"
)


def forward(app, target, *, method="GET", form=()):
    return proxy.forward(
        target,
        CALLER,
        method=method,
        query_string="",
        form=list(form),
        store=app.extensions["extframework.keys"],
        issuer="http://core.test",
        jwt_ttl_s=60,
        timeout_s=2.0,
    )


def test_serving_the_core_does_not_load_requests():
    """requests cost a view ~1 M instructions over urllib3 (README, performance)."""
    code = (
        "import sys; from extframework.services import plugin_http, proxy, health, migrations;"
        "print('requests' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


@pytest.fixture
def env_proxy(monkeypatch):
    """A proxy named by the environment: plugin calls must never go through it."""
    stub = StubPlugin()
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, stub.url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield stub
    stub.close()


def test_views_and_probes_ignore_an_environment_proxy(app, shell_plugin, stub_plugin, env_proxy):
    shell_plugin(base_url=stub_plugin.url)
    stub_plugin.reply("GET", "/notes", body="<p>direct</p>")
    stub_plugin.reply("GET", "/health", body="ok", content_type="text/plain")
    with app.app_context():
        target = proxy.resolve("notes", "GET", "/notes", role="member", tenant="default")
        assert forward(app, target) == proxy.Fragment("<p>direct</p>", 200)
    answer = plugin_http.call("GET", stub_plugin.url + "/health", timeout_s=2, max_body=100)
    assert (answer.status_code, answer.body) == (200, b"ok")
    assert env_proxy.calls == []


def test_a_form_is_forwarded_url_encoded_and_an_empty_post_has_no_body(
    app, shell_plugin, stub_plugin
):
    shell_plugin(base_url=stub_plugin.url)
    stub_plugin.reply("POST", "/notes", status=422, body="<p>again</p>")
    with app.app_context():
        target = proxy.resolve("notes", "POST", "/notes", role="member", tenant="default")
        forward(app, target, method="POST", form=[("title", "a & b"), ("tag", "x"), ("tag", "y")])
        forward(app, target, method="POST")
    sent, empty = stub_plugin.calls_to("POST", "/notes")
    assert sent.form == [("title", "a & b"), ("tag", "x"), ("tag", "y")]
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert empty.headers.get("Content-Length") == "0" and "Content-Type" not in empty.headers


def test_a_probe_does_not_follow_a_redirect(stub_plugin):
    stub_plugin.reply(
        "GET", "/health", status=302, body="", headers={"Location": stub_plugin.url + "/else"}
    )
    answer = plugin_http.call("GET", stub_plugin.url + "/health", timeout_s=2, max_body=100)
    assert answer.status_code == 302
    assert [c.path for c in stub_plugin.calls] == ["/health"]


def test_a_charset_the_plugin_names_decodes_the_fragment(app, shell_plugin, stub_plugin):
    shell_plugin(base_url=stub_plugin.url)
    stub_plugin.reply("GET", "/notes", body="<p>café</p>", content_type="text/html")
    with app.app_context():
        target = proxy.resolve("notes", "GET", "/notes", role="member", tenant="default")
        assert forward(app, target).html == "<p>café</p>"  # no charset: UTF-8
        stub_plugin.replies[("GET", "/notes")].content_type = 'text/html; charset="latin-1"'
        assert forward(app, target).html == "<p>cafÃ©</p>"  # the UTF-8 bytes read as Latin-1
