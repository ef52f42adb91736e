"""Concurrent writers: every If-Match update lands or gets 412, and none is lost."""

import threading
import time

import pytest
import requests

from tests.support.processes import start_core
from tests.support.storage_fixtures import provision_in_instance

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_engines

THREADS = 8
DURATION_S = 5.0
COUNTER = [{"collection": "counters", "schema": {"type": "object"}}]


def hammer(url: str, token: str, duration_s: float = DURATION_S) -> dict:
    """Have THREADS clients read-increment-write one document with If-Match for a while."""
    headers = {"Authorization": f"Bearer {token}"}
    created = requests.post(f"{url}/api/storage/counters", json={"count": 0}, headers=headers)
    assert created.status_code == 201, created.text
    doc_url = f"{url}/api/storage/counters/{created.json()['id']}"
    lock = threading.Lock()
    tally = {"ok": 0, "conflict": 0, "other": [], "versions": []}
    deadline = time.monotonic() + duration_s

    def worker() -> None:
        session = requests.Session()
        while time.monotonic() < deadline:
            current = session.get(doc_url, headers=headers, timeout=30)
            assert current.status_code == 200
            count = current.json()["data"]["count"]
            response = session.patch(
                doc_url,
                json={"count": count + 1},
                headers={**headers, "If-Match": current.headers["ETag"]},
                timeout=30,
            )
            with lock:
                if response.status_code == 200:
                    tally["ok"] += 1
                    tally["versions"].append(response.json()["version"])
                elif response.status_code == 412:
                    tally["conflict"] += 1
                else:
                    tally["other"].append((response.status_code, response.text[:200]))

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = requests.get(doc_url, headers=headers, timeout=30).json()
    return tally | {"final": final}


def assert_no_lost_update(result: dict) -> None:
    assert result["other"] == [], result["other"]
    assert result["ok"] > 0
    assert result["conflict"] > 0, "eight writers on one document never collided"
    assert result["final"]["version"] == 1 + result["ok"]  # created at 1, +1 per 2xx
    assert result["final"]["data"]["count"] == result["ok"]
    assert len(set(result["versions"])) == result["ok"], "two updates claimed one version"


def test_if_match_writers_in_process(make_storage_plugin, live_server):
    _, token = make_storage_plugin("counter-plugin", COUNTER)
    assert_no_lost_update(hammer(live_server, token))


def test_unconditional_patches_of_different_fields_all_land(make_storage_plugin, live_server):
    _, token = make_storage_plugin("counter-plugin", COUNTER)
    headers = {"Authorization": f"Bearer {token}"}
    doc = requests.post(f"{live_server}/api/storage/counters", json={}, headers=headers).json()
    doc_url = f"{live_server}/api/storage/counters/{doc['id']}"
    per_thread = 25

    def worker(i: int) -> None:
        session = requests.Session()
        for n in range(1, per_thread + 1):
            response = session.patch(doc_url, json={f"t{i}": n}, headers=headers, timeout=30)
            assert response.status_code == 200, response.text

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = requests.get(doc_url, headers=headers).json()
    assert final["data"] == {f"t{i}": per_thread for i in range(THREADS)}
    assert final["version"] == 1 + THREADS * per_thread


@pytest.mark.timeout(120)
def test_if_match_writers_against_two_gunicorn_workers(tmp_path):
    core = start_core(tmp_path, workers=2)
    try:
        token = provision_in_instance(tmp_path / "instance", "counter-plugin", COUNTER)
        result = hammer(core.url, token)
    finally:
        core.stop()
    assert_no_lost_update(result)
