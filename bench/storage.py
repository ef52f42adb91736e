"""Storage benchmark: one command, one core, ratios measured in one run.

    .venv/bin/python bench/storage.py [--seconds 4] [--clients 2] [--workers 2]

Starts the core under gunicorn on a loopback port (with BENCH_ROUTES=true, which adds a
no-op JSON route), once on SQLite and once on PostgreSQL (a throwaway cluster with fsync off,
as the tests start; ``--engines sqlite`` for one), then prints each engine's figures side by
side:

1. single-document create throughput vs the no-op JSON route (goal >= 0.7, issue 14);
2. indexed equality query latency (median) at 200k documents vs at 10k (goal <= 1.5);
3. create throughput over HTTP vs direct Peewee inserts with the same validation.
"""

import argparse
import http.client
import json
import logging
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from extframework import create_app  # noqa: E402
from extframework.db import database  # noqa: E402
from extframework.models import Collection, Document, Plugin, utcnow  # noqa: E402
from extframework.services import storage  # noqa: E402
from tests.support import postgres  # noqa: E402
from tests.support.processes import start_core  # noqa: E402
from tests.support.storage_fixtures import provision_in_instance, provision_plugin  # noqa: E402

SCHEMA = {
    "type": "object",
    "properties": {
        "customer_id": {"type": "string"},
        "n": {"type": "integer", "minimum": 0},
        "title": {"type": "string", "maxLength": 200},
    },
    "required": ["customer_id", "n"],
    "additionalProperties": False,
}
COLLECTIONS = [
    {"collection": "items", "schema": SCHEMA, "indexes": [{"fields": ["customer_id"]}]},
    {"collection": "big", "schema": SCHEMA, "indexes": [{"fields": ["customer_id"]}]},
]
PER_CUSTOMER = 10


def document(n: int) -> dict:
    return {"customer_id": f"c{n % 5000}", "n": n, "title": f"item {n}"}


def body(n: int) -> bytes:
    return json.dumps(document(n)).encode()


def _load(args: tuple) -> int:
    """Send POSTs to one path until the deadline; return how many got the expected status."""
    port, path, token, expected, deadline, seed = args
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    done, n = 0, seed * 10_000_000
    while time.monotonic() < deadline:
        n += 1
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", path, body=body(n), headers=headers)
        response = conn.getresponse()
        response.read()
        conn.close()
        if response.status != expected:
            raise RuntimeError(f"{path} answered {response.status}")
        done += 1
    return done


def throughput(pool, port: int, path: str, token: str, expected: int, seconds: float, clients: int):
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    counts = pool.map(
        _load, [(port, path, token, expected, deadline, i + 1) for i in range(clients)]
    )
    return sum(counts) / (time.monotonic() - started)


def bulk_load(start: int, stop: int) -> None:
    """Insert documents straight into the `big` collection with Peewee's insert_many."""
    now = utcnow()
    batch = 2000
    for first in range(start, stop, batch):
        rows = [
            {
                "tenant": "default",
                "plugin_id": "bench-plugin",
                "collection": "big",
                "doc_id": f"{i:032x}",
                "version": 1,
                "created_at": now,
                "updated_at": now,
                "data": {"customer_id": f"c{i // PER_CUSTOMER}", "n": i, "title": f"item {i}"},
            }
            for i in range(first, min(first + batch, stop))
        ]
        with database.atomic():
            Document.insert_many(rows).execute()


def query_latency(port: int, token: str, customers: int, samples: int) -> float:
    """Median latency (ms) of an indexed equality query for a random existing customer."""
    headers = {"Authorization": f"Bearer {token}"}
    timings = []
    for i in range(samples + 30):
        customer = random.randrange(customers)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        started = time.perf_counter()
        conn.request("GET", f"/api/storage/big?customer_id=c{customer}", headers=headers)
        response = conn.getresponse()
        page = json.loads(response.read())
        elapsed = time.perf_counter() - started
        conn.close()
        if response.status != 200 or len(page["items"]) != PER_CUSTOMER:
            raise RuntimeError(f"query answered {response.status} with {page}")
        if i >= 30:  # the first ones warm the caches
            timings.append(elapsed * 1000)
    return statistics.median(timings)


def direct_inserts(seconds: float) -> float:
    """Validate and insert one document per transaction, in this process, with Peewee."""
    plugin = Plugin.get(Plugin.plugin_id == "bench-plugin")
    collection = Collection.get((Collection.plugin == plugin) & (Collection.name == "items"))
    ns = storage.Namespace("default", "bench-plugin", "items", collection.schema, ())
    done, n = 0, 90_000_000
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    while time.monotonic() < deadline:
        n += 1
        data = document(n)
        storage.validate(ns, data)
        now = utcnow()
        with database.atomic():
            Document.insert(
                tenant="default",
                plugin_id="bench-plugin",
                collection="items",
                doc_id=f"direct{n}",
                version=1,
                created_at=now,
                updated_at=now,
                data=data,
            ).execute()
        done += 1
    return done / (time.monotonic() - started)


SECRET = "bench-secret-shared-by-the-core-and-this-process"


def provision(instance: Path, database_url: str | None) -> str:
    """Provision the bench plugin in the core's database (either engine); return its token."""
    if database_url is None:
        return provision_in_instance(instance, "bench-plugin", COLLECTIONS)
    app = create_app(
        {"DATABASE_URL": database_url, "SECRET_KEY": SECRET, "HEALTH_MONITOR": False},
        instance_path=str(instance),
    )
    with app.app_context():
        return provision_plugin("bench-plugin", COLLECTIONS)[1]


def measure(options, database_url: str | None) -> dict[str, float]:
    """Every figure of one engine, against the core under gunicorn on that engine."""
    engine = {"DATABASE_URL": database_url, "SECRET_KEY": SECRET} if database_url else {}
    with tempfile.TemporaryDirectory(prefix="extfw-bench-") as tmp:
        tmp_path = Path(tmp)
        core = start_core(tmp_path, workers=options.workers, BENCH_ROUTES="true", **engine)
        try:
            token = provision(tmp_path / "instance", database_url)
            database.connect(reuse_if_open=True)
            port = core.port
            pool = multiprocessing.get_context("fork").Pool(options.clients)
            run = (port, token, options.seconds, options.clients)
            throughput(pool, port, "/api/bench/noop", token, 201, 1.0, options.clients)  # warm
            noop, create = [], []
            for _ in range(2):  # alternate, so drift affects both alike
                noop.append(throughput(pool, run[0], "/api/bench/noop", token, 201, *run[2:]))
                create.append(throughput(pool, run[0], "/api/storage/items", token, 201, *run[2:]))
            pool.close()
            pool.join()

            bulk_load(0, 10_000)
            small = query_latency(port, token, 10_000 // PER_CUSTOMER, options.samples)
            started = time.monotonic()
            bulk_load(10_000, 200_000)
            load_s = time.monotonic() - started
            large = query_latency(port, token, 200_000 // PER_CUSTOMER, options.samples)

            direct = direct_inserts(options.seconds)
            database.close()
        finally:
            core.stop()
    return {
        "noop": statistics.mean(noop),
        "create": statistics.mean(create),
        "small": small,
        "large": large,
        "load_s": load_s,
        "direct": direct,
    }


ROWS = [  # label, figure, format
    ("no-op JSON route (req/s)", lambda m: m["noop"], "{:.0f}"),
    ("create document (req/s)", lambda m: m["create"], "{:.0f}"),
    ("ratio create / no-op (goal >= 0.7)", lambda m: m["create"] / m["noop"], "{:.2f}"),
    ("indexed query p50, 10k docs (ms)", lambda m: m["small"], "{:.2f}"),
    ("indexed query p50, 200k docs (ms)", lambda m: m["large"], "{:.2f}"),
    ("ratio 200k / 10k (goal <= 1.5)", lambda m: m["large"] / m["small"], "{:.2f}"),
    ("190k documents bulk-loaded in (s)", lambda m: m["load_s"], "{:.1f}"),
    ("direct Peewee inserts, 1 process (docs/s)", lambda m: m["direct"], "{:.0f}"),
    ("ratio create / direct", lambda m: m["create"] / m["direct"], "{:.2f}"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per throughput round")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--samples", type=int, default=300, help="queries per size")
    parser.add_argument(
        "--engines", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql"
    )
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)  # keep the report readable

    engines = [e.strip() for e in options.engines.split(",") if e.strip()]
    results, cluster = {}, None
    try:
        for engine in engines:
            url = None
            if engine == "postgresql":  # a throwaway cluster, as the tests start (fsync off)
                cluster = postgres.Cluster()
                url = cluster.create_database()
            results[engine] = measure(options, url)
    finally:
        if cluster is not None:
            cluster.stop()

    print(
        f"storage bench: gunicorn {options.workers} workers, {options.clients} client "
        f"processes, loopback, {options.seconds:g} s rounds"
    )
    print(f"  {'':44}" + "".join(f"{engine:>12}" for engine in results))
    for label, figure, shape in ROWS:
        cells = "".join(f"{shape.format(figure(m)):>12}" for m in results.values())
        print(f"  {label:44}{cells}")


if __name__ == "__main__":
    main()
