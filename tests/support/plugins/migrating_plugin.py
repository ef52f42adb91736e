"""A real plugin with a migration handler, for the migration tests.

    python migrating_plugin.py --port 9001 --core http://127.0.0.1:5000 --plugin-id test-plugin
        [--mode succeed|fail|hang|invalid|partial-hang]

``POST /migrate`` verifies the request JWT against the core's JWKS (audience the plugin,
subject ``system:migration``, scope ``migrate``), checks that ``X-Migration-Token`` equals the
context's credential, then per mode: ``succeed`` rewrites every document whose ``status`` is
not in its collection's new enum (lower-cased, ``done`` -> ``closed``, anything else ->
``open``) through the storage API's ``_batch`` with the credential, idempotently, and answers 200;
``fail`` answers 500; ``hang`` never answers; ``invalid`` rewrites all but one and answers
200; ``partial-hang`` rewrites half, then never answers. ``GET /_calls`` lists the calls it
received; ``POST /_mode`` (body: a mode) switches the mode; ``GET /health`` answers 200.
"""

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import requests

MODES = ("succeed", "fail", "hang", "invalid", "partial-hang")
NORMAL = {"open": "open", "todo": "open", "closed": "closed", "done": "closed"}


class State:
    def __init__(self, args: argparse.Namespace) -> None:
        self.mode = args.mode
        self.core = args.core.rstrip("/")
        self.plugin_id = args.plugin_id
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def verify(self, header: str) -> dict:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            raise jwt.InvalidTokenError("no bearer token")
        kid = jwt.get_unverified_header(token).get("kid")
        keys = requests.get(f"{self.core}/.well-known/jwks.json", timeout=5).json()["keys"]
        key = next(jwt.PyJWK(k) for k in keys if k["kid"] == kid)
        return jwt.decode(
            token,
            key.key,
            algorithms=[key.algorithm_name],
            audience=self.plugin_id,
            issuer=self.core,
        )


def target(value: object) -> str:
    return NORMAL.get(str(value).strip().lower(), "open")


def documents(session: requests.Session, url: str, tenant: str) -> list[dict]:
    items, cursor = [], None
    while True:
        params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
        page = session.get(url, params=params, headers={"X-Tenant-ID": tenant}, timeout=10)
        page.raise_for_status()
        body = page.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return items


def pending(context: dict, session: requests.Session) -> list[tuple[str, str, dict, list]]:
    """List (tenant, collection, document, enum) for each document whose status must change."""
    work = []
    for tenant in context["tenants"]:
        for entry in context["collections"]:
            enum = entry["schema"].get("properties", {}).get("status", {}).get("enum")
            if not enum:
                continue
            url = f"{context['storage_url']}/{entry['collection']}"
            for doc in documents(session, url, tenant):
                if "status" in doc["data"] and doc["data"]["status"] not in enum:
                    work.append((tenant, entry["collection"], doc, enum))
    return work


def rewrite(context: dict, session: requests.Session, work: list[tuple]) -> None:
    """Rewrite the documents with ``_batch``, up to 1000 per call per tenant and collection.

    Each patch carries its ``if_match``: a 412 names the document rewritten meanwhile (seen
    next time); it is dropped and the rest of the batch is sent again.
    """
    groups: dict[tuple[str, str], list[dict]] = {}
    for tenant, collection, doc, _ in work:
        groups.setdefault((tenant, collection), []).append(doc)
    for (tenant, collection), docs in groups.items():
        for start in range(0, len(docs), 1000):
            chunk = docs[start : start + 1000]
            while chunk:
                operations = [
                    {
                        "op": "patch",
                        "id": doc["id"],
                        "data": {"status": target(doc["data"]["status"])},
                        "if_match": str(doc["version"]),
                    }
                    for doc in chunk
                ]
                response = session.post(
                    f"{context['storage_url']}/{collection}/_batch",
                    json={"operations": operations},
                    headers={"X-Tenant-ID": tenant},
                    timeout=30,
                )
                if response.status_code == 412:
                    del chunk[response.json()["index"]]
                    continue
                response.raise_for_status()
                break


def make_handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.endswith("/health"):
                self.send(200, {"ok": True})
            elif self.path == "/_calls":
                with state.lock:
                    self.send(200, state.calls)
            else:
                self.send(404, {"error": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path == "/_mode":
                mode = raw.decode().strip()
                if mode not in MODES:
                    self.send(400, {"error": f"mode must be one of {MODES}"})
                    return
                with state.lock:
                    state.mode = mode
                self.send(200, {"mode": mode})
            elif self.path == "/migrate":
                self.migrate(raw)
            else:
                self.send(404, {"error": "not found"})

        def migrate(self, raw: bytes) -> None:
            try:
                claims = state.verify(self.headers.get("Authorization", ""))
            except (jwt.InvalidTokenError, StopIteration, requests.RequestException) as exc:
                self.send(401, {"error": f"bad request JWT: {exc}"})
                return
            context = json.loads(raw)
            call = {
                "claims": claims,
                "context": context,
                "token_header_matches": self.headers.get("X-Migration-Token")
                == context["credential"],
                "stage": "received",
            }
            with state.lock:
                mode = state.mode
                state.calls.append(call)
            if claims["sub"] != "system:migration" or "migrate" not in claims["scopes"]:
                self.send(403, {"error": "not a migration call"})
                return
            if mode == "fail":
                self.send(500, {"error": "simulated migration failure"})
                return
            if mode == "hang":
                call["stage"] = "blocked"
                state.stopping.wait(120)
                return
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {context['credential']}"
            work = pending(context, session)
            if mode == "invalid":
                work = work[1:]
            if mode == "partial-hang":
                work = work[: len(work) // 2]
            rewrite(context, session, work)
            call["rewritten"] = len(work)
            if mode == "partial-hang":
                call["stage"] = "blocked"
                state.stopping.wait(120)
                return
            call["stage"] = "done"
            self.send(200, {"rewritten": len(work)})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--core", required=True)
    parser.add_argument("--plugin-id", default="test-plugin")
    parser.add_argument("--mode", choices=MODES, default="succeed")
    args = parser.parse_args()
    state = State(args)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(state))
    server.daemon_threads = True
    try:
        server.serve_forever()
    finally:
        state.stopping.set()


if __name__ == "__main__":
    main()
