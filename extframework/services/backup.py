"""Backups of one instance, taken online: the database, the keys and secrets, the archives.

A backup is one gzip tar file, owner-only, holding ``MANIFEST.json`` (format, creation time,
core schema version, and the SHA-256 and size of every other member), ``database.sqlite3``
(a consistent snapshot made with SQLite's backup API while the core keeps writing) and
``instance/…`` (``secret_key``, ``keys/``, ``archives/``). Copying the live database file
instead loses acknowledged writes still in its WAL; the backup API reads one snapshot.
See docs/operations.md.
"""

import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
from pathlib import Path

from extframework.config import ensure_private_dir
from extframework.db import MIGRATIONS
from extframework.models import iso_utc, utcnow

BACKUP_FORMAT = "extframework-backup/1"
MANIFEST_NAME = "MANIFEST.json"
DATABASE_NAME = "database.sqlite3"
INSTANCE_DIR = "instance"
INSTANCE_ENTRIES = ("secret_key", "keys", "archives")  # what of the instance folder travels
SKIPPED_SUFFIXES = (".partial", ".tmp", ".lock")
SNAPSHOT_BUSY_TIMEOUT_MS = 30_000


class BackupError(Exception):
    """A backup cannot be made, read or restored; the message says what to do."""


def _entries(instance_path: str, archive_path: str | Path | None) -> dict[str, Path]:
    """Each instance member of a backup and where it lives (archives: ``ARCHIVE_PATH``)."""
    folder = Path(instance_path)
    places = {name: folder / name for name in INSTANCE_ENTRIES}
    if archive_path:
        places["archives"] = Path(archive_path)
    return places


def create(
    database_path: str, instance_path: str, target: Path, archive_path: str | None = None
) -> dict:
    """Write a backup to ``target`` (refusing to overwrite one) and return its manifest."""
    target = Path(target)
    if target.exists():
        raise BackupError(f"{target} exists already; name a new file.")
    ensure_private_dir(target.parent)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".backup-") as work:
        staged = Path(work)
        schema_version = _snapshot(database_path, staged / DATABASE_NAME)
        for name, place in _entries(instance_path, archive_path).items():
            _copy_entry(place, staged / INSTANCE_DIR / name)
        files = {
            path.relative_to(staged).as_posix(): {
                "sha256": _sha256(path),
                "bytes": path.stat().st_size,
            }
            for path in sorted(staged.rglob("*"))
            if path.is_file()
        }
        manifest = {
            "format": BACKUP_FORMAT,
            "created_at": iso_utc(utcnow()),
            "core_schema_version": schema_version,
            "files": files,
        }
        partial = target.with_name(target.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as raw:
                with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                    _add_bytes(tar, MANIFEST_NAME, json.dumps(manifest, indent=2).encode())
                    for name in files:
                        tar.add(staged / name, arcname=name, recursive=False)
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(partial, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return manifest


def verify(source: Path, work: Path) -> dict:
    """Check a backup's manifest, every checksum and the database's integrity; return the manifest.

    Members are read into ``work`` (a private folder the caller removes); nothing else is
    touched.
    """
    try:
        with tarfile.open(source, mode="r:gz") as tar:
            manifest = _extract_checked(tar, source, work)
    except (OSError, EOFError, tarfile.TarError, json.JSONDecodeError, KeyError) as exc:
        raise BackupError(f"{source} cannot be read as a backup: {exc}.") from None
    _check_database(work / DATABASE_NAME, manifest["core_schema_version"])
    return manifest


def _extract_checked(tar: tarfile.TarFile, source: Path, work: Path) -> dict:
    """Read every member the manifest lists into ``work``, checking each checksum."""
    members = {m.name: m for m in tar.getmembers()}
    if MANIFEST_NAME not in members:
        raise BackupError(f"{source} has no {MANIFEST_NAME}: it is not a backup file.")
    manifest = json.loads(tar.extractfile(members[MANIFEST_NAME]).read())
    if manifest.get("format") != BACKUP_FORMAT:
        raise BackupError(
            f"{source} is in format {manifest.get('format')!r}; this release reads "
            f"{BACKUP_FORMAT!r}."
        )
    listed = manifest["files"]
    extra = sorted(set(members) - set(listed) - {MANIFEST_NAME})
    missing = sorted(set(listed) - set(members))
    if extra or missing:
        raise BackupError(
            f"{source} does not match its manifest: extra {extra}, missing {missing}."
        )
    for name, expected in listed.items():
        member = members[name]
        if not member.isfile() or _unsafe(name):
            raise BackupError(f"{source} holds {name!r}, which is not a plain relative file.")
        destination = work / name
        ensure_private_dir(destination.parent)
        with tar.extractfile(member) as data, _private_file(destination) as out:
            shutil.copyfileobj(data, out)
        if _sha256(destination) != expected["sha256"]:
            raise BackupError(
                f"{name} in {source} does not match its checksum: the file is damaged."
            )
    return manifest


def restore(
    source: Path,
    database_path: str,
    instance_path: str,
    *,
    force: bool,
    archive_path: str | None = None,
) -> dict:
    """Put a verified backup in place of this instance's database, keys, secret and archives.

    Refuses an instance that holds data (users, plugins, documents, archives) unless ``force``.
    The core must be stopped: its processes hold the old database open.
    """
    instance = Path(instance_path)
    if not force:
        held = holdings(database_path, _entries(instance_path, archive_path)["archives"])
        if held:
            raise BackupError(
                f"The instance at {instance} is not empty ({', '.join(held)}); restore into a "
                "new instance folder, or pass --force to replace what it holds."
            )
    with tempfile.TemporaryDirectory(dir=ensure_private_dir(instance), prefix=".restore-") as work:
        manifest = verify(source, Path(work))
        for name, target in _entries(instance_path, archive_path).items():
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
            staged = Path(work) / INSTANCE_DIR / name
            if staged.exists():
                shutil.move(staged, target)  # ARCHIVE_PATH may be on another file system
        for suffix in ("-wal", "-shm"):  # a stale WAL would be replayed onto the restored file
            Path(database_path + suffix).unlink(missing_ok=True)
        os.replace(Path(work) / DATABASE_NAME, database_path)
        os.chmod(database_path, 0o600)
    return manifest


def holdings(database_path: str, archives: Path) -> list[str]:
    """What an instance holds that a restore would destroy; empty for a fresh instance."""
    held = []
    if Path(database_path).exists():
        with sqlite3.connect(database_path) as con:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master")}
            for table, what in (
                ("user", "users"),
                ("plugin", "plugins"),
                ("document", "documents"),
            ):
                if table in tables and con.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchone():
                    held.append(what)
        con.close()
    if archives.is_dir() and any(p.is_file() for p in archives.rglob("*")):
        held.append("archives")
    return held


def _snapshot(database_path: str, destination: Path) -> int:
    """Copy the live database in one read transaction; return its core schema version."""
    if not Path(database_path).is_file():
        raise BackupError(f"There is no database at {database_path}; run init-db first.")
    source = sqlite3.connect(database_path, timeout=SNAPSHOT_BUSY_TIMEOUT_MS / 1000)
    copy = sqlite3.connect(_private_path(destination))
    try:
        source.backup(copy)  # pages=-1: the whole file in one step, so one consistent snapshot
        row = copy.execute("SELECT version FROM schema_version").fetchone()
    except sqlite3.Error as exc:
        raise BackupError(f"The database could not be read for a backup: {exc}.") from None
    finally:
        copy.close()
        source.close()
    return row[0] if row else 0


def _check_database(path: Path, version: int) -> None:
    if version > len(MIGRATIONS):
        raise BackupError(
            f"The backup's database is at core schema version {version}, newer than this "
            f"release's version {len(MIGRATIONS)}: restore it with that release or a newer one."
        )
    with sqlite3.connect(path) as con:
        verdict = con.execute("PRAGMA integrity_check").fetchone()[0]
    con.close()
    if verdict != "ok":
        raise BackupError(f"The backup's database fails SQLite's integrity check: {verdict}.")


def _copy_entry(source: Path, destination: Path) -> None:
    if source.is_file():
        ensure_private_dir(destination.parent)
        with open(source, "rb") as data, _private_file(destination) as out:
            shutil.copyfileobj(data, out)
    elif source.is_dir():
        for path in sorted(source.rglob("*")):
            if path.is_file() and not path.name.endswith(SKIPPED_SUFFIXES):
                _copy_entry(path, destination / path.relative_to(source))


def _private_path(path: Path) -> str:
    _private_file(path).close()
    return str(path)


def _private_file(path: Path):
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(utcnow().timestamp())
    tar.addfile(info, io.BytesIO(data))


def _unsafe(name: str) -> bool:
    parts = Path(name).parts
    return Path(name).is_absolute() or ".." in parts or not parts


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
