"""Every write transaction takes the write lock first (db.write_transaction, BEGIN IMMEDIATE).

Issue 12: sequential requests got ``503 database table is locked``.
"""

import copy
import re
import sqlite3
import time
from pathlib import Path

import pytest
import requests
from peewee import OperationalError

from extframework.db import database, read_transaction, write_transaction
from extframework.models import Tenant
from extframework.services import enrolment
from tests.conftest import PASSWORD
from tests.support.processes import flask_cli, start_core
from tests.support.registry_fixtures import ITEMS_SCHEMA, sample_manifest

ROUNDS = 150
ROOT = Path(__file__).resolve().parent.parent


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def operator(make_user, login):
    make_user("ops@example.com", role="admin", operator=True)
    login("ops@example.com")


def two_collections(**overrides) -> dict:
    manifest = sample_manifest(**overrides)
    manifest["data_schemas"].append(
        {
            "collection": "notes",
            "schema": copy.deepcopy(ITEMS_SCHEMA),
            "indexes": [{"fields": ["count"]}],
        }
    )
    return manifest


def test_registering_a_deregistered_id_with_retained_data_again_is_not_503(
    app, client, operator, make_plugin, plugin_api, healthy_plugin_server
):
    _, token = make_plugin(two_collections())
    api = plugin_api(token)
    for collection in ("items", "notes"):
        assert api.create(collection, {"title": "kept"}).status_code == 201
    assert client.post("/api/registry/plugins/test-plugin/disable").status_code == 200
    assert client.post("/api/registry/plugins/test-plugin/deregister").status_code == 200
    with app.app_context(), database.connection_context():
        _, key = enrolment.create_key(actor="test", plugin_id="test-plugin")

    again = two_collections(version="1.1.0", base_url=healthy_plugin_server.url)
    response = client.post("/api/registry/plugins", json=again, headers=bearer(key))
    assert response.status_code == 201, response.get_json()


def test_tenants_and_uninstall_policy_writes_meet_no_503_while_the_health_monitor_writes(
    tmp_path, healthy_plugin_server
):
    """One request at a time against a real core whose health monitor writes every 0.2 s."""
    instance = tmp_path / "instance"
    core = start_core(tmp_path, workers=2, threads=2, HEALTH_MONITOR="true", HEALTH_INTERVAL_S=0.2)
    try:
        env = {"EXTFW_PASSWORD": PASSWORD}
        made = flask_cli(
            instance, "users", "create", "ops@example.com", "--role", "admin", "--operator", env=env
        )
        assert made.returncode == 0, made.stderr
        flask_cli(instance, "tenants", "create", "acme")
        key = flask_cli(instance, "enrolment-keys", "create").stdout.strip().splitlines()[-1]
        http = requests.Session()
        manifest = sample_manifest(base_url=healthy_plugin_server.url)
        registered = http.post(
            f"{core.url}/api/registry/plugins", json=manifest, headers=bearer(key), timeout=10
        )
        assert registered.status_code == 201, registered.text
        login = {"email": "ops@example.com", "password": PASSWORD}
        jwt = http.post(f"{core.url}/api/auth/token", json=login, timeout=10).json()
        http.headers["Authorization"] = f"Bearer {jwt['access_token']}"
        plugin_url = f"{core.url}/api/registry/plugins/test-plugin"
        deadline = time.monotonic() + 20
        while http.get(plugin_url, timeout=10).json()["state"] != "active":  # the monitor's write
            assert time.monotonic() < deadline, "the health monitor never activated the plugin"
            time.sleep(0.05)
        before = http.get(plugin_url, timeout=10).json()["last_health"]["at"]

        statuses = []
        for n in range(ROUNDS):
            tenants = [["default"], None, ["default", "acme"]][n % 3]
            put = http.put(f"{plugin_url}/tenants", json={"tenants": tenants}, timeout=10)
            statuses.append(put.status_code)
            policy = ["archive", "retain", "purge"][n % 3]
            put = http.put(
                f"{plugin_url}/tenants/default/uninstall-policy",
                json={"policy": policy},
                timeout=10,
            )
            statuses.append(put.status_code)
        checks = http.get(plugin_url, timeout=10).json()
    finally:
        core.stop()
    assert checks["last_health"]["at"] != before  # the monitor did write meanwhile
    refused = [line for line in core.logs().splitlines() if "database unavailable" in line]
    failed = [s for s in statuses if s != 200]
    assert failed == [], (f"{len(failed)} of {len(statuses)} not 200", refused[:3])


def test_no_service_opens_a_transaction_but_through_db():
    """The rule's guard: a plain ``database.atomic()`` (deferred) would upgrade its lock late.

    dialect.py holds each engine's form of the transactions, and only db.py asks for them.
    """
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "extframework").rglob("*.py"))
        if path.name != "db.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if (path.name != "dialect.py" and re.search(r"\.atomic\(|\.transaction\(|BEGIN", line))
        or re.search(r"\b(write|read|upgrade)_transaction\(database\)", line)
    ]
    assert offenders == [], "use db.write_transaction() or db.read_transaction()"


def test_a_write_transaction_holds_the_write_lock_before_its_first_statement(app):
    with app.app_context(), database.connection_context(), write_transaction():
        other = sqlite3.connect(app.config["DATABASE"], timeout=0)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()


def test_a_read_transaction_refuses_to_write_and_the_connection_writes_after(app):
    with app.app_context(), database.connection_context():
        with pytest.raises(OperationalError, match="readonly"), read_transaction():
            database.execute_sql("SELECT count(*) FROM plugin").fetchone()
            Tenant.create(slug="sneaky", name="Sneaky")
        with write_transaction():
            Tenant.create(slug="fine", name="Fine")
        assert Tenant.get_or_none(Tenant.slug == "fine") is not None
