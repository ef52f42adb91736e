"""Both demo plugins pass every check of the contract checker (issue 16), run by a real core.

The core runs under gunicorn with Notebook (Python) and Tasks (Node) as real processes
(tests/support/shell_fixtures.Demo); the SDK's command asks it over HTTP with each plugin's own
token, and ``flask plugins check`` runs the same checks in its own process.
"""

import json
import subprocess
import sys

import pytest

from tests.support.processes import ROOT, flask_cli
from tests.support.shell_fixtures import Demo

TIMEOUTS = {"EXTFW_PROXY_TIMEOUT_S": "8", "EXTFW_HEALTH_TIMEOUT_S": "5"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    # Generous timeouts: a loaded machine must not fail a demo's calls.
    core = Demo(tmp_path_factory.mktemp("demo"), PROXY_TIMEOUT_S=8, HEALTH_TIMEOUT_S=5)
    try:
        core.start_python_plugin()
        core.start_node_plugin()
        core.wait_for_state("notebook", "active", timeout_s=60)
        core.wait_for_state("tasks", "active", timeout_s=60)
        yield core
    finally:
        core.stop()


def installed_manifest(demo: Demo, plugin_id: str, tmp_path) -> str:
    versions = demo.api.get(f"{demo.url}/api/registry/plugins/{plugin_id}/versions", timeout=10)
    path = tmp_path / f"{plugin_id}.json"
    path.write_text(json.dumps(versions.json()["versions"][0]["manifest"]))
    return str(path)


@pytest.mark.parametrize("plugin_id", ["notebook", "tasks"])
def test_the_sdk_check_passes_a_demo_plugin(demo, tmp_path, plugin_id):
    manifest = installed_manifest(demo, plugin_id, tmp_path)
    token_file = demo.base / f"{plugin_id}.token"
    result = subprocess.run(
        [sys.executable, "-m", "extframework_sdk.check", manifest, "--core", demo.url]
        + ["--token-file", str(token_file)],
        env={"PYTHONPATH": str(ROOT / "sdk"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert all(line.startswith("PASS ") for line in lines), result.stdout
    assert sum(line.startswith("PASS view-html ") for line in lines) >= 2


def test_flask_plugins_check_passes_a_demo_plugin_in_its_own_process(demo, tmp_path):
    manifest = installed_manifest(demo, "tasks", tmp_path)
    result = flask_cli(
        demo.instance,
        "plugins",
        "check",
        manifest,
        "--json",
        env={"EXTFW_BASE_URL": demo.url, **TIMEOUTS},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    checks = json.loads(result.stdout)
    assert all(check["level"] == "pass" for check in checks), checks
