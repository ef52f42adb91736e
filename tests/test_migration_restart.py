"""A core killed in the middle of a migration (SPEC §7): nothing lost, a retry completes it.

Real processes: the core under gunicorn, SIGKILLed while the plugin's handler has rewritten
half of the documents, then started again on the same instance folder and port.
"""

import requests

from extframework import create_app
from extframework.db import database
from extframework.services import lifecycle, registry
from tests.support.migration_fixtures import (
    ENUM_STATUS,
    STRING_STATUS,
    migration_manifest,
    wait_for,
)
from tests.support.processes import core_env, flask_cli, free_port, start_core
from tests.support.registry_fixtures import passing_probe

STATUSES = ["OPEN", "Closed", "done", "open", "todo"]


def provision(instance, manifest: dict) -> str:
    """Register the plugin in the core's own database file and make it active."""
    app = create_app(
        {"DATABASE": str(instance / "extframework.sqlite3"), "HEALTH_MONITOR": False},
        instance_path=str(instance),
    )
    with app.app_context(), database.connection_context():
        plugin, token = registry.register(manifest, actor="test", probe=passing_probe)
        lifecycle.transition(plugin, "active", cause="test setup", actor="test")
    return token


def documents(core_url: str, token: str, tenant: str) -> list[dict]:
    response = requests.get(
        f"{core_url}/api/storage/items",
        params={"limit": "1000"},
        headers={"Authorization": f"Bearer {token}", "X-Tenant-ID": tenant},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_a_core_killed_mid_migration_resumes_migrating_and_a_retry_completes_it(
    tmp_path, migrating_plugin
):
    port = free_port()
    core_url = f"http://127.0.0.1:{port}"
    instance = tmp_path / "instance"
    env = core_env(instance, port)
    core = start_core(tmp_path, port=port)
    try:
        plugin = migrating_plugin(core_url, "partial-hang")
        token = provision(instance, migration_manifest("1.0.0", plugin.url, STRING_STATUS))
        assert flask_cli(instance, "tenants", "create", "acme", env=env).returncode == 0
        auth = {"Authorization": f"Bearer {token}"}
        for tenant in ("default", "acme"):
            for n in range(10):
                created = requests.post(
                    f"{core_url}/api/storage/items",
                    json={"title": f"{tenant} {n}", "status": STATUSES[n % len(STATUSES)]},
                    headers={**auth, "X-Tenant-ID": tenant},
                    timeout=10,
                )
                assert created.status_code == 201, created.text
        before = {t: documents(core_url, token, t) for t in ("default", "acme")}

        update = requests.put(
            f"{core_url}/api/registry/plugins/test-plugin",
            json=migration_manifest("2.0.0", plugin.url, ENUM_STATUS),
            headers=auth,
            timeout=10,
        )
        assert update.status_code == 202, update.text
        (call,) = wait_for(lambda: [c for c in plugin.calls() if c["stage"] == "blocked"] or None)
        assert call["rewritten"] == 8  # half of the 16 documents that need a new status
        core.kill()

        core = start_core(tmp_path, port=port)
        status = flask_cli(instance, "plugins", "migration", "status", "test-plugin", env=env)
        assert status.returncode == 0, status.stderr
        assert "test-plugin is migrating at version 1.0.0" in status.stdout
        assert "1.0.0 -> 2.0.0: interrupted after 1 attempt(s)" in status.stdout
        frozen = requests.get(f"{core_url}/api/storage/items", headers=auth, timeout=10)
        assert frozen.status_code == 503 and frozen.headers["Retry-After"] == "30"

        plugin.set_mode("succeed")
        retry = flask_cli(instance, "plugins", "migration", "retry", "test-plugin", env=env)
        assert retry.returncode == 0, retry.stdout + retry.stderr
        assert "test-plugin is active at version 2.0.0" in retry.stdout
        assert "succeeded after 2 attempt(s)" in retry.stdout
        assert plugin.calls()[-1]["rewritten"] == 8  # only what the first attempt left

        for tenant, docs in before.items():
            after = documents(core_url, token, tenant)
            assert sorted(d["id"] for d in after) == sorted(d["id"] for d in docs)
            old = {d["id"]: d for d in docs}
            for doc in after:
                assert doc["data"]["status"] in ("open", "closed")
                assert doc["data"]["title"] == old[doc["id"]]["data"]["title"]
                assert doc["created_at"] == old[doc["id"]]["created_at"]
                changed = doc["data"]["status"] != old[doc["id"]]["data"]["status"]
                assert doc["version"] == 1 + changed  # each rewritten exactly once
    finally:
        core.kill()
