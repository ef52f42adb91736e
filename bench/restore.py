"""Restore benchmark (issue 14): a big restore leaves other plugins' writes flowing.

    .venv/bin/python bench/restore.py [--docs 200000] [--clients 2] [--workers 2]

Starts the core under gunicorn on a loopback port with two provisioned plugins. The
``archived`` plugin gets N documents (one ``executemany``), archived with
``archives.write_archive`` and then deleted, as an uninstall with the archive policy leaves
them. The restore then runs as an operator runs it — ``flask plugins restore`` in its own
process — while client processes send single-document creates of the ``writer`` plugin
through the HTTP API, one connection each, as fast as they are answered. Prints:

1. creates answered during the restore, and how many were refused (goal: 0 refused; before
   issue 14 the restore held the write lock ~15 s and they failed with 503);
2. the restore process's peak resident memory growth over its own start (goal <= 100 MiB;
   it was +574 MiB);
3. the restore's throughput, and the writers' create rate during it ÷ before it (reported).
"""

import argparse
import http.client
import json
import logging
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scale import COLLECTIONS  # noqa: E402  (the same plugin as the scale bench)
from extframework import create_app, db  # noqa: E402
from extframework.db import database  # noqa: E402
from extframework.models import Plugin, utcnow  # noqa: E402
from extframework.services import archives  # noqa: E402
from tests.support.processes import core_env, start_core  # noqa: E402
from tests.support.storage_fixtures import provision_in_instance  # noqa: E402


def seed_and_archive(instance: Path, docs: int) -> Path:
    """Give ``archived`` N documents, archive them, delete them; return the archive's path."""
    app = create_app(
        {"DATABASE": str(instance / "extframework.sqlite3"), "HEALTH_MONITOR": False},
        instance_path=str(instance),
    )
    with app.app_context(), database.connection_context():
        stamp = utcnow().isoformat(" ")
        rows = (
            ("default", "archived", "items", uuid.uuid4().hex, stamp, stamp, _data(n))
            for n in range(docs)
        )
        with db.write_transaction():
            database.cursor().executemany(
                "INSERT INTO document (tenant, plugin_id, collection, doc_id, version, "
                "created_at, updated_at, data) VALUES (?, ?, ?, ?, 1, ?, ?, ?)",
                rows,
            )
        plugin = Plugin.get(Plugin.plugin_id == "archived")
        written = archives.write_archive(plugin, "default", archives.archive_root(app))
        with db.write_transaction():
            database.execute_sql("DELETE FROM document WHERE plugin_id = 'archived'")
    database.close_all()
    return written["path"]


def _data(n: int) -> str:
    return json.dumps({"title": f"archived item {n}", "n": n}, separators=(",", ":"))


def _writer(args: tuple) -> dict[int, int]:
    """Create documents one request at a time until ``stop`` is set; count answers by status."""
    port, token, stop, seed = args
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    counts: dict[int, int] = {}
    n = seed * 10_000_000
    while not stop.is_set():
        n += 1
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/api/storage/items", body=_data(n), headers=headers)
        status = conn.getresponse().status
        conn.close()
        counts[status] = counts.get(status, 0) + 1
    return counts


def writes_during(pool, manager, port: int, token: str, clients: int, action) -> tuple:
    """Run ``action()`` while ``clients`` writers create; return its result, counts, seconds."""
    stop = manager.Event()
    pending = pool.map_async(_writer, [(port, token, stop, i + 1) for i in range(clients)])
    time.sleep(0.5)  # the writers are running before the action starts
    started = time.monotonic()
    result = action()
    elapsed = time.monotonic() - started
    stop.set()
    counts: dict[int, int] = {}
    for part in pending.get():
        for status, count in part.items():
            counts[status] = counts.get(status, 0) + count
    return result, counts, elapsed


def restore_in_own_process(env: dict, archive: Path) -> dict:
    """``flask plugins restore`` as the operator runs it, with its memory measured."""
    result = subprocess.run(
        [sys.executable, __file__, "--child", str(archive)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if result.returncode != 0:
        raise SystemExit(f"restore failed:\n{result.stdout}\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def child_restore(archive: str) -> None:
    """In the child: start as the CLI does, then restore, reporting RSS before and peak."""
    from click.testing import CliRunner

    from app import app

    before = _status_kib("VmRSS")
    with app.app_context():
        result = CliRunner().invoke(app.cli, ["plugins", "restore", archive])
    if result.exit_code != 0:
        raise SystemExit(result.output)
    print(json.dumps({"rss_before_kib": before, "peak_kib": _status_kib("VmHWM")}))


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=200_000, help="documents restored")
    parser.add_argument("--clients", type=int, default=2, help="writer processes")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="extfw-restore-") as tmp:
        tmp_path = Path(tmp)
        core = start_core(tmp_path, workers=args.workers)
        try:
            instance = tmp_path / "instance"
            token = provision_in_instance(instance, "writer", COLLECTIONS)
            provision_in_instance(instance, "archived", COLLECTIONS)
            started = time.monotonic()
            archive = seed_and_archive(instance, args.docs)
            prepared_s = time.monotonic() - started
            env = core_env(instance, core.port)
            context = multiprocessing.get_context("fork")
            with context.Manager() as manager, context.Pool(args.clients) as pool:
                _, quiet, quiet_s = writes_during(
                    pool, manager, core.port, token, args.clients, lambda: time.sleep(3)
                )
                memory, during, restore_s = writes_during(
                    pool,
                    manager,
                    core.port,
                    token,
                    args.clients,
                    lambda: restore_in_own_process(env, archive),
                )
        finally:
            core.stop()

    answered = sum(during.values())
    refused = answered - during.get(201, 0)
    growth_mib = (memory["peak_kib"] - memory["rss_before_kib"]) / 1024
    print(
        f"restore bench: {args.docs} documents, gunicorn {args.workers} workers, "
        f"{args.clients} writer processes (seeded and archived in {prepared_s:.1f} s)"
    )
    print(
        f"  restore                       {restore_s:8.1f} s   "
        f"({args.docs / restore_s:,.0f} docs/s: checksum, check pass and insert pass)"
    )
    print(
        f"  creates during the restore    {answered:8d}     refused: {refused}  "
        f"(statuses {dict(sorted(during.items()))})  goal: 0 refused"
    )
    print(f"  restore peak RSS growth       {growth_mib:8.1f} MiB  goal <= 100")
    quiet_rate, during_rate = quiet.get(201, 0) / quiet_s, during.get(201, 0) / restore_s
    print(
        f"  create rate during / before   {during_rate / quiet_rate:8.2f}     "
        f"({during_rate:,.0f} / {quiet_rate:,.0f} creates/s)"
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child_restore(sys.argv[2])
    else:
        main()
