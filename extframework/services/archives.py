"""Archive files (SPEC §7's ``archive`` policy): one tenant's documents of a plugin, restorable.

An archive is a gzip JSON-lines file under ``<instance>/archives/<plugin_id>/``: a header line,
then one line per document with ``data`` exactly as the database holds it, and a SHA-256
sidecar. Files are written to a ``.partial`` name, fsynced, renamed and the folder fsynced.
``restore()`` verifies the checksum and every line before it writes anything, and brings the
documents back byte for byte. See docs/migrations.md.
"""

import gzip
import hashlib
import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from extframework import dialect
from extframework.config import ensure_private_dir
from extframework.db import database, read_transaction, write_transaction
from extframework.errors import BadRequest, Conflict, NotFound
from extframework.models import Archive, AuditEvent, Plugin, iso_utc, utcnow

log = logging.getLogger(__name__)

ARCHIVE_FORMAT = "extframework-archive/1"
ARCHIVE_SUFFIX = ".jsonl.gz"
CHECKSUM_SUFFIX = ".sha256"
BATCH = 500
# zlib level: 6 writes ~3x faster than 9 for ~1 % more bytes (docs/migrations.md)
GZIP_LEVEL = 6
COLUMNS = "collection, doc_id, version, created_at, updated_at, data"


def archive_root(app) -> Path:
    """The archives folder: ``ARCHIVE_PATH`` (shared by every app host), else the instance's."""
    configured = app.config.get("ARCHIVE_PATH")
    return Path(configured) if configured else Path(app.instance_path) / "archives"


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, write) -> None:
    """Write a new owner-only file through ``write(fileobj)`` and fsync it before returning."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as raw:
        write(raw)
        raw.flush()
        os.fsync(raw.fileno())


def _line(collection, doc_id, version, created_at, updated_at, data: str) -> str:
    """One document as a JSON line, with ``data`` spliced in exactly as the database holds it."""
    meta = {
        "collection": collection,
        "id": doc_id,
        "version": version,
        "created_at": created_at,
        "updated_at": updated_at,
    }
    return _prefix(meta) + data + "}\n"


def _prefix(meta: dict) -> str:
    return json.dumps(meta, separators=(",", ":"), ensure_ascii=False)[:-1] + ',"data":'


def write_archive(plugin: Plugin, tenant: str, root: Path) -> dict:
    """Write one tenant's documents of a plugin to a synced gzip file and its checksum file."""
    directory = ensure_private_dir(ensure_private_dir(root) / plugin.plugin_id)
    stamp = utcnow().strftime("%Y%m%dT%H%M%S%fZ")
    path = directory / f"{tenant}-{stamp}{ARCHIVE_SUFFIX}"
    partial = path.with_name(path.name + ".partial")
    with read_transaction():  # one snapshot: the header's count matches the lines
        count = database.execute_sql(
            "SELECT count(*) FROM document WHERE plugin_id = ? AND tenant = ?",
            [plugin.plugin_id, tenant],
        ).fetchone()[0]
        header = {
            "format": ARCHIVE_FORMAT,
            "plugin_id": plugin.plugin_id,
            "tenant": tenant,
            "plugin_version": plugin.version,
            "documents": count,
            "created_at": iso_utc(utcnow()),
            "collections": [
                {"collection": c["collection"], "schema": c["schema"]}
                for c in plugin.manifest.get("data_schemas", [])
            ],
        }
        sql = (
            f"SELECT {COLUMNS} FROM document WHERE plugin_id = ? AND tenant = ? "
            "ORDER BY collection, pk"
        )

        def write(raw) -> None:
            with (
                dialect.current().stream(database, sql, [plugin.plugin_id, tenant]) as cursor,
                gzip.GzipFile(
                    filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=GZIP_LEVEL
                ) as gz,
            ):
                gz.write((json.dumps(header, separators=(",", ":")) + "\n").encode())
                while rows := cursor.fetchmany(BATCH):
                    gz.write("".join(_line(*row) for row in rows).encode())

        try:
            _write_synced(partial, write)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
    _fsync_dir(directory)
    digest = _sha256(path)
    _write_synced(checksum_path(path), lambda raw: raw.write(f"{digest}  {path.name}\n".encode()))
    _fsync_dir(directory)
    log.info("archived %d document(s) of %s in %s to %s", count, plugin.plugin_id, tenant, path)
    return {
        "tenant": tenant,
        "path": path,
        "relative": path.relative_to(root).as_posix(),
        "sha256": digest,
        "documents": count,
        "size_bytes": path.stat().st_size,
    }


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return _sha256_of(fh)


def _sha256_of(fh) -> str:
    digest = hashlib.sha256()
    while chunk := fh.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


# --- restore ------------------------------------------------------------------------------


def _resolve(reference: str, root: Path) -> tuple[Path, Archive | None]:
    """Find an archive by its id, its path relative to the archives folder, or a file path."""
    row = None
    if reference.isdigit():
        row = Archive.get_or_none(Archive.id == int(reference))
        if row is None:
            raise NotFound(f"No archive {reference}.")
        path = root / row.path
    else:
        path = Path(reference)
        if not path.exists() and (root / reference).exists():
            path = root / reference
        try:
            relative = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            relative = None
        if relative is not None:
            row = Archive.get_or_none(Archive.path == relative)
    if not path.is_file():
        raise NotFound(f"No archive file {str(path)!r}.")
    return path, row


RESTORE_BATCH = 1000  # documents per restore transaction: milliseconds of the write lock


def _batch_committed(done: int) -> None:
    """Called after each restore batch commits with the documents handled so far (a test hook)."""


def restore(reference: str, *, actor: str, root: Path) -> dict:
    """Verify an archive's checksum and put its documents back exactly as they were.

    A first pass checks every line, the count and that no document of the archive exists in the
    live database with other content; nothing is written unless all of that holds. A second
    pass inserts the documents in batches of ``RESTORE_BATCH``, each its own short transaction,
    skipping documents already present and equal (a re-run after an interrupted restore). The
    ``Archive`` marker and the audit event commit with the last batch. See docs/migrations.md.
    """
    path, row = _resolve(reference, root)
    expected = None
    sidecar = checksum_path(path)
    if sidecar.is_file():
        expected = sidecar.read_text().split()[0] if sidecar.read_text().split() else ""
    if row is not None:
        if expected is not None and expected != row.sha256:
            raise BadRequest(
                f"The checksum file of {path.name} disagrees with the one recorded at archiving; "
                "nothing was restored."
            )
        expected = row.sha256
    if expected is None:
        raise BadRequest(f"{path.name} has no checksum ({sidecar.name}); nothing was restored.")
    with open(path, "rb") as raw:  # one descriptor: both passes read the bytes that were hashed
        actual = _sha256_of(raw)
        if actual != expected:
            raise BadRequest(
                f"{path.name} does not match its checksum (expected {expected}, got {actual}): "
                "the file is damaged or was changed; nothing was restored.",
                expected=expected,
                actual=actual,
            )
        header, total, present = _verify(path, raw)
        if total and present == total:  # a second restore; a partial one is finished instead
            raise Conflict(
                f"The documents of {path.name} exist in the live database already (restored "
                "before?); nothing was restored."
            )
        inserted = _insert(path, raw, header, total, row, actor)
    log.info("restored %d document(s) from %s by %s", inserted, path, actor)
    return {
        "plugin_id": header["plugin_id"],
        "tenant": header["tenant"],
        "documents": total,
        "inserted": inserted,
        "archive": str(path),
    }


def _verify(path: Path, raw) -> tuple[dict, int, int]:
    """Check every line and the count; return the header, the count and how many are present.

    A document present with other content than its line refuses the restore (409).
    """
    total = present = 0
    header = None
    for header, batch in _batches(path, raw):
        with read_transaction():
            same, differing = _present(header, batch)
        if differing:
            collection, doc_id = differing[0]
            raise Conflict(
                f"Document {doc_id!r} of collection {collection!r} in {path.name} exists in the "
                f"live database with other content ({len(differing)} such document(s) in this "
                "batch alone); nothing was restored. Delete or archive the live documents first."
            )
        total += len(batch)
        present += len(same)
    if total != header.get("documents"):
        raise BadRequest(
            f"{path.name} holds {total} document(s) but its header says "
            f"{header.get('documents')}; nothing was restored."
        )
    return header, total, present


def _insert(path: Path, raw, header: dict, total: int, row, actor: str) -> int:
    """Insert the documents missing from the live database, one transaction per batch."""
    inserted = done = 0
    batches = _batches(path, raw)
    batch = None
    while True:
        current, batch = batch, next(batches, (None, None))[1]
        if current is None and batch is not None:
            continue  # read one batch ahead: the last batch carries the marker and the event
        if current is None:
            current = []  # an archive of no documents still gets its marker
        with write_transaction():
            same, differing = _present(header, current)
            if differing:
                raise Conflict(
                    f"Documents of {path.name} were written to the live database during the "
                    f"restore with other content; {inserted} document(s) were restored. Resolve "
                    "the conflict and run the restore again to finish it."
                )
            missing = [line for line in current if (line[0], line[1]) not in same]
            database.cursor().executemany(
                dialect.current().sql(
                    "INSERT INTO document (tenant, plugin_id, collection, doc_id, version, "
                    "created_at, updated_at, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                [(header["tenant"], header["plugin_id"], *line) for line in missing],
            )
            if batch is None:
                if row is not None:
                    Archive.update(restored_at=utcnow(), restored_by=actor).where(
                        Archive.id == row.id
                    ).execute()
                AuditEvent.create(
                    actor=actor,
                    action="plugin.archive.restore",
                    target=header["plugin_id"],
                    detail={
                        "tenant": header["tenant"],
                        "archive": path.name,
                        "documents": total,
                        "inserted": inserted + len(missing),
                    },
                )
        inserted += len(missing)
        done += len(current)
        _batch_committed(done)
        if batch is None:
            return inserted


def _present(header: dict, batch: list[tuple]) -> tuple[set, list]:
    """Split the batch's documents present in the live database into equal and differing."""
    if not batch:
        return set(), []
    by_collection: dict[str, list[str]] = {}
    for line in batch:
        by_collection.setdefault(line[0], []).append(line[1])
    stored = []
    for collection, doc_ids in by_collection.items():  # an index seek per document
        marks = ", ".join("?" for _ in doc_ids)
        stored += database.execute_sql(
            f"SELECT {COLUMNS} FROM document WHERE tenant = ? AND plugin_id = ? "
            f"AND collection = ? AND doc_id IN ({marks})",
            [header["tenant"], header["plugin_id"], collection, *doc_ids],
        ).fetchall()
    lines = {(line[0], line[1]): line for line in batch}
    same, differing = set(), []
    for found in stored:
        key = (found[0], found[1])
        if tuple(found) == lines[key]:
            same.add(key)
        else:
            differing.append(key)
    return same, differing


def _batches(path: Path, raw):
    """Yield ``(header, lines)`` per ``RESTORE_BATCH`` parsed document lines of the archive."""
    raw.seek(0)
    batch, yielded = [], False
    try:
        with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            fh = io.TextIOWrapper(gz, encoding="utf-8", newline="\n")
            header = json.loads(fh.readline())
            if not isinstance(header, dict) or header.get("format") != ARCHIVE_FORMAT:
                raise BadRequest(f"{path.name} is not an archive of this core ({ARCHIVE_FORMAT}).")
            for number, line in enumerate(fh, start=2):
                batch.append(_parse(path, number, line))
                if len(batch) == RESTORE_BATCH:
                    yield header, batch
                    batch, yielded = [], True
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError, KeyError) as exc:
        raise BadRequest(f"{path.name} cannot be read as an archive: {exc}.") from None
    if batch or not yielded:  # an archive of no documents: the header still needs checking
        yield header, batch


def archived_keys(path: Path) -> Iterator[list[tuple[str, str, int]]]:
    """Yield the ``(collection, id, version)`` of an archive's documents, a batch at a time."""
    with open(path, "rb") as raw:
        for _, batch in _batches(path, raw):
            yield [(line[0], line[1], line[2]) for line in batch]


def _parse(path: Path, number: int, line: str) -> tuple:
    line = line.rstrip("\n")
    meta = json.loads(line)
    data = meta.pop("data")
    prefix = _prefix(meta)
    if not (line.startswith(prefix) and line.endswith("}")) or data is None:
        raise BadRequest(f"{path.name} line {number} is not a document line.")
    return (
        meta["collection"],
        meta["id"],
        meta["version"],
        meta["created_at"],
        meta["updated_at"],
        line[len(prefix) : -1],
    )


def list_archives(plugin_id: str | None = None) -> list[dict]:
    query = Archive.select().order_by(Archive.id.desc())
    if plugin_id is not None:
        query = query.where(Archive.plugin_id == plugin_id)
    return [
        {
            "id": row.id,
            "plugin_id": row.plugin_id,
            "tenant": row.tenant,
            "path": row.path,
            "sha256": row.sha256,
            "documents": row.documents,
            "size_bytes": row.size_bytes,
            "created_by": row.created_by,
            "created_at": iso_utc(row.created_at),
            "restored_at": iso_utc(row.restored_at),
            "restored_by": row.restored_by,
        }
        for row in query
    ]
