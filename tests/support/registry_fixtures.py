"""Fixtures for the registry tests, and for anyone who needs a registered plugin.

- ``plugin_server(mode="healthy", **options)``: start a real plugin process on a loopback port
  (tests/support/plugins/health_server.py); returns a Process with ``.url``/``.port`` and
  ``.set_mode(mode)``. Stopped after the test.
- ``healthy_plugin_server``: one such process answering 200 on /health.
- ``enrolment_key``: a plaintext enrolment key (unlimited uses) created through the service.
- ``make_plugin(manifest=None, *, state="active", probe=None, **overrides) -> (Plugin, token)``:
  registers through ``registry.register`` (SPEC §3 steps 1-7). The default manifest is
  ``sample_manifest()``; ``overrides`` replace its top-level fields (``plugin_id``,
  ``data_schemas``, ...). The health probe is a pass-through unless ``probe`` is given (or
  pass ``probe=registry.health_probe(2.0)`` with ``base_url=server.url`` to probe a real one).
  ``state`` walks the plugin through legal transitions (actor "test") to active (default),
  degraded, disabled, deregistered, migrating, or leaves it "registered".
"""

import copy
import itertools
import sys
from pathlib import Path

import pytest
import requests

from extframework.db import database
from extframework.services import enrolment, lifecycle, registry
from tests.support.processes import Process, free_port

PLUGIN_SCRIPT = Path(__file__).resolve().parent / "plugins" / "health_server.py"

ITEMS_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "count": {"type": "integer", "minimum": 0},
        "status": {"enum": ["open", "closed"]},
    },
    "required": ["title"],
}


def sample_manifest(**overrides) -> dict:
    """A small valid manifest: one menu with a view and two actions, one indexed collection."""
    manifest = {
        "plugin_id": "test-plugin",
        "name": "Test Plugin",
        "version": "1.0.0",
        "base_url": "http://127.0.0.1:9/test-plugin",
        "menu_items": [
            {
                "id": "items",
                "label": "Items",
                "view": {"method": "GET", "path": "/items"},
                "actions": [
                    {"id": "create", "method": "POST", "path": "/items"},
                    {"id": "delete", "method": "DELETE", "path": "/items/:id", "role": "admin"},
                ],
            }
        ],
        "data_schemas": [
            {
                "collection": "items",
                "schema": copy.deepcopy(ITEMS_SCHEMA),
                "indexes": [{"fields": ["title"]}],
            }
        ],
    }
    manifest.update(copy.deepcopy(overrides))
    return manifest


def passing_probe(base_url: str) -> None:
    """A health probe that accepts any URL, for tests that need no plugin process."""


# Legal paths from `registered` to each state (SPEC §6).
STATE_PATHS = {
    "registered": [],
    "active": ["active"],
    "degraded": ["active", "degraded"],
    "disabled": ["active", "disabled"],
    "deregistered": ["active", "disabled", "deregistered"],
    "migrating": ["active", "migrating"],
}


def start_plugin_process(tmp_path: Path, mode: str = "healthy", **options) -> Process:
    port = free_port()
    args = [sys.executable, str(PLUGIN_SCRIPT), "--port", str(port), "--mode", mode]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    process = Process(args, port, "/", log_path=tmp_path / f"plugin-{port}.log")
    process.set_mode = lambda new: _set_mode(process, new)
    return process


def _set_mode(process: Process, mode: str) -> None:
    response = requests.post(f"{process.url}/_mode", data=mode, timeout=5)
    response.raise_for_status()


@pytest.fixture
def plugin_server(tmp_path):
    started: list[Process] = []

    def start(mode: str = "healthy", **options) -> Process:
        process = start_plugin_process(tmp_path, mode, **options)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def healthy_plugin_server(plugin_server):
    return plugin_server("healthy")


@pytest.fixture
def enrolment_key(app):
    with app.app_context(), database.connection_context():
        _, secret = enrolment.create_key(actor="test", label="fixture")
    return secret


@pytest.fixture
def make_plugin(app):
    counter = itertools.count(1)

    def make(manifest: dict | None = None, *, state: str = "active", probe=None, **overrides):
        if manifest is None:
            n = next(counter)
            plugin_id = "test-plugin" if n == 1 else f"test-plugin-{n}"
            manifest = sample_manifest(plugin_id=plugin_id)
        manifest = {**manifest, **copy.deepcopy(overrides)}
        with app.app_context(), database.connection_context():
            plugin, token = registry.register(manifest, actor="test", probe=probe or passing_probe)
            for target in STATE_PATHS[state]:
                lifecycle.transition(plugin, target, cause="test setup", actor="test")
        return plugin, token

    return make
