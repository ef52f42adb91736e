"""Proxy benchmark: what the shell adds on top of calling a plugin directly, in one run.

    .venv/bin/python bench/proxy.py [--requests 400]

Starts the real core under gunicorn and two plugins on loopback ports, logs in, and for each
plugin view measures, interleaved in blocks so both sides see the same machine:

- through the shell: ``GET /plugin-proxy/<id>/<path>`` with a session cookie (route match,
  request-JWT minting, the call, sanitizing and rewriting, the layout with its menu);
- directly: the same plugin route with a valid request JWT minted from the core's key.

It prints throughput (requests/s, one client, keep-alive) and median latency, the ratio
shell/direct (goal >= 0.5) and the median added latency (goal <= 3 ms on loopback). Views:

- ``notebook /notes`` and ``tasks /tasks``: the demo plugins' views (Python and Node.js), each
  reading the storage API, as ``make run`` serves them: these are the views the goals are for;
- ``static /items``: a fragment served from memory after JWT verification, a plugin that does
  nothing, so its ratio shows the shell's own cost and no view can do worse.

The core runs with its default health interval, as in production (tests use 0.5 s), and signs
with the default ES256 key; ``EXTFW_JWT_ALGORITHM=RS256`` in the environment measures RS256.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "sdk"))

import requests  # noqa: E402

from extframework.config import DEFAULTS  # noqa: E402
from extframework.services import tokens  # noqa: E402
from tests.support.keys import CoreKeys  # noqa: E402
from tests.support.processes import Process, free_port, login_session  # noqa: E402
from tests.support.shell_fixtures import PASSWORD, Demo  # noqa: E402

FRAGMENT = "<h1>Static</h1>" + "".join(
    f'<p>Row {i}: <a href="/items/{i}">item {i}</a></p>' for i in range(20)
)


def serve_static(port: int, core_url: str | None) -> None:
    """Run the static bench plugin (``bench/proxy.py --serve PORT [CORE_URL]``).

    Without CORE_URL it verifies no JWT: ``bench/shell_cpu.py`` runs its core in-process, with
    no JWKS to fetch.
    """
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from extframework_sdk import RequestTokenError, RequestVerifier

    verifier = RequestVerifier(core_url, "static") if core_url else None
    body = FRAGMENT.encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs (40 ms)

        def do_GET(self) -> None:
            status, data, ctype = 200, body, "text/html; charset=utf-8"
            if self.path == "/health":
                data, ctype = b"ok", "text/plain"
            elif verifier is not None:
                try:
                    verifier.verify(self.headers.get("Authorization"))
                except RequestTokenError:
                    status, data = 401, b"<p>no</p>"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def core_keys(demo: Demo) -> CoreKeys:
    """The core's key store (the algorithm argument only matters for keys it would generate)."""
    return CoreKeys(demo.instance)


def request_jwt(demo: Demo, plugin_id: str) -> str:
    return tokens.mint_request_jwt(
        core_keys(demo),
        issuer=demo.url,
        plugin_id=plugin_id,
        user_id="1",
        name="admin",
        email="admin@example.com",
        tenant="default",
        role="admin",
        scopes=tokens.SCOPES_BY_ROLE["admin"],
        ttl_s=3600,
    )


def timed(session: requests.Session, url: str, headers: dict, count: int, marker: str) -> list:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = session.get(url, headers=headers, timeout=10)
        samples.append(time.perf_counter() - started)
        if response.status_code != 200 or marker not in response.text:
            raise SystemExit(f"unexpected answer from {url}: {response.status_code}")
    return samples


def measure(
    demo: Demo,
    shell: requests.Session,
    plugin_id: str,
    base_url: str,
    path: str,
    marker: str,
    total: int,
) -> dict:
    direct = requests.Session()
    headers = {"Authorization": "Bearer " + request_jwt(demo, plugin_id)}
    shell_url = f"{demo.url}/plugin-proxy/{plugin_id}{path}"
    timed(shell, shell_url, {}, 20, marker)  # warm both paths and their pools
    timed(direct, base_url + path, headers, 20, marker)
    via_shell, via_direct = [], []
    block = 50
    for _ in range(max(1, total // block)):
        via_direct += timed(direct, base_url + path, headers, block, marker)
        via_shell += timed(shell, shell_url, {}, block, marker)
    return {
        "shell_rps": len(via_shell) / sum(via_shell),
        "direct_rps": len(via_direct) / sum(via_direct),
        "shell_ms": statistics.median(via_shell) * 1000,
        "direct_ms": statistics.median(via_direct) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="per side and plugin")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="extfw-bench-") as tmp:
        demo = Demo(Path(tmp), HEALTH_FAILURES=3, HEALTH_INTERVAL_S=DEFAULTS["HEALTH_INTERVAL_S"])
        static = None
        try:
            port = free_port()
            static = Process(
                [sys.executable, __file__, "--serve", str(port), demo.url], port, "/health"
            )
            manifest = {
                "plugin_id": "static",
                "name": "Static",
                "version": "1.0.0",
                "base_url": static.url,
                "menu_items": [{"id": "items", "label": "Items", "view": {"path": "/items"}}],
            }
            demo.register(manifest)
            notebook = demo.start_python_plugin(gunicorn=True)  # as make run serves it
            tasks = demo.start_node_plugin()
            for plugin_id in ("static", "notebook", "tasks"):
                demo.wait_for_state(plugin_id, "active", timeout_s=60)
            algorithm = core_keys(demo).signing_key().algorithm
            shell = login_session(demo.url, demo.admin, PASSWORD)
            home = timed(shell, demo.url + "/", {}, args.requests, "current-user")
            results = {
                "notebook /notes": measure(
                    demo, shell, "notebook", notebook.url, "/notes", "No notes yet", args.requests
                ),
                "tasks /tasks": measure(
                    demo, shell, "tasks", tasks.url, "/tasks", "Nothing to do", args.requests
                ),
                "static /items": measure(
                    demo, shell, "static", static.url, "/items", "Row 19", args.requests
                ),
            }
        finally:
            if static is not None:
                static.stop()
            demo.stop()
    print(
        f"proxy benchmark: {args.requests} requests per side, one keep-alive client, loopback, "
        f"{algorithm} request JWTs"
    )
    print(
        f"{'view':18} {'direct r/s':>11} {'shell r/s':>10} {'ratio':>6} "
        f"{'direct ms':>10} {'shell ms':>9} {'added ms':>9}"
    )
    for name, r in results.items():
        print(
            f"{name:18} {r['direct_rps']:11.0f} {r['shell_rps']:10.0f} "
            f"{r['shell_rps'] / r['direct_rps']:6.2f} {r['direct_ms']:10.2f} "
            f"{r['shell_ms']:9.2f} {r['shell_ms'] - r['direct_ms']:9.2f}"
        )
    print(
        f"floor: the shell's own home page (session, menu, layout; no plugin call) takes "
        f"{statistics.median(home) * 1000:.2f} ms median"
    )
    print(
        "goals (demo views): ratio >= 0.5, added median latency <= 3 ms; "
        "static is the do-nothing floor, reported only"
    )


if __name__ == "__main__":
    if len(sys.argv) in (3, 4) and sys.argv[1] == "--serve":
        serve_static(int(sys.argv[2]), sys.argv[3] if len(sys.argv) == 4 else None)
    else:
        main()
