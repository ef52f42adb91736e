"""Shell CPU benchmark: instructions the core executes per request, counted by callgrind.

    .venv/bin/python bench/shell_cpu.py [--requests 100]

The loopback benchmarks time whole requests on a shared VM whose speed wanders by 2x within
minutes; this one counts the instructions the core itself executes per request with valgrind's
callgrind, which repeats to within 1 % whatever else the machine is doing (the signature's
random blinding and the token's random id move it a little). Use it to judge a change to the
shell's hot path: run it before and after.

The core runs in-process under the Flask test client (its instructions are counted); the plugin
is ``bench/proxy.py``'s static one, a separate process (its instructions are not). Each figure
is (count after warm-up + N requests - count after warm-up) / N, so start-up cancels out.
Both signing keys are made before counting (key generation's cost is random).

Two more cases count the storage API's hot path: a single-document create
(``POST /api/storage/items`` with a plugin token, the document of ``bench/storage.py``) and the
no-op JSON route that ``BENCH_ROUTES`` adds (``POST /api/bench/noop``, same body and token),
so "create ÷ no-op instructions" — the in-process side of ``bench/storage.py``'s create / no-op
throughput — is one command. Both run with ``BENCH_ROUTES`` on; the other cases without it.

Instructions are not time: RSA arithmetic runs many instructions per cycle, Python far fewer.
The timed benchmarks, ``bench/proxy.py`` and ``bench/storage.py``, stay the measure of the goals.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WARM_UP = 20
PASSWORD = "correct horse battery"
CASES = [  # label, key algorithm, method, path
    ("/healthz (Flask, one SELECT)", "RS256", "GET", "/healthz"),
    ("/ (session, user, menu, layout)", "RS256", "GET", "/"),
    ("view, RS256 key", "RS256", "GET", "/plugin-proxy/static/items"),
    ("view, ES256 key (the default)", "ES256", "GET", "/plugin-proxy/static/items"),
    ("no-op JSON POST (BENCH_ROUTES)", "ES256", "POST", "/api/bench/noop"),
    ("storage create, one document", "ES256", "POST", "/api/storage/items"),
]
NOOP, CREATE = CASES[4][0], CASES[5][0]
# bench/storage.py's collection and documents.
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
COLLECTIONS = [{"collection": "items", "schema": SCHEMA, "indexes": [{"fields": ["customer_id"]}]}]


def make_app(instance: Path, database: Path, algorithm: str, *, bench_routes: bool = False):
    from extframework import create_app

    return create_app(
        {
            "DATABASE": str(database),
            "BASE_URL": "http://core.bench",
            "HEALTH_MONITOR": False,
            "JWT_ALGORITHM": algorithm,
            "LOG_LEVEL": "WARNING",
            "BENCH_ROUTES": bench_routes,
        },
        instance_path=str(instance),
    )


def write_key(instance: Path, algorithm: str) -> None:
    """One signing key in the instance's ``keys`` folder, which each counted process imports
    into its fresh database (``signing_keys`` reads that folder once): generating a key is
    random work, and it must not be counted."""
    import json

    from extframework.services import signing_keys

    folder = instance / "keys"
    folder.mkdir(parents=True, exist_ok=True)
    key = signing_keys.KeyStore(signing_keys.Sealer("-"), algorithm, 3600)._generate(0.0)
    (folder / f"{key['kid']}.pem").write_bytes(key["pem"])
    entry = {"kid": key["kid"], "alg": algorithm, "created_at": 0.0, "sign_from": 0.0}
    (folder / "keyset.json").write_text(json.dumps([entry]))


def run_requests(
    instance: Path, algorithm: str, plugin_url: str, method: str, path: str, count: int
) -> None:
    """The counted process: a fresh database, a logged-in admin, then ``count`` requests."""
    if method == "POST":
        return run_posts(instance, algorithm, path, count)
    from extframework import db
    from extframework.models import Plugin, Route
    from extframework.services import accounts

    with tempfile.TemporaryDirectory(prefix="extfw-cpu-") as tmp:
        app = make_app(instance, Path(tmp) / "core.sqlite3", algorithm)
        with app.app_context():
            db.upgrade()
            app.extensions["extframework.keys"].ensure_key()  # imports the key write_key made
            accounts.create_user(
                "admin@example.com", PASSWORD, role="admin", operator=True, tenant="default"
            )
            plugin = Plugin.create(
                plugin_id="static",
                name="Static",
                version="1.0.0",
                base_url=plugin_url,
                state="active",
                manifest={},
            )
            Route.create(
                plugin=plugin,
                menu_id="items",
                label="Items",
                method="GET",
                path="/items",
                role="viewer",
            )
        client = app.test_client()
        page = client.get("/login").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        form = {"csrf_token": csrf, "email": "admin@example.com", "password": PASSWORD}
        client.post("/login", data=form)
        for _ in range(count):
            response = client.get(path)
            if response.status_code != 200:
                raise SystemExit(f"{path} answered {response.status_code}")


def run_posts(instance: Path, algorithm: str, path: str, count: int) -> None:
    """The counted process of a storage case: a fresh database, an active plugin with the
    ``items`` collection (registered through the registry service), then ``count`` POSTs of
    one document each with its token."""
    import json

    from extframework import db
    from tests.support.storage_fixtures import provision_plugin

    with tempfile.TemporaryDirectory(prefix="extfw-cpu-") as tmp:
        app = make_app(instance, Path(tmp) / "core.sqlite3", algorithm, bench_routes=True)
        with app.app_context():
            db.upgrade()
            app.extensions["extframework.keys"].ensure_key()
            _, token = provision_plugin("bench-plugin", COLLECTIONS)
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        for n in range(count):
            body = json.dumps({"customer_id": f"c{n % 5000}", "n": n, "title": f"item {n}"})
            response = client.post(path, data=body, headers=headers)
            if response.status_code != 201:
                raise SystemExit(f"{path} answered {response.status_code}: {response.text}")


def count_instructions(args: list[str]) -> int:
    """Run this script under callgrind with ``args``; return the instructions it executed."""
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
        + [sys.executable, __file__, *args],
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
    )
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"callgrind run {args} failed:\n{result.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100, help="counted requests per case")
    parser.add_argument(
        "--storage", action="store_true", help="only the no-op and create cases (and /healthz)"
    )
    args = parser.parse_args()
    cases = [CASES[0], CASES[4], CASES[5]] if args.storage else CASES
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    from tests.support.processes import Process, free_port

    with tempfile.TemporaryDirectory(prefix="extfw-cpu-") as tmp:
        instances = {}
        for algorithm in sorted({case[1] for case in cases}):
            instances[algorithm] = Path(tmp) / algorithm
            write_key(instances[algorithm], algorithm)
        port = free_port()
        static = [sys.executable, str(ROOT / "bench" / "proxy.py"), "--serve", str(port)]
        plugin = Process(static, port, "/health")
        try:
            runs = []
            for _, algorithm, method, path in cases:
                for count in (WARM_UP, WARM_UP + args.requests):
                    runs.append(
                        ["--child", str(instances[algorithm]), algorithm, plugin.url, method]
                        + [path, str(count)]
                    )
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                totals = list(pool.map(count_instructions, runs))
        finally:
            plugin.stop()
    per_request = {
        case[0]: (totals[2 * i + 1] - totals[2 * i]) / args.requests for i, case in enumerate(cases)
    }
    floor = per_request[CASES[0][0]]
    print(
        f"shell CPU benchmark: instructions per request (callgrind), "
        f"{args.requests} requests after {WARM_UP} warm-up"
    )
    print(f"{'request':34} {'instructions':>14} {'vs /healthz':>12}")
    for label, value in per_request.items():
        print(f"{label:34} {value:14,.0f} {value / floor:12.1f}")
    if not args.storage:
        rs256, es256 = per_request[CASES[2][0]], per_request[CASES[3][0]]
        home = per_request[CASES[1][0]]
        print(
            f"the RS256 signature is {(rs256 - es256) / rs256:.0%} of a view's instructions; "
            f"the proxy part of an ES256 view (view - home) is {es256 - home:,.0f}"
        )
    create, noop = per_request[CREATE], per_request[NOOP]
    print(
        f"storage create ÷ no-op JSON route: {create / noop:.2f} × the instructions; "
        f"no-op ÷ create {noop / create:.3f} (the in-process side of bench/storage.py's "
        "create ÷ no-op throughput, goal >= 0.7)"
    )


if __name__ == "__main__":
    if len(sys.argv) == 8 and sys.argv[1] == "--child":
        _, _, instance, algorithm, url, method, path, count = sys.argv
        run_requests(Path(instance), algorithm, url, method, path, int(count))
    else:
        main()
