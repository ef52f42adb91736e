"""Scale benchmark (issue 14): a plugin's namespace costs what it holds, not what the table holds.

    .venv/bin/python bench/scale.py [--docs 200000] [--without-index] [--truncate-wal]

In one process, on three fresh database files under a temporary folder: "alone" holds a
10-document plugin; "10k" a plugin of 10k documents; "big" the same 10-document plugin beside
a plugin of N documents in one collection (inserted with one ``executemany``, in one
transaction, as bench/storage.py seeds). Prints ratios measured in this one run, each
through the real service functions, with the two sides of each ratio timed in alternating
rounds (the process switches its database between rounds):

1. the first page in default order of the N-document collection ÷ of the 10k one
   (goal <= 1.5);
2. the small plugin's export, migration check and document count beside the N-document
   plugin ÷ alone (goal: about 1);
3. export throughput of the big plugin ÷ a bare ``SELECT`` of the same rows (goal >= 0.5);
4. migration check throughput of the big plugin ÷ bare validation of the same documents: a
   ``SELECT``, ``json.loads`` and a plain jsonschema validator per row (goal >= 0.5).

Each figure is the fastest of its rounds (as ``timeit`` advises): the machine these run on
is shared, and a round that lost the CPU says nothing about the code.

``--without-index`` drops the namespace index (schema step 6) after the upgrade, to measure
what a version-5 database pays; ``--truncate-wal`` empties the WAL the bulk load leaves.
"""

import argparse
import json
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jsonschema import Draft202012Validator  # noqa: E402

from extframework import create_app, db  # noqa: E402
from extframework.db import database  # noqa: E402
from extframework.models import Plugin, utcnow  # noqa: E402
from extframework.services import export, migration_checks, storage  # noqa: E402
from tests.support.storage_fixtures import provision_plugin  # noqa: E402

SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "n": {"type": "integer"}},
    "required": ["title"],
}
COLLECTIONS = [{"collection": "items", "schema": SCHEMA, "indexes": []}]
SMALL, MID, BIG = "small-plugin", "mid-plugin", "big-plugin"
SECRET = b"bench"


def seed(plugin_id: str, start: int, stop: int) -> None:
    """Insert documents start..stop-1 into the plugin's ``items`` in one transaction."""
    stamp = utcnow().isoformat(" ")
    rows = (
        (
            "default",
            plugin_id,
            "items",
            uuid.uuid4().hex,
            stamp,
            stamp,
            json.dumps({"title": f"item {n}", "n": n}, separators=(",", ":")),
        )
        for n in range(start, stop)
    )
    with db.write_transaction():
        database.cursor().executemany(
            "INSERT INTO document (tenant, plugin_id, collection, doc_id, version, created_at, "
            "updated_at, data) VALUES (?, ?, ?, ?, 1, ?, ?, ?)",
            rows,
        )


def _round(fn, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls


def alternating_here(fns: list, repeats: int) -> list[float]:
    """Time each function in alternating rounds on the current database; the fastest of each."""
    for fn in fns:
        fn()  # warm the page cache and the validator caches
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], _round(fn, 1))
    return best


def use(path: str) -> None:
    """Point the process's database handle at another file (between timed rounds)."""
    if database.obj is not None and not database.is_closed():
        database.close()
    db.bind(None, path, {"SQLITE_BUSY_TIMEOUT_MS": 5000, "DATABASE_POOL_SIZE": 8})


def alternating(sides: list[tuple[str, object]], repeats: int, calls: int) -> list[float]:
    """Time each (database, function) side in alternating rounds; the fastest round of each."""
    best = [float("inf")] * len(sides)
    for _ in range(repeats):
        for i, (path, fn) in enumerate(sides):
            use(path)
            with database.connection_context():
                fn()  # warm this connection's page cache
                best[i] = min(best[i], _round(fn, calls))
    return best


def first_page(ns: storage.Namespace):
    return lambda: storage.query_documents(ns, [], secret_key=SECRET)


def small_plugin_checks() -> dict[str, object]:
    def exported():
        for _ in export.export_plugin(SMALL, actor="bench"):
            pass

    def checked():
        migration_checks.check_documents(SMALL, {"items": SCHEMA}, "2.0.0")

    def counted():
        migration_checks._fingerprint(SMALL)

    return {"export": exported, "migration check": checked, "document count": counted}


def bare_select(plugin_id: str) -> None:
    cursor = database.execute_sql(
        "SELECT tenant, collection, doc_id, version, created_at, updated_at, data "
        "FROM document WHERE plugin_id = ? ORDER BY tenant, collection, pk",
        [plugin_id],
    )
    while cursor.fetchmany(export.BATCH):
        pass


def bare_validation(plugin_id: str) -> int:
    """The floor of a migration check: read each document, parse it, validate it."""
    validator = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
    invalid = 0
    with db.read_transaction():
        cursor = database.execute_sql(
            "SELECT tenant, collection, doc_id, data FROM document WHERE plugin_id = ? "
            "ORDER BY tenant, collection, pk",
            [plugin_id],
        )
        while rows := cursor.fetchmany(migration_checks.BATCH):
            for _, _, _, data in rows:
                invalid += any(True for _ in validator.iter_errors(json.loads(data)))
    return invalid


def migration_check(plugin_id: str) -> int:
    return migration_checks.check_documents(plugin_id, {"items": SCHEMA}, "2.0.0")[2]


def export_all(plugin_id: str) -> int:
    return sum(len(chunk) for chunk in export.export_plugin(plugin_id, actor="bench"))


def main() -> None:
    logging.disable(logging.INFO)  # each export is audited and logged
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=200_000, help="documents in the big plugin")
    parser.add_argument("--without-index", action="store_true", help="drop the namespace index")
    parser.add_argument(
        "--truncate-wal",
        action="store_true",
        help="checkpoint and empty the WAL after seeding (the bulk load leaves it large)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="extfw-scale-") as folder:
        paths = {name: f"{folder}/{name}.sqlite3" for name in ("alone", "10k", "big")}
        app = create_app(
            {"DATABASE": paths["alone"], "HEALTH_MONITOR": False, "TESTING": True},
            instance_path=f"{folder}/instance",
        )
        with app.app_context():
            started = time.perf_counter()
            prepare(paths["alone"], args, small=True)
            prepare(paths["10k"], args, big=(MID, 10_000))
            prepare(paths["big"], args, small=True, big=(BIG, args.docs))
            seeding = time.perf_counter() - started
            report(paths, args, seeding)


def prepare(path: str, args, *, small: bool = False, big: tuple[str, int] | None = None) -> None:
    """Create one database file with the small plugin's 10 documents and/or a big plugin."""
    use(path)
    db.upgrade()
    plugins = ([SMALL] if small else []) + ([big[0]] if big else [])
    for plugin_id in plugins:
        provision_plugin(plugin_id, COLLECTIONS)
    with database.connection_context():
        if args.without_index:
            database.execute_sql(f'DROP INDEX "{db.NAMESPACE_INDEX}"')
        if small:
            ns = namespace(SMALL)
            for n in range(10):
                storage.create_document(ns, {"title": f"small {n}", "n": n})
        if big:
            seed(big[0], 0, big[1])
        if args.truncate_wal:
            database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def namespace(plugin_id: str) -> storage.Namespace:
    plugin = Plugin.get(Plugin.plugin_id == plugin_id)
    return storage.open_collection(plugin, None, "items", write=True)


def report(paths: dict[str, str], args, seeding: float) -> None:
    use(paths["big"])
    with database.connection_context():
        big = namespace(BIG)
    use(paths["10k"])
    with database.connection_context():
        mid = namespace(MID)
    page_n, page_10k = alternating(
        [(paths["big"], first_page(big)), (paths["10k"], first_page(mid))], repeats=15, calls=20
    )
    small = {}
    for name, fn in small_plugin_checks().items():
        calls = 50 if name == "document count" else 20
        small[name] = alternating([(paths["big"], fn), (paths["alone"], fn)], 9, calls)
    use(paths["big"])
    with database.connection_context():
        select_s, export_s, validation_s, check_s = alternating_here(
            [
                lambda: bare_select(BIG),
                lambda: export_all(BIG),
                lambda: bare_validation(BIG),
                lambda: migration_check(BIG),
            ],
            repeats=3,
        )

    n = f"{args.docs // 1000}k"
    index = "without the namespace index" if args.without_index else "with the namespace index"
    print(f"bench/scale.py: {args.docs} documents in one collection, {index}")
    print(f"(three databases seeded in {seeding:.1f} s, one executemany each)")
    print(
        f"first page, default order, {n} / 10k: {page_n / page_10k:.2f}"
        f"  ({page_n * 1e3:.2f} / {page_10k * 1e3:.2f} ms)  goal <= 1.5"
    )
    for name, (beside, alone) in small.items():
        print(
            f"10-document plugin's {name}, beside {n} / alone: {beside / alone:.2f}"
            f"  ({beside * 1e3:.3f} / {alone * 1e3:.3f} ms)"
        )
    print(
        f"export throughput / bare SELECT of the same rows: {select_s / export_s:.2f}"
        f"  ({args.docs / export_s:,.0f} / {args.docs / select_s:,.0f} docs/s)  goal >= 0.5"
    )
    print(
        f"migration check throughput / bare validation: {validation_s / check_s:.2f}"
        f"  ({args.docs / check_s:,.0f} / {args.docs / validation_s:,.0f} docs/s)  goal >= 0.5"
    )


if __name__ == "__main__":
    main()
