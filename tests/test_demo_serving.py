"""Notebook as make run and the benches serve it (issue 14): gunicorn keeps connections alive."""

import http.client
from urllib.parse import urlsplit

import pytest

from tests.support.processes import login_session
from tests.support.shell_fixtures import PASSWORD, Demo


@pytest.fixture
def demo(tmp_path):
    core = Demo(tmp_path)
    yield core
    core.stop()


def answers_on_one_connection(url: str, count: int = 3) -> bool:
    """Ask ``count`` times on one connection; False when the server closes it after an answer."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        for _ in range(count):
            connection.request("GET", "/health")
            response = connection.getresponse()
            response.read()
            if response.status != 200 or response.will_close:
                return False
        return True
    finally:
        connection.close()


def test_werkzeugs_server_closes_every_connection(demo):
    """Why make run no longer uses it: the core would connect anew for every view."""
    plugin = demo.start_python_plugin()
    assert not answers_on_one_connection(plugin.url)


def test_notebook_under_gunicorn_keeps_its_connections_and_serves_views(demo):
    plugin = demo.start_python_plugin(gunicorn=True)
    assert answers_on_one_connection(plugin.url)
    demo.wait_for_state("notebook", "active", timeout_s=60)
    shell = login_session(demo.url, demo.admin, PASSWORD)
    page = shell.get(demo.url + "/plugin-proxy/notebook/notes", timeout=10)
    assert page.status_code == 200 and "No notes yet" in page.text
