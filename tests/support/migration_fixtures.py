"""Fixtures for the migration and uninstall tests.

- ``live_core``: serve the test ``app`` from a threaded HTTP server on a loopback port and make
  that URL its ``BASE_URL`` (so the migration context's ``storage_url`` and the JWT issuer
  point at it). On teardown waits for background migration attempts to end.
- ``migrating_plugin(core_url, mode="succeed", plugin_id="test-plugin")``: start
  tests/support/plugins/migrating_plugin.py; returns a Process with ``.set_mode(mode)`` and
  ``.calls()``.
- ``migration_manifest(version, base_url, status, **overrides)``: a manifest with collection
  ``items`` whose ``status`` property is ``status`` (a JSON Schema), migration handler
  ``/migrate``.
- ``wait_for(predicate)``: poll until true (bounded, so a bug fails instead of hanging).
"""

import copy
import sys
import time
from pathlib import Path

import pytest
import requests

from extframework.services import migrations
from tests.support.processes import Process, free_port, serve_app
from tests.support.registry_fixtures import sample_manifest

PLUGIN_SCRIPT = Path(__file__).resolve().parent / "plugins" / "migrating_plugin.py"
WAIT_S = 30.0

STRING_STATUS = {"type": "string"}
ENUM_STATUS = {"enum": ["open", "closed"]}


def migration_manifest(version: str, base_url: str, status: dict, **overrides) -> dict:
    """A manifest for the migrating plugin: collection ``items`` (title, status), indexed."""
    manifest = sample_manifest(
        version=version,
        base_url=base_url,
        data_schemas=[
            {
                "collection": "items",
                "schema": {
                    "type": "object",
                    "properties": {"title": {"type": "string"}, "status": copy.deepcopy(status)},
                    "required": ["title"],
                },
                "indexes": [{"fields": ["title"]}],
            }
        ],
        migration={"path": "/migrate", "timeout_s": 20},
    )
    manifest.update(copy.deepcopy(overrides))
    return manifest


def wait_for(predicate, timeout_s: float = WAIT_S, interval_s: float = 0.05):
    """Return the predicate's first truthy value; fail the test if none comes in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s: {predicate}")
        time.sleep(interval_s)


def start_migrating_plugin(
    tmp_path: Path, core_url: str, mode: str = "succeed", plugin_id: str = "test-plugin"
) -> Process:
    port = free_port()
    args = [
        sys.executable,
        str(PLUGIN_SCRIPT),
        "--port",
        str(port),
        "--core",
        core_url,
        "--plugin-id",
        plugin_id,
        "--mode",
        mode,
    ]
    process = Process(args, port, "/health", log_path=tmp_path / f"migrating-plugin-{port}.log")

    def set_mode(new: str) -> None:
        requests.post(f"{process.url}/_mode", data=new, timeout=5).raise_for_status()

    def calls() -> list[dict]:
        return requests.get(f"{process.url}/_calls", timeout=5).json()

    process.set_mode, process.calls = set_mode, calls
    return process


@pytest.fixture
def migrating_plugin(tmp_path):
    started: list[Process] = []

    def start(core_url: str, mode: str = "succeed", plugin_id: str = "test-plugin") -> Process:
        process = start_migrating_plugin(tmp_path, core_url, mode, plugin_id)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def live_core(app):
    """Serve the test app on a loopback port; its URL becomes the app's BASE_URL."""
    with serve_app(app) as url:
        app.config["BASE_URL"] = url
        yield url
        migrations.wait_for_attempts(WAIT_S)
