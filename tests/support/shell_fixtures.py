"""Fixtures for the shell tests: a scripted plugin on a loopback port, and Plugin/Route rows."""

import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from extframework.models import Installation, Plugin, Route, Tenant
from tests.support.processes import (
    ROOT,
    VENV_BIN,
    Process,
    flask_cli,
    free_port,
    start_core,
)


@dataclass
class Call:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    form: list[tuple[str, str]]
    client_port: int


@dataclass
class Reply:
    status: int = 200
    body: str = "<p>ok</p>"
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class StubPlugin:
    """A real HTTP server on 127.0.0.1 answering scripted replies and recording every call."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.replies: dict[tuple[str, str], Reply] = {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so pooling is observable
            disable_nagle_algorithm = True

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                stub.calls.append(
                    Call(
                        self.command,
                        parts.path,
                        parse_qsl(parts.query, keep_blank_values=True),
                        dict(self.headers.items()),
                        parse_qsl(body, keep_blank_values=True),
                        self.client_address[1],
                    )
                )
                reply = stub.replies.get((self.command, parts.path), Reply(404, "<p>nope</p>"))
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                data = reply.body.encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the core gave up waiting, as it should

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def reply(self, method: str, path: str, **kwargs) -> None:
        self.replies[(method, path)] = Reply(**kwargs)

    def calls_to(self, method: str, path: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub_plugin():
    stub = StubPlugin()
    yield stub
    stub.close()


DEFAULT_ROUTES = [
    {"menu_id": "notes", "label": "Notes", "method": "GET", "path": "/notes"},
    {"menu_id": "notes", "action_id": "create", "method": "POST", "path": "/notes"},
    {"menu_id": "note", "label": "Note", "method": "GET", "path": "/notes/:id"},
    {"menu_id": "note", "action_id": "update", "method": "PUT", "path": "/notes/:id"},
    {"menu_id": "note", "action_id": "delete", "method": "DELETE", "path": "/notes/:id"},
]


@pytest.fixture
def shell_plugin(app):
    """Store a plugin and its routes as the registry would, without going through registration."""

    def make(
        plugin_id: str = "notes",
        base_url: str = "http://127.0.0.1:9",
        *,
        name: str | None = None,
        state: str = "active",
        routes: list[dict] | None = None,
        installed_in: list[str] | None = None,
    ) -> Plugin:
        with app.app_context():
            plugin = Plugin.create(
                plugin_id=plugin_id,
                name=name or plugin_id.title(),
                version="1.0.0",
                base_url=base_url,
                state=state,
                manifest={},
                restricted=installed_in is not None,
            )
            for position, spec in enumerate(DEFAULT_ROUTES if routes is None else routes):
                action = spec.get("action_id")
                Route.create(
                    plugin=plugin,
                    menu_id=spec["menu_id"],
                    action_id=action,
                    label=spec.get("label", ""),
                    method=spec["method"],
                    path=spec["path"],
                    role=spec.get("role", "viewer" if action is None else "member"),
                    mode=spec.get("mode", "inline"),
                    position=position,
                )
            for slug in installed_in or []:
                tenant, _ = Tenant.get_or_create(slug=slug, defaults={"name": slug})
                Installation.create(plugin=plugin, tenant=tenant)
            return plugin

    return make


@pytest.fixture
def set_plugin_state(app):
    def set_state(plugin_id: str, state: str) -> None:
        with app.app_context():
            Plugin.update(state=state).where(Plugin.plugin_id == plugin_id).execute()

    return set_state


# --- the real thing: core + demo plugins as processes, for browser tests and the bench --------

PASSWORD = "correct horse battery"


class Demo:
    """The core under gunicorn plus both demo plugins, each a real process on loopback."""

    def __init__(self, base: Path, **core_config: object) -> None:
        self.base = base
        self.instance = base / "instance"
        config = {
            "HEALTH_MONITOR": "true",
            "HEALTH_INTERVAL_S": 0.5,
            "HEALTH_FAILURES": 1000,  # a killed plugin stays active: the proxy's panel shows
            "PROXY_TIMEOUT_S": 2,
            **core_config,
        }
        self.core = start_core(base, workers=2, threads=4, **config)  # as scripts/run_demo.sh
        self.url = self.core.url
        self.plugins: dict[str, Process] = {}
        self.users: dict[str, str] = {}
        try:
            self._set_up()
        except BaseException:
            self.stop()  # a half-built demo must not leave the core running
            raise

    def _set_up(self) -> None:
        self.admin = self.add_user("admin@example.com", role="admin", operator=True)
        self.enrolment_key = (
            self.cli("enrolment-keys", "create", "--uses", "10").strip().splitlines()[-1]
        )
        self.api = requests.Session()
        token = self.api.post(
            self.url + "/api/auth/token",
            json={"email": self.admin, "password": PASSWORD},
            timeout=10,
        ).json()["access_token"]
        self.api.headers["Authorization"] = f"Bearer {token}"

    def cli(self, *args: str) -> str:
        result = flask_cli(self.instance, *args, env={"EXTFW_PASSWORD": PASSWORD})
        assert result.returncode == 0, result.stderr
        return result.stdout

    def add_user(
        self, email: str, *, role: str = "member", operator: bool = False, tenant: str = "default"
    ) -> str:
        if tenant != "default" and tenant not in self.users.values():
            self.cli("tenants", "create", tenant)
        self.cli(
            "users",
            "create",
            email,
            "--role",
            role,
            "--tenant",
            tenant,
            *(["--operator"] if operator else []),
        )
        self.users[email] = tenant
        return email

    def plugin_env(self, name: str) -> dict[str, str]:
        return {
            "EXTFW_CORE_URL": self.url,
            "EXTFW_ENROLMENT_KEY": self.enrolment_key,
            "PLUGIN_TOKEN_FILE": str(self.base / f"{name}.token"),
            "PYTHONPATH": str(ROOT / "sdk"),
        }

    def start_python_plugin(self, port: int | None = None, *, gunicorn: bool = False) -> Process:
        """Notebook on werkzeug's server, or under gunicorn as ``make run`` serves it."""
        port = port or free_port()
        command = [sys.executable, "examples/python-plugin/plugin.py"]
        if gunicorn:
            config = str(ROOT / "examples" / "python-plugin" / "gunicorn.conf.py")
            command = [str(VENV_BIN / "gunicorn"), "-c", config, "-b", f"127.0.0.1:{port}"]
        process = Process(
            command,
            port,
            "/health",
            env={**self.plugin_env("notebook"), "PORT": str(port)},
            log_path=self.base / "notebook.log",
        )
        self.plugins["notebook"] = process
        return process

    def start_node_plugin(self, port: int | None = None) -> Process:
        port = port or free_port()
        process = Process(
            ["node", "examples/node-plugin/server.mjs"],
            port,
            "/health",
            env={**self.plugin_env("tasks"), "PORT": str(port)},
            log_path=self.base / "tasks.log",
        )
        self.plugins["tasks"] = process
        return process

    def register(self, manifest: dict) -> None:
        """Register a plugin the way a plugin does on start: its manifest, the enrolment key."""
        response = requests.post(
            self.url + "/api/registry/plugins",
            json=manifest,
            headers={"Authorization": f"Bearer {self.enrolment_key}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text

    def plugin(self, plugin_id: str) -> dict:
        response = self.api.get(f"{self.url}/api/registry/plugins/{plugin_id}", timeout=10)
        return response.json() if response.status_code == 200 else {}

    def wait_for_state(self, plugin_id: str, state: str, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.plugin(plugin_id).get("state") == state:
                return
            time.sleep(0.1)
        raise AssertionError(f"{plugin_id} did not reach {state}: {self.plugin(plugin_id)}")

    def stats(self, plugin_id: str) -> dict[str, int]:
        return requests.get(self.plugins[plugin_id].url + "/stats", timeout=5).json()

    def operator(self, plugin_id: str, verb: str) -> None:
        response = self.api.post(f"{self.url}/api/registry/plugins/{plugin_id}/{verb}", timeout=10)
        assert response.status_code == 200, response.text

    def stop(self) -> None:
        for process in self.plugins.values():
            process.stop()
        self.core.stop()
