"""The health monitor (SPEC §6): probe every live plugin, apply the results, one sweep at a time.

Every process runs a daemon thread that wakes a few times per interval and tries to take the
``health-sweep`` lease (a row in the database). Only the holder sweeps, and the lease lasts a
whole interval, so however many workers (or hosts sharing the database) run, sweeps start at
least one interval apart. Within a sweep every plugin is probed in its own thread with a
timeout, so a hanging plugin delays no other, and the sweep as a whole is bounded.
"""

import logging
import os
import socket
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass

from flask import Flask

from extframework import observability
from extframework.db import database, database_time, write_transaction
from extframework.models import HealthCheck, Lease, Plugin, utcnow
from extframework.services import lifecycle, plugin_http

log = logging.getLogger(__name__)

PROBED_STATES = lifecycle.PROBED_STATES
LEASE_NAME = "health-sweep"
MONITOR_ACTOR = "health-monitor"
MAX_PROBE_WORKERS = 64
PROBE_SLACK_S = 0.5
LEASE_MARGIN_S = 5.0
MAX_BODY_BYTES = 64 * 1024
DETAIL_CHARS = 250


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    status_code: int | None
    latency_ms: float | None
    detail: str


def health_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/health"


def probe(base_url: str, timeout_s: float) -> HealthResult:
    """GET {base_url}/health once: only a 200 within the timeout counts as healthy.

    Redirects are not followed (a 3xx is a failure). The timeout bounds the whole answer,
    connect to last byte.
    """
    url = health_url(base_url)
    answer = plugin_http.call(
        "GET",
        url,
        timeout_s=timeout_s,
        max_body=MAX_BODY_BYTES,
        headers={"User-Agent": "extframework-health/1"},
    )
    if answer.failure:
        detail = answer.failure[:DETAIL_CHARS]
        return HealthResult(False, answer.status_code, answer.latency_ms, detail)
    if answer.status_code == 200:
        return HealthResult(True, 200, answer.latency_ms, answer.status)
    detail = f"{url} answered {answer.status}"
    return HealthResult(False, answer.status_code, answer.latency_ms, detail)


# --- sweeps -------------------------------------------------------------------------------


def sweep(config: Mapping) -> None:
    """Probe every registered, active and degraded plugin concurrently and apply the results."""
    timeout_s = float(config["HEALTH_TIMEOUT_S"])
    plugins = list(Plugin.select().where(Plugin.state.in_(PROBED_STATES)))
    if not plugins:
        return
    results = probe_all(
        [p.base_url for p in plugins], timeout_s, keys=[p.plugin_id for p in plugins]
    )
    for plugin, result in zip(plugins, results, strict=True):
        try:
            apply_result(
                plugin,
                result,
                failures=int(config["HEALTH_FAILURES"]),
                history=int(config["HEALTH_HISTORY"]),
            )
        except Exception:  # one plugin's bad row must not stop the others' results
            log.exception("could not record the health of %s", plugin.plugin_id)


def probe_all(
    base_urls: list[str], timeout_s: float, *, keys: list[str] | None = None
) -> list[HealthResult]:
    """Probe URLs in parallel; a probe still running past its deadline counts as a timeout.

    Each probe ends by its deadline (``plugin_http``), so its thread does too. A plugin (named
    by its key, by default its URL) whose previous probe in this process is somehow still
    running is not probed again beside it.
    """
    if not base_urls:
        return []
    pool = ThreadPoolExecutor(
        max_workers=min(MAX_PROBE_WORKERS, len(base_urls)), thread_name_prefix="health-probe"
    )
    try:
        futures = [
            _start_probe(pool, url, key, timeout_s)
            for url, key in zip(base_urls, keys or base_urls, strict=True)
        ]
        wait_for([f for f in futures if f], timeout=sweep_bound(len(base_urls), timeout_s))
        results = []
        for url, future in zip(base_urls, futures, strict=True):
            if future is None:
                detail = f"the previous probe of {health_url(url)} is still running"
                results.append(HealthResult(False, None, None, detail))
            elif future.done() and future.exception() is None:
                results.append(future.result())
            else:
                detail = f"{health_url(url)} gave no answer within {timeout_s:g} s"
                results.append(HealthResult(False, None, None, detail))
        return results
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


_probing: set[str] = set()  # keys of the plugins with a probe running in this process
_probing_lock = threading.Lock()


def _start_probe(
    pool: ThreadPoolExecutor, base_url: str, key: str, timeout_s: float
) -> Future | None:
    with _probing_lock:
        if key in _probing:
            return None
        _probing.add(key)
    try:
        future = pool.submit(probe, base_url, timeout_s)
    except BaseException:
        _done_probing(key)
        raise
    future.add_done_callback(lambda _: _done_probing(key))
    return future


def _done_probing(key: str) -> None:
    with _probing_lock:
        _probing.discard(key)


def _forget_probes_after_fork() -> None:
    """A forked child runs none of its parent's probes (and must not inherit a held lock)."""
    global _probing_lock
    _probing.clear()
    _probing_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_probes_after_fork)


def sweep_bound(count: int, timeout_s: float) -> float:
    """The longest the probing part of a sweep of ``count`` plugins can take."""
    rounds = -(-count // MAX_PROBE_WORKERS)  # more plugins than threads: some wait their turn
    return rounds * (timeout_s + PROBE_SLACK_S)


def apply_result(plugin: Plugin, result: HealthResult, *, failures: int, history: int) -> None:
    """Record one probe and move the plugin as SPEC §6 says; an admin's disable outranks it."""
    observability.record_health_check(plugin.plugin_id, result.ok, result.latency_ms)
    with write_transaction():
        fresh = Plugin.get_or_none(Plugin.id == plugin.id)
        if fresh is None:
            return
        HealthCheck.create(
            plugin=fresh,
            ok=result.ok,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            detail=result.detail[:DETAIL_CHARS],
        )
        _trim_history(fresh, history)
        count = 0 if result.ok else fresh.consecutive_failures + 1
        Plugin.update(
            consecutive_failures=count, last_health_at=utcnow(), last_health_ok=result.ok
        ).where(Plugin.id == fresh.id).execute()
        target, cause = _next_state(fresh.state, result, count, failures)
        if target:
            lifecycle.transition(fresh, target, cause=cause, actor=MONITOR_ACTOR)
    plugin.state = fresh.state
    plugin.consecutive_failures = count


def _next_state(
    state: str, result: HealthResult, count: int, threshold: int
) -> tuple[str | None, str]:
    if result.ok and state == "registered":
        return "active", "first health check passed"
    if result.ok and state == "degraded":
        return "active", "health checks recovered"
    if not result.ok and state == "active" and count >= threshold:
        return "degraded", f"{count} consecutive health checks failed; last: {result.detail}"
    return None, ""


def _trim_history(plugin: Plugin, keep: int) -> None:
    newest = (
        HealthCheck.select(HealthCheck.id)
        .where(HealthCheck.plugin == plugin)
        .order_by(HealthCheck.id.desc())
        .limit(max(keep, 1))
    )
    HealthCheck.delete().where(
        (HealthCheck.plugin == plugin) & HealthCheck.id.not_in(newest)
    ).execute()


def recent_checks(plugin: Plugin, limit: int = 100) -> list[HealthCheck]:
    return list(
        HealthCheck.select()
        .where(HealthCheck.plugin == plugin)
        .order_by(HealthCheck.id.desc())
        .limit(limit)
    )


# --- the lease and the monitor thread -------------------------------------------------------


def acquire_lease(name: str, holder: str, ttl_s: float, *, now: float | None = None) -> bool:
    """Take the named lease if it has expired (compare-and-set); True if this holder has it now.

    ``now`` is the database's clock (``db.database_time``) unless a test gives it.
    """
    now = database_time() if now is None else now
    with write_transaction():
        Lease.insert(name=name, holder="", expires_at=0.0).on_conflict_ignore().execute()
        taken = (
            Lease.update(holder=holder, expires_at=now + ttl_s)
            .where((Lease.name == name) & (Lease.expires_at <= now))
            .execute()
        )
    return taken == 1


def hold_lease_until(name: str, holder: str, until: float) -> bool:
    """Move the expiry of a lease this holder still has; False if another holder took it."""
    with write_transaction():
        return (
            Lease.update(expires_at=until)
            .where((Lease.name == name) & (Lease.holder == holder))
            .execute()
            == 1
        )


class Monitor:
    """One process's health thread; it sweeps only while it holds the lease."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.pid = os.getpid()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name="health-monitor", daemon=True)

    def start(self) -> "Monitor":
        self.thread.start()
        log.info("health monitor started in process %s", self.pid)
        return self

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        config = self.app.config
        poll_s = max(0.05, float(config["HEALTH_INTERVAL_S"]) / 4)
        while not self.stopping.is_set():
            try:
                self.tick()
            except Exception:  # the database may be busy; try again next round
                log.exception("health sweep failed")
            self.stopping.wait(poll_s)

    def tick(self) -> bool:
        """Sweep if this process takes the lease; return whether it did.

        The lease is taken for as long as the sweep can possibly run (so a crashed holder
        frees it), then set to one interval after the sweep began, or to its end if it ran
        longer: the next sweep, in any process, starts no sooner.
        """
        config = self.app.config
        interval = float(config["HEALTH_INTERVAL_S"])
        timeout = float(config["HEALTH_TIMEOUT_S"])
        with self.app.app_context(), database.connection_context():
            count = Plugin.select().where(Plugin.state.in_(PROBED_STATES)).count()
            bound = sweep_bound(max(count, 1), timeout) + LEASE_MARGIN_S
            started = database_time()  # one clock for every host that sweeps
            if not acquire_lease(LEASE_NAME, self.holder, max(interval, bound), now=started):
                return False
            try:
                sweep(config)
            finally:
                ended = database_time()
                hold_lease_until(LEASE_NAME, self.holder, max(started + interval, ended))
            return True


_monitors: dict[int, Monitor] = {}
_monitors_lock = threading.Lock()


def start_monitor(app: Flask) -> None:
    """Run the health monitor in this process (and in any worker forked from it).

    Not under ``flask <command>`` other than ``flask run``: a CLI command must not sweep.
    """
    app.before_request(lambda: _ensure_monitor(app))
    if os.environ.get("FLASK_RUN_FROM_CLI") == "true":
        return  # `flask run` starts it on the first request through the hook above
    _ensure_monitor(app)


def monitor_problem(app: Flask) -> str | None:
    """Why this process's health monitor is not running though it should, or None."""
    if not app.config["HEALTH_MONITOR"]:
        return None
    monitor = _monitors.get(os.getpid())
    if monitor is None:
        return None  # not started yet: `flask run` starts it on the first request
    if not monitor.thread.is_alive():
        return (
            f"The health monitor of process {monitor.pid} stopped; plugins are not probed. "
            "See the log for why, and restart the core."
        )
    return None


def _ensure_monitor(app: Flask) -> None:
    pid = os.getpid()
    if pid in _monitors:
        return
    with _monitors_lock:
        if pid not in _monitors:
            monitor = Monitor(app)
            app.extensions["extframework.health_monitor"] = monitor
            _monitors[pid] = monitor.start()
