"""`make run` forgives (issue 17): scripts/run_demo.sh itself, with real processes.

Each test runs the script (the core under gunicorn and both demo plugins) on free loopback
ports and a temporary instance folder, and stops it as Ctrl-C does. `make run` is not run: it
would install into the shared virtualenv first.
"""

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.support.processes import ROOT, flask_cli, free_port, login_session

ADMIN = "admin@example.com"
RUNNING = "extframework is running"


class RunDemo:
    """One run of scripts/run_demo.sh, its output in a file."""

    def __init__(
        self,
        base: Path,
        ports: dict[str, int],
        admin_password: str | None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.base = base
        self.ports = ports
        self.url = f"http://127.0.0.1:{ports['PORT']}"
        env = {
            key: value
            for key, value in os.environ.items()
            # The tests' process turns the health monitor off; the script's core needs it.
            if key not in ("EXTFW_HEALTH_MONITOR", "EXTFW_ADMIN_PASSWORD", "PYTEST_ADDOPTS")
        }
        env.update({key: str(port) for key, port in ports.items()})
        env.update(
            EXTFW_INSTANCE_PATH=str(base / "instance"),
            EXTFW_HEALTH_INTERVAL_S="0.3",
            WORKERS="1",
        )
        if admin_password is not None:
            env["EXTFW_ADMIN_PASSWORD"] = admin_password
        env.update(extra_env or {})
        runs = len(list(base.glob("run-*.out")))
        self.out = base / f"run-{runs}.out"
        with open(self.out, "wb") as out:
            self.process = subprocess.Popen(
                ["bash", str(ROOT / "scripts" / "run_demo.sh")],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(
            f"no {text!r} from the script (exit {self.process.poll()}):\n{self.output()}"
        )

    def children(self) -> dict[int, str]:
        """The script's child processes: pid -> command line."""
        found = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.process.pid:
                    cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
                    found[int(stat.parent.name)] = cmdline.decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue  # it exited meanwhile
        return found

    def stop(self) -> None:
        """Ctrl-C: SIGINT to the script's process group; wait for everything to exit."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # The group's last members (gunicorn workers) may outlive the script by a moment.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.killpg(self.process.pid, signal.SIGKILL)


@pytest.fixture
def run_demo(tmp_path):
    ports = {
        "PORT": free_port(),
        "PYTHON_PLUGIN_PORT": free_port(),
        "NODE_PLUGIN_PORT": free_port(),
    }
    runs: list[RunDemo] = []

    def start(admin_password: str | None = "first-admin-password", **extra_env: str) -> RunDemo:
        run = RunDemo(tmp_path, ports, admin_password, extra_env)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.stop()


def printed_login(output: str) -> tuple[str, str | None]:
    """The email and, if the script names one, the password of the login it printed."""
    match = re.search(r"log in as (\S+)(?: / (\S+))?", output)
    assert match, output
    return match.group(1), match.group(2)


def token_status(url: str, email: str, password: str) -> int:
    response = requests.post(
        url + "/api/auth/token", json={"email": email, "password": password}, timeout=30
    )
    return response.status_code


def plugin_state(url: str, token: str, plugin_id: str) -> dict:
    response = requests.get(
        f"{url}/api/registry/plugins/{plugin_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    return response.json() if response.status_code == 200 else {}


def admin_token(url: str, password: str) -> str:
    response = requests.post(
        url + "/api/auth/token", json={"email": ADMIN, "password": password}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def wait_for_state(url: str, token: str, plugin_id: str, state: str, timeout_s=60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        plugin = plugin_state(url, token, plugin_id)
        if plugin.get("state") == state:
            return plugin
        time.sleep(0.2)
    raise AssertionError(
        f"{plugin_id} did not reach {state}: {plugin_state(url, token, plugin_id)}"
    )


def fetch_until_server_closes(port: int, path: str) -> bytes:
    """GET with ``Connection: close`` and read to the end: the server closes first, so the
    connection lingers in TIME_WAIT on the server's port, as a browser's do after a stop."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def binds_without_reuse(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_a_restart_right_after_a_stop_serves_on_the_same_ports(run_demo):
    first = run_demo()
    first.wait_for_output(RUNNING)
    for _ in range(3):
        assert b" 200 " in fetch_until_server_closes(first.ports["PORT"], "/healthz")
    first.stop()
    port = first.ports["PORT"]
    assert not binds_without_reuse(port), "no connection lingers: the test proves nothing"

    second = run_demo()
    second.wait_for_output(RUNNING)
    assert second.process.poll() is None
    token = admin_token(second.url, "first-admin-password")
    for plugin_id, key in (("notebook", "PYTHON_PLUGIN_PORT"), ("tasks", "NODE_PLUGIN_PORT")):
        plugin = wait_for_state(second.url, token, plugin_id, "active")
        assert plugin["base_url"].startswith(f"http://127.0.0.1:{first.ports[key]}"), plugin


def test_a_demo_plugin_dying_leaves_the_core_and_the_other_running(run_demo):
    run = run_demo()
    run.wait_for_output(RUNNING)
    token = admin_token(run.url, "first-admin-password")
    wait_for_state(run.url, token, "tasks", "active")
    node = [pid for pid, cmd in run.children().items() if "server.mjs" in cmd]
    assert len(node) == 1, run.children()
    os.kill(node[0], signal.SIGKILL)

    run.wait_for_output("Tasks (the Node demo plugin) exited", timeout_s=30)
    assert run.process.poll() is None, run.output()
    assert requests.get(run.url + "/healthz", timeout=10).status_code == 200
    notebook = f"http://127.0.0.1:{run.ports['PYTHON_PLUGIN_PORT']}/health"
    assert requests.get(notebook, timeout=10).status_code == 200
    wait_for_state(run.url, token, "tasks", "degraded")
    assert plugin_state(run.url, token, "notebook")["state"] == "active"
    console = login_session(run.url, ADMIN, "first-admin-password").get(run.url + "/console")
    row = re.search(r'<tr data-plugin="tasks">.*?</tr>', console.text, re.S)
    assert row and "state-degraded" in row.group(0), console.text


def test_a_demo_plugin_that_cannot_start_leaves_the_core_and_the_other_running(run_demo, tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "node").write_text("#!/bin/sh\necho 'this node exits at once' >&2\nexit 1\n")
    (fake / "node").chmod(0o755)
    run = run_demo(PATH=f"{fake}:{os.environ['PATH']}")
    run.wait_for_output(RUNNING)
    assert "the core keeps running without the Node demo plugin" in run.output()
    assert run.process.poll() is None, run.output()
    token = admin_token(run.url, "first-admin-password")
    wait_for_state(run.url, token, "notebook", "active")
    assert plugin_state(run.url, token, "tasks") == {}  # never registered


@pytest.mark.parametrize("second_password", ["the-existing-one", "another-password"])
def test_the_printed_login_is_true_for_an_existing_admin(run_demo, tmp_path, second_password):
    instance = tmp_path / "instance"
    assert flask_cli(instance, "init-db").returncode == 0
    created = flask_cli(
        instance,
        "users",
        "bootstrap-admin",
        env={"EXTFW_ADMIN_PASSWORD": "the-existing-one", "EXTFW_HEALTH_MONITOR": "false"},
    )
    assert "Created operator admin" in created.stdout, created.stderr

    run = run_demo(admin_password=second_password)
    run.wait_for_output(RUNNING)
    email, password = printed_login(run.output())
    assert email == ADMIN
    if second_password == "the-existing-one":
        assert password == second_password
    else:
        assert password is None, run.output()
        assert "EXTFW_ADMIN_PASSWORD does not open it" in run.output()
        assert token_status(run.url, ADMIN, second_password) == 401  # kept, not reset
    assert token_status(run.url, ADMIN, "the-existing-one") == 200
