"""A slow plugin cannot hold the core: every call has a real deadline, and calls are bounded.

The slow plugin (``tests/support/plugins/slow_plugin.py``) trickles its status line, headers
or body a byte per 0.3 s, or never answers; the core runs in-process for the service-level
tests and under gunicorn (2 workers x 4 threads, as the demo) for the shell-level ones.
"""

import os
import socket
import sys
import threading
import time
from collections.abc import Callable

import pytest
import requests

from extframework.services import deadlines, health, migrations, plugin_http, proxy
from tests.support.processes import ROOT, Process, flask_cli, free_port, login_session, start_core

PASSWORD = "a long enough password"
SLOW_PATHS = ["/trickle-status", "/trickle-headers", "/trickle-body"]
MARGIN_S = 3.0  # liveness bound on top of a deadline; a shared 2-core machine can be slow


def start_slow_plugin(tmp_path, *, health_mode: str = "ok") -> Process:
    port = free_port()
    process = Process(
        [
            sys.executable,
            str(ROOT / "tests/support/plugins/slow_plugin.py"),
            *("--port", str(port), "--health", health_mode),
        ],
        port,
        "/fast",
        log_path=tmp_path / f"slow-{port}.log",
    )
    process.stats = lambda: requests.get(process.url + "/stats", timeout=5).json()
    return process


@pytest.fixture
def slow_plugin(tmp_path):
    started: list[Process] = []

    def start(**options) -> Process:
        started.append(start_slow_plugin(tmp_path, **options))
        return started[-1]

    yield start
    for process in started:
        process.kill()


def wait_until(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def within(seconds: float, work: Callable[[], object]) -> object:
    """Run ``work`` in a daemon thread; fail if it has not returned within ``seconds``."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- the watchdog itself ------------------------------------------------------------------------


def test_the_watchdog_shuts_a_silent_socket_at_its_deadline():
    ours, theirs = socket.socketpair()
    fds = open_fds()
    with deadlines.Deadline(0.3) as deadline:
        deadline.attach(ours)
        assert within(0.3 + MARGIN_S, lambda: ours.recv(1)) == b""  # cut, not answered
    assert deadline.finish() is True
    assert open_fds() == fds  # the watch's own descriptor is closed again
    ours.close()
    theirs.close()


def test_a_deadline_finished_in_time_leaves_the_socket_alone():
    ours, theirs = socket.socketpair()
    with deadlines.Deadline(0.2) as deadline:
        deadline.attach(ours)
        theirs.sendall(b"a")
        assert ours.recv(1) == b"a"
    assert deadline.finish() is False
    # Other tests' deadlines (a migration's 300 s) may still be held: wait for this one only.
    wait_until(lambda: not deadlines.watching(deadline), 10, "the watchdog passed the deadline")
    assert not deadline.fired
    theirs.sendall(b"b")
    ours.sendall(b"c")
    assert (ours.recv(1), theirs.recv(1)) == (b"b", b"c")
    ours.close()
    theirs.close()


# --- plugin_http: probes and migration handlers -------------------------------------------------


@pytest.mark.parametrize("path", SLOW_PATHS)
def test_a_trickled_answer_fails_by_its_deadline_and_leaks_nothing(slow_plugin, path):
    plugin = slow_plugin()
    plugin_http.call("GET", plugin.url + "/fast", timeout_s=1, max_body=1024)  # warm up
    threads, fds = threading.active_count(), open_fds()

    answer = within(
        1 + MARGIN_S,
        lambda: plugin_http.call("GET", plugin.url + path, timeout_s=1, max_body=64 * 1024),
    )

    assert answer.failure is not None and "within 1 s" in answer.failure
    assert (threading.active_count(), open_fds()) == (threads, fds)
    wait_until(lambda: plugin.stats()["open"] == 0, 5, "the plugin saw the connection close")


def test_a_trickling_migration_handler_fails_by_its_timeout(slow_plugin):
    plugin = slow_plugin()
    ok, _, detail = within(
        1 + MARGIN_S,
        lambda: migrations.call_handler(plugin.url + "/trickle-body", "jwt", "efmc_x", {}, 1),
    )
    assert not ok and "within 1 s" in detail


def probe_threads() -> int:
    return sum(t.name.startswith("health-probe") for t in threading.enumerate())


def test_a_trickling_health_probe_fails_by_its_deadline_and_its_thread_ends(slow_plugin):
    plugin = slow_plugin(health_mode="trickle")
    baseline = probe_threads()
    [result] = within(0.5 + MARGIN_S, lambda: health.probe_all([plugin.url], 0.5))
    assert not result.ok and "within 0.5 s" in result.detail
    wait_until(lambda: probe_threads() == baseline, 0.5 + MARGIN_S, "the probe thread ended")
    wait_until(lambda: plugin.stats()["open"] == 0, 5, "the plugin saw the connection close")


def test_a_probe_still_running_is_not_started_again(slow_plugin):
    plugin = slow_plugin(health_mode="hang")
    first = threading.Thread(target=health.probe_all, args=([plugin.url], 2.0))
    first.start()
    wait_until(lambda: plugin.stats()["open"] == 1, 5, "the first probe reached the plugin")
    [second] = health.probe_all([plugin.url], 2.0)
    first.join(2.0 + MARGIN_S)
    assert not second.ok and "still running" in second.detail
    assert plugin.stats()["calls"]["/health"] == 1


# --- the proxy, in-process ---------------------------------------------------------------------


def test_a_timed_out_proxy_connection_is_not_reused(app, shell_plugin, slow_plugin):
    plugin = slow_plugin()
    routes = [
        {"menu_id": path.strip("/"), "label": path, "method": "GET", "path": path}
        for path in ["/fast", "/trickle-body"]
    ]
    shell_plugin("slow", plugin.url, routes=routes)
    caller = proxy.Caller(1, "Ada", "ada@example.com", "default", "member")
    with app.app_context():

        def forward(path: str) -> proxy.Outcome:
            target = proxy.resolve("slow", "GET", path, role="member", tenant="default")
            return proxy.forward(
                target,
                caller,
                method="GET",
                query_string="",
                form=[],
                store=app.extensions["extframework.keys"],
                issuer="http://core.test",
                jwt_ttl_s=60,
                timeout_s=1.0,
            )

        assert isinstance(forward("/fast"), proxy.Fragment)
        outcome = within(1 + MARGIN_S, lambda: forward("/trickle-body"))
        assert isinstance(outcome, proxy.Fault) and outcome.kind == "timeout"
        assert isinstance(forward("/fast"), proxy.Fragment)
    ports = plugin.stats()["ports"]
    trickled = [port for path, port in ports if path == "/trickle-body"]
    after = [port for path, port in ports if path == "/fast"][-1]
    assert trickled and after != trickled[0]  # the cut connection went back to no one


def test_a_call_beyond_the_bound_is_busy_without_reaching_the_plugin(
    app, shell_plugin, slow_plugin
):
    plugin = slow_plugin()
    shell_plugin("slow", plugin.url, routes=[{"menu_id": "f", "method": "GET", "path": "/fast"}])
    before = plugin.stats()["calls"]["/fast"]  # the start-up check's call
    held = deadlines.slots_for("slow", 1)
    assert held.take(0)  # another request holds the only slot
    try:
        with app.app_context():
            target = proxy.resolve("slow", "GET", "/fast", role="member", tenant="default")
            outcome = proxy.forward(
                target,
                proxy.Caller(1, "Ada", "ada@example.com", "default", "member"),
                method="GET",
                query_string="",
                form=[],
                store=app.extensions["extframework.keys"],
                issuer="http://core.test",
                jwt_ttl_s=60,
                timeout_s=1.0,
                max_concurrent=1,
            )
    finally:
        held.give()
    assert isinstance(outcome, proxy.Fault)
    assert (outcome.kind, outcome.status) == ("busy", 503)
    assert ("Retry-After", "5") in outcome.headers
    assert plugin.stats()["calls"]["/fast"] == before


# --- the shell under gunicorn --------------------------------------------------------------------


class Shell:
    """The core under gunicorn (2 workers x 4 threads), an admin, and registered plugins."""

    def __init__(self, tmp_path, **config: object) -> None:
        self.core = start_core(
            tmp_path,
            workers=2,
            threads=4,
            HEALTH_MONITOR="true",
            HEALTH_INTERVAL_S=0.5,
            **config,
        )
        self.url = self.core.url
        instance = tmp_path / "instance"
        made = flask_cli(
            instance,
            *("users", "create", "ops@example.com", "--role", "admin", "--operator"),
            env={"EXTFW_PASSWORD": PASSWORD},
        )
        assert made.returncode == 0, made.stderr
        key = flask_cli(instance, "enrolment-keys", "create", "--uses", "10")
        assert key.returncode == 0, key.stderr
        self.key = key.stdout.strip().splitlines()[-1]
        self.session = self.login()

    def login(self) -> requests.Session:
        return login_session(self.url, "ops@example.com", PASSWORD)

    def register(self, plugin_id: str, base_url: str, paths: list[str]) -> None:
        items = [
            {"id": f"p{i}", "label": path, "view": {"method": "GET", "path": path}}
            for i, path in enumerate(paths)
        ]
        manifest = {
            "plugin_id": plugin_id,
            "name": plugin_id.title(),
            "version": "1.0.0",
            "base_url": base_url,
            "menu_items": items,
        }
        response = requests.post(
            self.url + "/api/registry/plugins",
            json=manifest,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        wait_until(lambda: self.state(plugin_id) == "active", 20, f"{plugin_id} became active")

    def state(self, plugin_id: str) -> str | None:
        answer = self.session.get(f"{self.url}/api/registry/plugins/{plugin_id}", timeout=10)
        return answer.json().get("state") if answer.status_code == 200 else None

    def timed_get(self, path: str, session: requests.Session | None = None, timeout_s=30):
        started = time.monotonic()
        response = (session or self.session).get(self.url + path, timeout=timeout_s)
        return response, time.monotonic() - started

    def stop(self) -> None:
        self.core.stop()


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("deadlines")
    plugin = start_slow_plugin(tmp_path)
    shell = Shell(tmp_path, PROXY_TIMEOUT_S=1)
    try:
        shell.register("slow", plugin.url, ["/fast", *SLOW_PATHS])
        shell.plugin = plugin
        yield shell
    finally:
        shell.stop()
        plugin.kill()


@pytest.mark.parametrize("path", SLOW_PATHS)
def test_a_trickled_view_gets_the_timeout_panel_in_time(shell, path):
    response, took = shell.timed_get("/plugin-proxy/slow" + path, timeout_s=1 + MARGIN_S)
    assert response.status_code == 504, response.text[:300]
    assert "did not answer in time" in response.text
    assert took < 1 + MARGIN_S
    wait_until(lambda: shell.plugin.stats()["open"] == 0, 5, "the core closed the connection")


IMAGES = 12  # two browsers' worth of parallel connections (six each) to one slow plugin
SLOW_TIMEOUT_S = 4


def test_a_slow_plugin_cannot_take_every_worker_thread(tmp_path, slow_plugin):
    slow, fast = slow_plugin(), slow_plugin()
    shell = Shell(tmp_path, PROXY_TIMEOUT_S=SLOW_TIMEOUT_S)
    stopping = threading.Event()
    seen: list[requests.Response] = []
    browsers: list[threading.Thread] = []
    try:
        shell.register("slow", slow.url, ["/img/:n"])
        shell.register("fast", fast.url, ["/fast"])

        def browse(n: int) -> None:
            session = requests.Session()
            session.cookies.update(shell.session.cookies)
            while not stopping.is_set():
                try:
                    seen.append(session.get(f"{shell.url}/plugin-proxy/slow/img/{n}", timeout=30))
                except requests.RequestException:  # the core stopped under it
                    return

        browsers += [threading.Thread(target=browse, args=(n,)) for n in range(IMAGES)]
        for browser in browsers:
            browser.start()
        wait_until(lambda: slow.stats()["open"] >= 2, 10, "slow images are being held")
        for _ in range(3):
            healthz, healthz_took = shell.timed_get("/healthz", requests.Session())
            view, view_took = shell.timed_get("/plugin-proxy/fast/fast")
            assert healthz.status_code == 200 and healthz_took < 2, healthz_took
            assert view.status_code == 200 and "fast" in view.text and view_took < 2, view_took
        wait_until(lambda: any(r.status_code == 503 for r in seen), 10, "a busy answer")
    finally:
        stopping.set()
        shell.stop()
        for browser in browsers:
            browser.join(10)
    busy = next(r for r in seen if r.status_code == 503)
    assert busy.headers.get("Retry-After") and "busy" in busy.text
    # 2 workers, each at most PROXY_MAX_CONCURRENT_PER_PLUGIN (2) calls to one plugin at once
    assert slow.stats()["max_open"] <= 4
