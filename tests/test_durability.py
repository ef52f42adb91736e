"""A SIGKILL mid-stream loses no acknowledged document: every 201 is readable after restart."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.processes import ROOT, start_core
from tests.support.storage_fixtures import provision_in_instance

WRITER = ROOT / "tests" / "support" / "writer.py"


def wait_for_lines(path: Path, count: int, writer: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return
        assert writer.poll() is None, f"writer exited early with {writer.returncode}"
        time.sleep(0.05)
    raise AssertionError(f"the writer acknowledged fewer than {count} documents")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("victim", ["writer", "core"])
def test_sigkill_mid_stream_loses_no_acknowledged_document(tmp_path, victim):
    core = start_core(tmp_path, workers=2)
    writer = None
    try:
        token = provision_in_instance(tmp_path / "instance", "acme-notes")
        acked = tmp_path / "acked.txt"
        writer = subprocess.Popen([sys.executable, str(WRITER), core.url, token, str(acked)])
        wait_for_lines(acked, 200, writer)
        if victim == "core":
            core.kill()  # SIGKILL to gunicorn and its workers, requests in flight
            writer.wait(timeout=30)
        else:
            writer.kill()
            writer.wait()
            core.kill()
    finally:
        if writer is not None and writer.poll() is None:
            writer.kill()
            writer.wait()
        core.stop()

    lines = [line.split() for line in acked.read_text().splitlines()]
    assert len(lines) >= 200
    restarted = start_core(tmp_path, workers=1)
    try:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {token}"}
        for doc_id, n in lines:
            response = session.get(f"{restarted.url}/api/storage/notes/{doc_id}", headers=headers)
            assert response.status_code == 200, (doc_id, response.status_code)
            assert response.json()["data"] == {"title": f"doc {n}", "count": int(n)}
    finally:
        restarted.stop()
