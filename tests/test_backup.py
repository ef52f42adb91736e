"""Backups (issue 13): an online snapshot in one file, verified, restored into a new instance."""

import io
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import jwt
import pytest
import requests

from extframework import db
from extframework.db import MIGRATIONS
from extframework.models import User
from extframework.services import backup, tokens
from tests.support.keys import CoreKeys
from tests.support.processes import ROOT, flask_cli, start_core
from tests.support.storage_fixtures import provision_in_instance

WRITER = ROOT / "tests" / "support" / "writer.py"
PASSWORD = "correct horse battery"


def _acked(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def _wait_for_acks(path: Path, count: int, writer: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while len(_acked(path)) < count:
        assert writer.poll() is None, f"writer exited early with {writer.returncode}"
        assert time.monotonic() < deadline, f"fewer than {count} documents acknowledged"
        time.sleep(0.05)


def _private(path: Path) -> None:
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{path} is readable by others"


@pytest.mark.timeout(180)
def test_a_backup_taken_under_writes_restores_every_acknowledged_document_and_key(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    core = start_core(old, workers=2)
    writer = None
    try:
        token = provision_in_instance(old / "instance", "acme-notes")
        created = flask_cli(
            old / "instance",
            "users",
            "create",
            "ops@example.com",
            "--operator",
            "--role",
            "admin",
            env={"EXTFW_PASSWORD": PASSWORD},
        )
        assert created.returncode == 0, created.stderr
        user_jwt = requests.post(
            f"{core.url}/api/auth/token",
            json={"email": "ops@example.com", "password": PASSWORD},
            timeout=10,
        ).json()["access_token"]
        store = CoreKeys(old / "instance")
        request_jwt = tokens.mint_request_jwt(
            store,
            issuer=core.url,
            plugin_id="acme-notes",
            user_id="1",
            name="Ops",
            email="ops@example.com",
            tenant="default",
            role="admin",
            scopes=[],
            ttl_s=300,
        )

        acked = tmp_path / "acked.txt"
        writer = subprocess.Popen([sys.executable, str(WRITER), core.url, token, str(acked)])
        _wait_for_acks(acked, 100, writer)
        before_backup = _acked(acked)
        target = tmp_path / "backups" / "nightly.tar.gz"
        made = flask_cli(old / "instance", "backup", "create", str(target))
        assert made.returncode == 0, made.stderr
        _wait_for_acks(acked, len(before_backup) + 50, writer)  # writes went on meanwhile
    finally:
        if writer is not None:
            writer.kill()
            writer.wait()
        core.stop()

    _private(target)
    checked = flask_cli(tmp_path / "scratch", "backup", "verify", str(target))
    assert checked.returncode == 0 and "sound backup" in checked.stdout, checked.stderr

    restored = flask_cli(new / "instance", "backup", "restore", str(target))
    assert restored.returncode == 0, restored.stderr
    for path in (new / "instance").rglob("*"):
        if path.is_file() and "keys" in path.parts or path.name in ("secret_key",):
            _private(path)
    _private(new / "instance" / "extframework.sqlite3")

    core = start_core(new, workers=1, port=core.port)  # the same BASE_URL: tokens name it
    try:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        for doc_id, n in before_backup:
            answer = session.get(f"{core.url}/api/storage/notes/{doc_id}", timeout=10)
            assert answer.status_code == 200, (doc_id, answer.status_code)
            assert answer.json()["data"] == {"title": f"doc {n}", "count": int(n)}
        me = requests.get(
            f"{core.url}/api/auth/me", headers={"Authorization": f"Bearer {user_jwt}"}, timeout=10
        )
        assert me.status_code == 200 and me.json()["email"] == "ops@example.com"
        jwks = jwt.PyJWKSet.from_dict(requests.get(f"{core.url}/.well-known/jwks.json").json())
        kid = jwt.get_unverified_header(request_jwt)["kid"]
        key = next(k for k in jwks.keys if k.key_id == kid)
        claims = jwt.decode(
            request_jwt, key.key, algorithms=[key.algorithm_name], audience="acme-notes"
        )
        assert claims["email"] == "ops@example.com"
    finally:
        core.stop()


def test_verify_names_a_damaged_member_and_restore_changes_nothing(app, tmp_path, make_user):
    make_user("kept@example.com")
    target = tmp_path / "b.tar.gz"
    backup.create(app.config["DATABASE"], app.instance_path, target)
    damaged = tmp_path / "damaged.tar.gz"
    with tarfile.open(target) as src, tarfile.open(damaged, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name == "instance/secret_key":
                data = data[:-1] + (b"0" if data[-1:] != b"0" else b"1")
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    with pytest.raises(backup.BackupError, match="instance/secret_key.*checksum"):
        backup.verify(damaged, tmp_path / "work1")

    fresh = tmp_path / "fresh"
    before = sorted(p.name for p in fresh.rglob("*")) if fresh.exists() else []
    with pytest.raises(backup.BackupError, match="checksum"):
        backup.restore(damaged, str(fresh / "db.sqlite3"), str(fresh), force=False)
    assert not (fresh / "db.sqlite3").exists() and not (fresh / "keys").exists()
    assert sorted(p.name for p in fresh.rglob("*") if not p.name.startswith(".")) == before


def test_restore_refuses_an_instance_holding_data_unless_forced(app, tmp_path, make_user):
    make_user("kept@example.com")
    target = tmp_path / "b.tar.gz"
    backup.create(app.config["DATABASE"], app.instance_path, target)
    with pytest.raises(backup.BackupError, match="not empty.*users.*--force"):
        backup.restore(target, app.config["DATABASE"], app.instance_path, force=False)
    with app.app_context(), db.database.connection_context():
        assert [u.email for u in User.select()] == ["kept@example.com"]
    result = app.test_cli_runner().invoke(args=["backup", "restore", str(target)])
    assert result.exit_code != 0 and "--force" in result.output


def test_a_backup_from_a_newer_release_is_refused(app, tmp_path):
    with app.app_context(), db.database.connection_context():
        db.SchemaVersion.update(version=len(MIGRATIONS) + 1).execute()
    target = tmp_path / "b.tar.gz"
    backup.create(app.config["DATABASE"], app.instance_path, target)
    with pytest.raises(backup.BackupError, match=f"version {len(MIGRATIONS) + 1}"):
        backup.verify(target, tmp_path / "work")


def test_create_refuses_to_overwrite_and_leaves_no_partial_file(app, tmp_path):
    target = tmp_path / "b.tar.gz"
    target.write_bytes(b"an older backup")
    with pytest.raises(backup.BackupError, match="exists already"):
        backup.create(app.config["DATABASE"], app.instance_path, target)
    assert target.read_bytes() == b"an older backup"
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".backup-*"))


def test_archives_kept_in_archive_path_travel_with_the_backup(app, tmp_path, make_user):
    make_user("kept@example.com")
    shared = tmp_path / "shared-archives"
    (shared / "acme-notes").mkdir(parents=True)
    (shared / "acme-notes" / "default-1.jsonl.gz").write_bytes(b"an archive")
    app.config["ARCHIVE_PATH"] = str(shared)
    target = tmp_path / "b.tar.gz"
    runner = app.test_cli_runner()
    created = runner.invoke(args=["backup", "create", str(target)])
    assert created.exit_code == 0, created.output
    with tarfile.open(target) as packed:
        assert "instance/archives/acme-notes/default-1.jsonl.gz" in packed.getnames()

    fresh, elsewhere = tmp_path / "fresh", tmp_path / "other-archives"
    with pytest.raises(backup.BackupError, match="not empty.*archives"):
        backup.restore(
            target, str(fresh / "db.sqlite3"), str(fresh), force=False, archive_path=str(shared)
        )
    backup.restore(
        target, str(fresh / "db.sqlite3"), str(fresh), force=False, archive_path=str(elsewhere)
    )
    assert (elsewhere / "acme-notes" / "default-1.jsonl.gz").read_bytes() == b"an archive"
    assert not (fresh / "archives").exists()
