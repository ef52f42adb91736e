"""``_batch`` benchmark: one core, ratios measured in one run (issue 14).

    .venv/bin/python bench/batch.py [--seconds 4] [--clients 2] [--workers 2] [--size 1000]

Starts the core under gunicorn on a loopback port and prints:

1. documents created per second with single ``POST /api/storage/items`` calls, and with
   ``POST /api/storage/items/_batch`` of ``--size`` creates, and their ratio (goal >= 5);
2. in this process, on the same database: how long one batch of ``--size`` creates holds the
   write lock (the ``write_transaction`` block) against the whole call, median of 20.
"""

import argparse
import http.client
import json
import logging
import multiprocessing
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.storage import COLLECTIONS, document  # noqa: E402
from extframework import create_app  # noqa: E402
from extframework.db import database  # noqa: E402
from extframework.models import Collection, Plugin  # noqa: E402
from extframework.services import batch as batches  # noqa: E402
from extframework.services import storage  # noqa: E402
from tests.support.processes import start_core  # noqa: E402
from tests.support.storage_fixtures import provision_in_instance  # noqa: E402


def _load(args: tuple) -> int:
    """Send POSTs until the deadline over one keep-alive-less connection each; return docs."""
    port, token, size, deadline, seed = args
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    done, n = 0, seed * 10_000_000
    while time.monotonic() < deadline:
        if size:
            path = "/api/storage/items/_batch"
            ops = [{"op": "create", "data": document(n + i)} for i in range(size)]
            body, expected, count = json.dumps({"operations": ops}), 200, size
        else:
            path, body, expected, count = "/api/storage/items", json.dumps(document(n)), 201, 1
        n += count
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", path, body=body.encode(), headers=headers)
        response = conn.getresponse()
        response.read()
        conn.close()
        if response.status != expected:
            raise RuntimeError(f"{path} answered {response.status}")
        done += count
    return done


def docs_per_second(pool, port: int, token: str, size: int, seconds: float, clients: int):
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    counts = pool.map(_load, [(port, token, size, deadline, i + 1) for i in range(clients)])
    return sum(counts) / (time.monotonic() - started)


def lock_hold(instance: Path, size: int, rounds: int = 20) -> tuple[float, float]:
    """Median ms one batch of ``size`` creates holds the write lock, and the whole call."""
    app = create_app(
        {"DATABASE": str(instance / "extframework.sqlite3"), "HEALTH_MONITOR": False},
        instance_path=str(instance),
    )
    held: list[float] = []
    original = batches.write_transaction

    @contextmanager
    def timed():
        with original():
            started = time.perf_counter()
            yield
            held.append((time.perf_counter() - started) * 1000)  # the writes, before COMMIT

    batches.write_transaction = timed
    calls = []
    try:
        with app.app_context(), database.connection_context():
            plugin = Plugin.get(Plugin.plugin_id == "bench-plugin")
            schema = Collection.get(Collection.plugin == plugin).schema
            ns = storage.Namespace("default", "bench-plugin", "items", schema, ())
            for r in range(rounds):
                ops = [
                    {"op": "create", "data": document(80_000_000 + r * size + i)}
                    for i in range(size)
                ]
                started = time.perf_counter()
                batches.run(ns, {"operations": ops})
                calls.append((time.perf_counter() - started) * 1000)
    finally:
        batches.write_transaction = original
    return statistics.median(held), statistics.median(calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per throughput round")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--size", type=int, default=1000, help="operations per batch")
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="extfw-bench-") as tmp:
        tmp_path = Path(tmp)
        core = start_core(tmp_path, workers=options.workers)
        try:
            token = provision_in_instance(tmp_path / "instance", "bench-plugin", COLLECTIONS)
            pool = multiprocessing.get_context("fork").Pool(options.clients)
            run = (token, options.seconds, options.clients)
            docs_per_second(pool, core.port, token, 0, 1.0, options.clients)  # warm up
            single, batched = [], []
            for _ in range(2):  # alternate, so drift affects both alike
                single.append(docs_per_second(pool, core.port, run[0], 0, *run[1:]))
                batched.append(docs_per_second(pool, core.port, run[0], options.size, *run[1:]))
            pool.close()
            pool.join()
            held_ms, call_ms = lock_hold(tmp_path / "instance", options.size)
        finally:
            core.stop()

    single_rate, batch_rate = statistics.mean(single), statistics.mean(batched)
    print(
        f"batch bench: gunicorn {options.workers} workers, {options.clients} client processes, "
        f"loopback, {options.seconds:g} s rounds, {options.size} creates per batch"
    )
    print(f"  single creates              {single_rate:8.0f} docs/s")
    print(f"  _batch creates              {batch_rate:8.0f} docs/s")
    print(f"  ratio _batch / single       {batch_rate / single_rate:8.1f}   (goal >= 5)")
    print(f"  one batch, in process       {call_ms:8.1f} ms (median of 20)")
    print(f"  of which write lock held    {held_ms:8.1f} ms (before COMMIT)")


if __name__ == "__main__":
    main()
