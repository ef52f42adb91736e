"""Issue 16 end to end: a real plugin process refuses the core's credentials, and the shell says so.

The core runs under gunicorn; ``tests/support/plugins/refusing_plugin.py`` caches the JWKS once
and never refetches, the bug the panel's hint names. After ``keys rotate --now`` it answers
``401`` to every call: the person sees "refused the core's credentials" with the plugin's own
reason and the request id the plugin logged. A viewer it refuses sees "refused you" (``403``).
"""

import re
import sys

import pytest
import requests

from tests.support.processes import ROOT, Process, free_port, login_session
from tests.support.shell_fixtures import PASSWORD, Demo

VIEW = "/plugin-proxy/refusing/notes"


def manifest(base_url: str) -> dict:
    return {
        "plugin_id": "refusing",
        "name": "Refusing",
        "version": "1.0.0",
        "base_url": base_url,
        "menu_items": [
            {"id": "notes", "label": "Notes", "view": {"method": "GET", "path": "/notes"}}
        ],
    }


@pytest.fixture
def demo(tmp_path):
    demo = Demo(tmp_path)
    port = free_port()
    plugin = Process(
        [
            sys.executable,
            str(ROOT / "tests/support/plugins/refusing_plugin.py"),
            str(port),
            demo.url,
        ],
        port,
        "/health",
    )
    demo.plugins["refusing"] = plugin
    try:
        registered = requests.post(
            demo.url + "/api/registry/plugins",
            json=manifest(plugin.url),
            headers={"Authorization": f"Bearer {demo.enrolment_key}"},
            timeout=10,
        )
        assert registered.status_code == 201, registered.text
        demo.wait_for_state("refusing", "active")
        yield demo
    finally:
        demo.stop()


def panel_request_id(html: str) -> str:
    return re.search(r'class="request-id">Request id <code>([^<]+)</code>', html).group(1)


def plugin_calls(demo) -> list[dict]:
    return requests.get(demo.plugins["refusing"].url + "/_calls", timeout=5).json()


def test_a_plugin_with_a_stale_jwks_gets_a_panel_naming_the_refusal(demo):
    member = login_session(demo.url, demo.add_user("member@example.com"), PASSWORD)
    first = member.get(demo.url + VIEW, timeout=10)
    assert first.status_code == 200 and "Notes for" in first.text  # its JWKS copy is fresh

    demo.cli("keys", "rotate", "--now")  # a leaked key: the new one signs at once
    refused = member.get(demo.url + VIEW, timeout=10)
    assert refused.status_code == 502
    assert 'data-fault="jwt-refused"' in refused.text
    assert "Refusing refused the core&#39;s credentials" in refused.text
    assert "unknown kid" in refused.text  # the plugin's own reason, from its challenge
    assert "fetch them again when a token names a kid you have not seen" in refused.text
    assert "not a page" not in refused.text
    request_id = panel_request_id(refused.text)
    assert request_id == refused.headers["X-Request-ID"]
    assert plugin_calls(demo)[-1] == {"path": "/notes", "request_id": request_id, "status": 401}


def test_a_plugin_refusing_a_viewer_gets_a_forbidden_panel(demo):
    viewer = login_session(demo.url, demo.add_user("viewer@example.com", role="viewer"), PASSWORD)
    refused = viewer.get(demo.url + VIEW, timeout=10)
    assert refused.status_code == 403
    assert 'data-fault="person-refused"' in refused.text
    assert "Refusing refused you" in refused.text and "viewer" in refused.text
    assert panel_request_id(refused.text) == plugin_calls(demo)[-1]["request_id"]
