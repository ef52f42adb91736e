"""Start the real core (gunicorn) and real plugin processes on free loopback ports."""

import atexit
import itertools
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def _port_slice() -> range:
    """Return this test process's ports: below the kernel's ephemeral range, one slice each.

    A port handed out stays unbound until the child starts listening. Below the ephemeral
    range no outgoing connection takes it meanwhile, and each pytest-xdist worker has its own
    slice, so two workers never hand out the same port.
    """
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    low, high = 10000, max(ephemeral_low, 12000)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker) if worker.isdigit() else 0
    width = (high - low) // max(count, 1)
    return range(low + index * width, low + (index + 1) * width)


_PORTS = _port_slice()
_next_port = itertools.cycle(random.sample(_PORTS, len(_PORTS)))


def free_port() -> int:
    """Return a loopback port nothing listens on, not handed out again for a long while."""
    for _ in range(len(_PORTS)):
        port = next(_next_port)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_PORTS}")


@contextmanager
def serve_app(app) -> Iterator[str]:
    """Serve a Flask app in-process from a threaded server on a loopback port; yield its URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def login_session(url: str, email: str, password: str) -> requests.Session:
    """Log in through the form, CSRF token and all, as a browser would; return the session."""
    session = requests.Session()
    page = session.get(url + "/login", timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = session.post(
        url + "/login",
        data={"csrf_token": csrf, "email": email, "password": password},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, f"login as {email} failed: {response.status_code}"
    return session


def wait_until_up(url: str, process: subprocess.Popen, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{process.args!r} exited with {process.returncode} before {url} answered"
            )
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:  # refused, or accepted but too busy to answer yet
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


class Process:
    """A child process serving HTTP on a loopback port; stopped (and reaped) by stop()."""

    def __init__(
        self,
        args: list[str],
        port: int,
        probe_path: str,
        env: dict | None = None,
        cwd: Path = ROOT,
        log_path: Path | None = None,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        with open(log_path or os.devnull, "ab") as out:  # the child keeps its own copy
            self.process = subprocess.Popen(
                args,
                cwd=cwd,
                env={**os.environ, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until_up(self.url + probe_path, self.process)
        except Exception:
            self.stop()
            raise

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


def core_env(instance: Path, port: int, **config: object) -> dict[str, str]:
    env = {
        "EXTFW_INSTANCE_PATH": str(instance),
        "EXTFW_BASE_URL": f"http://127.0.0.1:{port}",
        "EXTFW_HEALTH_MONITOR": "false",
    }
    env.update({f"EXTFW_{key}": str(value) for key, value in config.items()})
    return env


def flask_cli(instance: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `flask --app app ...` against an instance folder, as an operator would.

    The run is a process forked from this test process's CLI server (tests/support/
    cli_server.py), which has the core imported already; while another thread's run holds
    the server, a fresh interpreter runs it instead.
    """
    command = [str(VENV_BIN / "flask"), "--app", "app", *args]
    full_env = {**os.environ, "EXTFW_INSTANCE_PATH": str(instance), **(env or {})}
    if _cli_server.lock.acquire(blocking=False):
        try:
            return _cli_server.run(command, full_env, timeout_s=60)
        finally:
            _cli_server.lock.release()
    return subprocess.run(
        command, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60
    )


class CliServer:
    """This test process's tests/support/cli_server.py, started on first use."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.process: subprocess.Popen | None = None
        self.runs = itertools.count()

    def _server(self) -> subprocess.Popen:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.support.cli_server"],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
            atexit.register(self.stop)
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            self.process.stdin.close()  # the server ends at the end of its input
            self.process.wait(timeout=30)
            self.process.stdout.close()

    def run(self, command: list[str], env: dict, timeout_s: float):
        server = self._server()
        folder = Path(os.environ.get("TMPDIR", "/tmp"))
        stem = folder / f"extfw-cli-{os.getpid()}-{next(self.runs)}"
        out, err = Path(f"{stem}.out"), Path(f"{stem}.err")
        request = {"flask": command[0], "args": command[3:], "env": env, "cwd": str(ROOT)}
        request.update(stdout=str(out), stderr=str(err), timeout_s=timeout_s)
        server.stdin.write(json.dumps(request) + "\n")
        server.stdin.flush()
        line = server.stdout.readline()
        try:
            stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
        except FileNotFoundError:
            stdout = stderr = ""
        finally:
            out.unlink(missing_ok=True)
            err.unlink(missing_ok=True)
        if not line:
            raise RuntimeError(f"the CLI server exited ({server.poll()}) during {command}")
        answer = json.loads(line)
        if answer["timed_out"]:
            raise subprocess.TimeoutExpired(command, timeout_s, stdout, stderr)
        return subprocess.CompletedProcess(command, answer["returncode"], stdout, stderr)


_cli_server = CliServer()


def start_core(
    tmp_path: Path, *, workers: int = 1, threads: int = 1, port: int | None = None, **config: object
) -> Process:
    """Start the core under gunicorn, with its database initialised, on a (free) port.

    ``threads`` > 1 gives gthread workers (keep-alive), as ``make run`` serves. Passing the
    ``port`` and ``tmp_path`` of an earlier core restarts it on the same instance folder.
    """
    instance = tmp_path / "instance"
    port = port or free_port()
    env = core_env(instance, port, **config)
    result = flask_cli(instance, "init-db", env=env)
    assert result.returncode == 0, result.stderr
    return Process(
        [
            str(VENV_BIN / "gunicorn"),
            *("-w", str(workers), "--threads", str(threads)),
            *("-b", f"127.0.0.1:{port}", "app:app"),
        ],
        port,
        "/healthz",
        env=env,
        log_path=tmp_path / "core.log",
    )
