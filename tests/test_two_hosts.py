"""Two app hosts on one PostgreSQL database (SPEC §9, issue 15).

Each host is the real core under gunicorn with two workers and an instance folder of its own;
they share only the database URL, ``SECRET_KEY`` and ``ARCHIVE_PATH``, as hosts behind a load
balancer would. What one host issues or writes, the other accepts or reads at once.
"""

import re
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
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
from tests.support.nginx import start_balancer
from tests.support.processes import core_env, flask_cli, free_port, login_session, start_core
from tests.support.registry_fixtures import passing_probe, sample_manifest
from tests.support.storage_fixtures import notes_collection

pytestmark = pytest.mark.postgres

SECRET = "two-hosts-share-this-secret"
OPERATOR, PASSWORD = "ops@example.com", "a long enough password"
WRITER = Path(__file__).resolve().parent / "support" / "writer.py"


@pytest.fixture
def shared(tmp_path, empty_database_url):
    """What every host's configuration shares: the database, the secret, archives, the URL."""
    return {
        "DATABASE_URL": empty_database_url,
        "SECRET_KEY": SECRET,
        "ARCHIVE_PATH": tmp_path / "archives",
        # The load balancer's address: the `iss` of every JWT, whichever host minted it, and
        # where plugins call the core (tests that need it start the balancer there).
        "BASE_URL": f"http://127.0.0.1:{free_port()}",
    }


def start_host(tmp_path: Path, name: str, shared: dict, **config):
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    return start_core(folder, workers=2, **shared, **config)


def host_env(host, shared: dict) -> dict:
    return core_env(Path(host.log_path).parent / "instance", host.port, **shared)


def tooling(tmp_path: Path, shared: dict):
    """An app in this process on the shared database, to register plugins as the tests need."""
    return create_app(
        {"TESTING": True, "HEALTH_MONITOR": False, **{k: str(v) for k, v in shared.items()}},
        instance_path=str(tmp_path / "tooling"),
    )


def register(app, manifest: dict) -> str:
    with app.app_context(), database.connection_context():
        plugin, token = registry.register(manifest, actor="test", probe=passing_probe)
        lifecycle.transition(plugin, "active", cause="test setup", actor="test")
    return token


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_what_one_host_issues_or_writes_the_other_accepts_at_once(tmp_path, shared):
    a = start_host(tmp_path, "a", shared)
    b = start_host(tmp_path, "b", shared)
    try:
        env_a, env_b = host_env(a, shared), host_env(b, shared)
        instance_a = Path(a.log_path).parent / "instance"
        created = flask_cli(
            instance_a,
            *("users", "create", OPERATOR, "--role", "admin", "--operator"),
            env={**env_a, "EXTFW_PASSWORD": PASSWORD},
        )
        assert created.returncode == 0, created.stderr
        token = register(
            tooling(tmp_path, shared),
            sample_manifest(plugin_id="acme-notes", data_schemas=[notes_collection()]),
        )

        # A write through A is read through B at once; a cursor from A pages on B.
        for n in range(3):
            made = requests.post(
                f"{a.url}/api/storage/notes", json={"title": f"n{n}"}, headers=bearer(token)
            )
            assert made.status_code == 201, made.text
        listed = requests.get(f"{b.url}/api/storage/notes?limit=2", headers=bearer(token))
        assert [d["data"]["title"] for d in listed.json()["items"]] == ["n0", "n1"]
        first = requests.get(f"{a.url}/api/storage/notes?limit=2", headers=bearer(token)).json()
        rest = requests.get(
            f"{b.url}/api/storage/notes",
            params={"limit": "2", "cursor": first["next_cursor"]},
            headers=bearer(token),
        )
        assert rest.status_code == 200, rest.text
        assert [d["data"]["title"] for d in rest.json()["items"]] == ["n2"]

        # A session and a user JWT from A are accepted by B.
        browser = login_session(a.url, OPERATOR, PASSWORD)
        home = browser.get(f"{b.url}/", allow_redirects=False)
        assert home.status_code == 200, home.headers.get("Location")
        user_jwt = requests.post(
            f"{a.url}/api/auth/token", json={"email": OPERATOR, "password": PASSWORD}
        ).json()["access_token"]
        assert requests.get(f"{b.url}/api/auth/me", headers=bearer(user_jwt)).status_code == 200

        # `keys rotate --now` on A: within a second or so B signs with the new key only and
        # refuses what the withdrawn one signed.
        rotated = flask_cli(instance_a, "keys", "rotate", "--now", env=env_a)
        assert rotated.returncode == 0, rotated.stderr
        new_kid = signing_kid(env_a, instance_a)

        def minted_by_b() -> str | None:
            answer = requests.post(
                f"{b.url}/api/auth/token", json={"email": OPERATOR, "password": PASSWORD}
            ).json()["access_token"]
            return answer if jwt.get_unverified_header(answer)["kid"] == new_kid else None

        from_b = wait_for(minted_by_b, timeout_s=10)
        assert requests.get(f"{a.url}/api/auth/me", headers=bearer(from_b)).status_code == 200
        wait_for(
            lambda: (
                requests.get(f"{b.url}/api/auth/me", headers=bearer(user_jwt)).status_code == 401
            ),
            timeout_s=10,
        )
        kids = {k["kid"] for k in requests.get(f"{b.url}/.well-known/jwks.json").json()["keys"]}
        assert kids == {new_kid}

        # An archive written through A is restored through B (ARCHIVE_PATH is shared).
        operator = login_session(a.url, OPERATOR, PASSWORD)
        csrf = {"X-CSRFToken": csrf_token(operator, a.url)}
        url = f"{a.url}/api/registry/plugins/acme-notes"
        policy = operator.put(
            f"{url}/tenants/default/uninstall-policy", json={"policy": "archive"}, headers=csrf
        )
        assert policy.status_code == 200, policy.text
        assert operator.post(f"{url}/disable", headers=csrf).status_code == 200
        gone = operator.post(f"{url}/deregister", json={}, headers=csrf)
        assert gone.status_code == 200, gone.text
        relative = gone.json()["uninstall"]["tenants"]["default"]["archive"]
        instance_b = Path(b.log_path).parent / "instance"
        restored = flask_cli(instance_b, "plugins", "restore", relative, env=env_b)
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert "Restored 3 document(s) of acme-notes" in restored.stdout
    finally:
        a.stop()
        b.stop()


def signing_kid(env: dict, instance: Path) -> str:
    """The kid of the key that signs now, by `keys list` on one host."""
    listed = flask_cli(instance, "keys", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    [kid] = [line.split()[0] for line in listed.stdout.splitlines() if " signing " in line]
    return kid


def csrf_token(session: requests.Session, url: str) -> str:
    page = session.get(f"{url}/console/plugins").text
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_one_health_sweep_per_interval_whichever_host_holds_the_lease(
    tmp_path, shared, plugin_server
):
    record = tmp_path / "probes.log"
    plugin = plugin_server("healthy", record=record)
    monitors = {"HEALTH_MONITOR": "true", "HEALTH_INTERVAL_S": 1.0, "HEALTH_TIMEOUT_S": 0.5}
    a = start_host(tmp_path, "a", shared, **monitors)
    b = start_host(tmp_path, "b", shared, **monitors)
    try:
        manifest = sample_manifest(plugin_id="watched", base_url=plugin.url)
        register(tooling(tmp_path, shared), manifest)
        record.write_text("")  # forget registration's own probe
        stamps = wait_for(
            lambda: (lambda s: s if len(s) >= 5 else None)(
                [float(line) for line in record.read_text().split()]
            ),
            timeout_s=30,
        )
    finally:
        a.stop()
        b.stop()
    assert a.logs().count("health monitor started") == b.logs().count("health monitor started")
    gaps = [later - earlier for earlier, later in zip(stamps, stamps[1:], strict=False)]
    # Four monitors (two hosts × two workers) without a shared lease probe within
    # milliseconds of each other; with it, sweeps are an interval apart.
    assert min(gaps) > 0.5, gaps


def test_sigkill_of_one_host_mid_write_loses_nothing_and_the_other_finishes_its_migration(
    tmp_path, shared, migrating_plugin
):
    a = start_host(tmp_path, "a", shared)
    b = start_host(tmp_path, "b", shared)
    balancer_port = int(shared["BASE_URL"].rsplit(":", 1)[1])
    balancer = start_balancer(tmp_path / "balancer", balancer_port, [a.port, b.port])
    try:
        env_b = host_env(b, shared)
        instance_b = Path(b.log_path).parent / "instance"
        app = tooling(tmp_path, shared)
        writer_token = register(
            app, sample_manifest(plugin_id="acme-notes", data_schemas=[notes_collection()])
        )
        acked = tmp_path / "acked.txt"
        writer = subprocess.Popen([sys.executable, str(WRITER), a.url, writer_token, str(acked)])
        wait_for(lambda: acked.exists() and len(acked.read_text().splitlines()) >= 20 or None)

        plugin = migrating_plugin(balancer.url, "partial-hang")  # it calls the core there
        token = register(app, migration_manifest("1.0.0", plugin.url, STRING_STATUS))
        for n in range(10):
            made = requests.post(
                f"{a.url}/api/storage/items",
                json={"title": f"item {n}", "status": "OPEN" if n % 2 else "todo"},
                headers=bearer(token),
            )
            assert made.status_code == 201, made.text
        update = requests.put(
            f"{a.url}/api/registry/plugins/test-plugin",
            json=migration_manifest("2.0.0", plugin.url, ENUM_STATUS),
            headers=bearer(token),
        )
        assert update.status_code == 202, update.text
        wait_for(lambda: [c for c in plugin.calls() if c["stage"] == "blocked"] or None)

        a.kill()  # SIGKILL: the writer's requests and the migration's attempt die with it
        writer.wait(timeout=30)
        ids = [line.split()[0] for line in acked.read_text().splitlines()]
        for doc_id in ids:
            found = requests.get(
                f"{b.url}/api/storage/notes/{doc_id}", headers=bearer(writer_token)
            )
            assert found.status_code == 200, (doc_id, found.status_code)

        # B takes the migration over (A's attempt is abandoned) and finishes it.
        plugin.set_mode("succeed")
        retry = flask_cli(instance_b, "plugins", "migration", "retry", "test-plugin", env=env_b)
        assert retry.returncode == 0, retry.stdout + retry.stderr
        assert "test-plugin is active at version 2.0.0" in retry.stdout
        items = requests.get(f"{b.url}/api/storage/items", headers=bearer(token)).json()["items"]
        assert len(items) == 10
        assert {d["data"]["status"] for d in items} == {"open"}  # OPEN and todo, normalised
        assert {d["version"] for d in items} == {2}  # each rewritten once, by A or by B
    finally:
        balancer.stop()
        a.kill()
        b.stop()
