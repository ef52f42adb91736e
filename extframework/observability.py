"""Request ids, one access-log line per request, JSON logs, and ``GET /metrics``.

Metrics use ``prometheus_client``. Under gunicorn, ``gunicorn.conf.py`` sets
``PROMETHEUS_MULTIPROC_DIR`` before any worker imports this module, so every worker's counts
land in shared files and one scrape sums them; elsewhere (``flask run``, tests) the process's
own registry answers. What the database holds (plugin states, documents, bytes, file size) is
read at scrape time. See docs/operations.md.
"""

import hmac
import ipaddress
import json
import logging
import os
import re
import time
import uuid

from flask import Flask, Response, current_app, g, request
from peewee import fn
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from extframework import dialect
from extframework.db import database as db_handle
from extframework.errors import Forbidden, request_id
from extframework.models import Document, Plugin

access_log = logging.getLogger("extframework.access")

REQUEST_ID_HEADER = "X-Request-ID"
# An id a trusted proxy sent is kept when it looks like one (nginx's $request_id does).
TRUSTED_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")

# The core's own registry (not prometheus_client's global one): importing this module again
# (tests drop extframework's modules and re-import them) must not register twice.
CORE_METRICS = CollectorRegistry()

REQUESTS = Counter(
    "extfw_http_requests_total",
    "HTTP requests answered",
    ["endpoint", "method", "status"],
    registry=CORE_METRICS,
)
REQUEST_SECONDS = Histogram(
    "extfw_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["endpoint"],
    registry=CORE_METRICS,
)
PROXY_CALLS = Counter(
    "extfw_proxy_calls_total",
    "Calls to plugins for people, by outcome",
    ["plugin", "outcome"],
    registry=CORE_METRICS,
)
PROXY_SECONDS = Histogram(
    "extfw_proxy_call_duration_seconds",
    "Time a plugin took to answer a proxied call",
    ["plugin"],
    registry=CORE_METRICS,
)
HEALTH_SECONDS = Histogram(
    "extfw_health_check_duration_seconds",
    "Time a plugin's health check took",
    ["plugin"],
    registry=CORE_METRICS,
)
HEALTH_FAILURES = Counter(
    "extfw_health_check_failures_total", "Failed health checks", ["plugin"], registry=CORE_METRICS
)
STORAGE_OPERATIONS = Counter(
    "extfw_storage_operations_total",
    "Storage API calls by plugin, operation and status",
    ["plugin", "operation", "status"],
    registry=CORE_METRICS,
)


def init_app(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_finish)
    app.add_url_rule("/metrics", "metrics", metrics_view)
    app.context_processor(lambda: {"request_id": request_id()})
    if app.config["LOG_FORMAT"] == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())


def _start() -> None:
    g.request_started = time.perf_counter()
    sent = request.headers.get(REQUEST_ID_HEADER, "")
    trusted = current_app.config["PROXY_FIX"] and TRUSTED_REQUEST_ID.fullmatch(sent)
    g.request_id = sent if trusted else uuid.uuid4().hex


def _finish(response: Response) -> Response:
    elapsed = time.perf_counter() - g.get("request_started", time.perf_counter())
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
    REQUEST_SECONDS.labels(endpoint).observe(elapsed)
    plugin_id = g.get("storage_plugin_id")
    if plugin_id and request.blueprint == "storage":
        operation = (request.endpoint or "").rpartition(".")[2]
        STORAGE_OPERATIONS.labels(plugin_id, operation, str(response.status_code)).inc()
    response.headers[REQUEST_ID_HEADER] = request_id()
    access_log.info(
        '%s "%s %s" %s %.1fms id=%s',
        request.remote_addr or "-",
        request.method,
        request.full_path if request.query_string else request.path,
        response.status_code,
        elapsed * 1000,
        request_id(),
    )
    return response


def record_proxy_call(plugin_id: str, outcome: str, seconds: float) -> None:
    PROXY_CALLS.labels(plugin_id, outcome).inc()
    PROXY_SECONDS.labels(plugin_id).observe(seconds)


def record_health_check(plugin_id: str, ok: bool, latency_ms: float | None) -> None:
    if latency_ms is not None:
        HEALTH_SECONDS.labels(plugin_id).observe(latency_ms / 1000)
    if not ok:
        HEALTH_FAILURES.labels(plugin_id).inc()


def metrics_view() -> Response:
    """Prometheus text format; from loopback, or with ``Authorization: Bearer METRICS_TOKEN``."""
    _check_metrics_access()
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(CORE_METRICS)  # this process's own counts: nothing to sum
    registry.register(DatabaseCollector(current_app.config["DATABASE"]))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def _check_metrics_access() -> None:
    token = current_app.config["METRICS_TOKEN"]
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(sent.strip(), token):
        return
    try:
        loopback = ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise Forbidden(
            "Metrics are served to loopback, or with 'Authorization: Bearer <METRICS_TOKEN>'."
        )


class DatabaseCollector:
    """What the database holds, read when Prometheus scrapes (one grouped query per family)."""

    def __init__(self, database_path: str) -> None:
        self.database_path = database_path

    def collect(self):
        states = GaugeMetricFamily(
            "extfw_plugin_state",
            "1 for each plugin's current lifecycle state",
            labels=["plugin", "state"],
        )
        for plugin_id, state in Plugin.select(Plugin.plugin_id, Plugin.state).tuples():
            states.add_metric([plugin_id, state], 1)
        yield states
        documents = GaugeMetricFamily(
            "extfw_documents", "Documents stored", labels=["plugin", "tenant"]
        )
        size = GaugeMetricFamily(
            "extfw_document_bytes", "Bytes of document data stored", labels=["plugin", "tenant"]
        )
        rows = (
            Document.select(
                Document.tenant,
                Document.plugin_id,
                fn.COUNT(Document.pk),
                fn.SUM(dialect.current().text_length(Document.data)),
            )
            .group_by(Document.tenant, Document.plugin_id)
            .tuples()
        )
        for tenant, plugin_id, count, data_bytes in rows:
            documents.add_metric([plugin_id, tenant], count)
            size.add_metric([plugin_id, tenant], data_bytes or 0)
        yield documents
        yield size
        database = GaugeMetricFamily(
            "extfw_database_bytes", "Size of the database files (with the WAL)"
        )
        database.add_metric([], dialect.current().database_bytes(db_handle, self.database_path))
        yield database


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id when there is one (LOG_FORMAT=json)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if rid := request_id():
            entry["request_id"] = rid
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)
