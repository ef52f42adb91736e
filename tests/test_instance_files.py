"""Every file the core makes in its instance folder is owner-only, whatever the umask (issue 11)."""

import os
import stat
from pathlib import Path

import pytest
import requests

from extframework import create_app, db
from extframework.models import Plugin
from extframework.services import archives
from tests.support.processes import start_core
from tests.support.storage_fixtures import provision_in_instance, provision_plugin


@pytest.fixture
def loose_umask():
    """The umask most shells start with: new files 0644, new folders 0755."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def open_instance(tmp_path: Path) -> Path:
    """An instance folder an operator made world-readable (the core leaves its mode alone)."""
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    instance.chmod(0o755)
    return instance


def modes(instance: Path) -> dict[str, str]:
    """Every file and folder below the instance folder, with its permission bits."""
    found = {}
    for path in instance.rglob("*"):
        found[path.relative_to(instance).as_posix()] = oct(stat.S_IMODE(path.lstat().st_mode))
    return found


def assert_owner_only(instance: Path, expected: list[str]) -> None:
    found = modes(instance)
    for name in expected:
        assert name in found, f"{name} was not created: {sorted(found)}"
    wide = {
        name: mode
        for name, mode in found.items()
        if mode != ("0o700" if (instance / name).is_dir() else "0o600")
    }
    assert wide == {}, f"not owner-only: {wide}"


DATABASE_FILES = ["extframework.sqlite3", "extframework.sqlite3-wal", "extframework.sqlite3-shm"]


def test_an_app_creates_only_owner_only_files(tmp_path, loose_umask):
    instance = open_instance(tmp_path)
    app = create_app({"TESTING": True, "HEALTH_MONITOR": False}, instance_path=str(instance))
    with app.app_context():
        db.upgrade()
        _, token = provision_plugin("acme-notes")
    response = app.test_client().post(
        "/api/storage/notes", json={"title": "hello"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, response.get_json()
    app.extensions["extframework.keys"].rotate()
    with app.app_context(), db.database.connection_context():
        with db.write_transaction():  # makes <database>-writelock if no write did yet
            pass
        archive = archives.write_archive(
            Plugin.get(Plugin.plugin_id == "acme-notes"), "default", instance / "archives"
        )
    assert archive["documents"] == 1
    assert_owner_only(
        instance,
        [
            *DATABASE_FILES,
            "extframework.sqlite3-writelock",
            "secret_key",
            "archives",
            "archives/acme-notes",
            "archives/" + archive["relative"],
            "archives/" + archive["relative"] + archives.CHECKSUM_SUFFIX,
        ],
    )


def test_a_missing_instance_folder_and_its_parents_are_made_owner_only(tmp_path, loose_umask):
    instance = tmp_path / "srv" / "extframework" / "instance"
    app = create_app(
        {"TESTING": True, "HEALTH_MONITOR": False, "SECRET_KEY": "set elsewhere"},
        instance_path=str(instance),
    )
    with app.app_context():
        db.upgrade()
    for folder in (instance, instance.parent, instance.parent.parent):
        assert oct(stat.S_IMODE(folder.stat().st_mode)) == "0o700", folder
    assert_owner_only(instance, DATABASE_FILES)


@pytest.mark.timeout(120)
def test_the_real_core_creates_only_owner_only_files(tmp_path, loose_umask):
    instance = open_instance(tmp_path)
    core = start_core(tmp_path)
    try:
        token = provision_in_instance(instance, "acme-notes")
        response = requests.post(
            f"{core.url}/api/storage/notes",
            json={"title": "over http"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        assert_owner_only(instance, [*DATABASE_FILES, "secret_key"])
    finally:
        core.stop()
