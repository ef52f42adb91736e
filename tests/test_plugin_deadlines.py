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

from extframework.services import deadlines, health, migrations, plugin_http
from tests.support.processes import ROOT, Process, free_port

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
    wait_until(lambda: deadlines.pending() == 0, 10, "the watchdog passed the deadline")
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
