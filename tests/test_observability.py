"""Metrics, request ids and logs (issue 13)."""

import json
import logging

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from extframework import observability
from tests.support.processes import start_core
from tests.support.storage_fixtures import provision_in_instance


def scrape(url: str, **kwargs) -> dict[tuple[str, tuple], float]:
    answer = requests.get(url + "/metrics", timeout=10, **kwargs)
    assert answer.status_code == 200, answer.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.timeout(120)
def test_metrics_add_up_across_gunicorn_workers(tmp_path):
    core = start_core(tmp_path, workers=2, threads=2)
    try:
        token = provision_in_instance(tmp_path / "instance", "acme-notes")
        before = scrape(core.url)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        created = 0
        for n in range(40):
            # A new connection each time, so both workers answer some of them.
            answer = requests.post(
                f"{core.url}/api/storage/notes",
                json={"title": f"doc {n}", "count": n},
                headers={"Authorization": f"Bearer {token}", "Connection": "close"},
                timeout=10,
            )
            assert answer.status_code == 201
            created += 1
        refused = session.post(f"{core.url}/api/storage/notes", json={"count": "x"}, timeout=10)
        assert refused.status_code == 422
        after = scrape(core.url)
    finally:
        core.stop()

    endpoint = {"endpoint": "/api/storage/<collection>", "method": "POST"}
    assert (
        value(after, "extfw_http_requests_total", **endpoint, status="201")
        - value(before, "extfw_http_requests_total", **endpoint, status="201")
        == created
    )
    assert value(after, "extfw_http_requests_total", **endpoint, status="422") == 1
    storage = {"plugin": "acme-notes", "operation": "create"}
    assert value(after, "extfw_storage_operations_total", **storage, status="201") == created
    assert value(after, "extfw_documents", plugin="acme-notes", tenant="default") == created
    assert value(after, "extfw_document_bytes", plugin="acme-notes", tenant="default") > 0
    assert value(after, "extfw_plugin_state", plugin="acme-notes", state="active") == 1
    assert value(after, "extfw_database_bytes") > 0
    latency = value(
        after, "extfw_http_request_duration_seconds_count", endpoint="/api/storage/<collection>"
    )
    assert latency == created + 1
    pids = {line.split()[-1] for line in core.logs().splitlines() if "Booting worker" in line}
    assert len(pids) == 2


def test_metrics_are_for_loopback_or_the_metrics_token(tmp_path):
    from extframework import create_app, db

    app = create_app(
        {
            "DATABASE": str(tmp_path / "core.sqlite3"),
            "HEALTH_MONITOR": False,
            "METRICS_TOKEN": "t0ken",
        },
        instance_path=str(tmp_path / "instance"),
    )
    with app.app_context():
        db.upgrade()
    client = app.test_client()
    remote = {"REMOTE_ADDR": "203.0.113.7"}
    assert client.get("/metrics", environ_base=remote).status_code == 403
    wrong = {"Authorization": "Bearer nope"}
    assert client.get("/metrics", environ_base=remote, headers=wrong).status_code == 403
    right = {"Authorization": "Bearer t0ken"}
    answer = client.get("/metrics", environ_base=remote, headers=right)
    assert answer.status_code == 200 and b"extfw_http_requests_total" in answer.data
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200


def test_each_answer_carries_a_request_id_that_the_access_log_names(client, caplog):
    with caplog.at_level(logging.INFO, logger="extframework.access"):
        first = client.get("/healthz")
        second = client.get("/healthz")
    ids = [first.headers["X-Request-ID"], second.headers["X-Request-ID"]]
    assert len(set(ids)) == 2 and all(len(i) == 32 for i in ids)
    lines = [r.getMessage() for r in caplog.records if r.name == "extframework.access"]
    assert any(f"id={ids[0]}" in line and '"GET /healthz" 200' in line for line in lines)


def test_a_request_id_from_a_client_is_kept_only_behind_a_trusted_proxy(app, client):
    sent = {"X-Request-ID": "from-the-client-1234"}
    assert client.get("/healthz", headers=sent).headers["X-Request-ID"] != sent["X-Request-ID"]
    app.config["PROXY_FIX"] = 1
    assert client.get("/healthz", headers=sent).headers["X-Request-ID"] == sent["X-Request-ID"]


def test_plugins_get_the_request_id_and_fault_panels_show_it(
    client, make_user, login, shell_plugin, stub_plugin
):
    make_user("member@example.com", role="member")
    login("member@example.com")
    shell_plugin(base_url=stub_plugin.url)
    stub_plugin.reply("GET", "/notes", body="<p>list</p>")
    answer = client.get("/plugin-proxy/notes/notes")
    assert answer.status_code == 200
    assert stub_plugin.calls[-1].headers["X-Request-ID"] == answer.headers["X-Request-ID"]

    stub_plugin.reply("GET", "/notes", status=500, body="boom")
    broken = client.get("/plugin-proxy/notes/notes")
    assert broken.status_code == 502
    assert f"<code>{broken.headers['X-Request-ID']}</code>" in broken.get_data(as_text=True)


def test_json_logs_carry_the_request_id(app):
    formatter = observability.JsonFormatter()
    record = logging.LogRecord(
        "extframework.test", logging.WARNING, __file__, 1, "x=%s", (1,), None
    )
    with app.test_request_context("/"):
        from flask import g

        g.request_id = "abc123"
        entry = json.loads(formatter.format(record))
    assert entry == {
        "time": entry["time"],
        "level": "WARNING",
        "logger": "extframework.test",
        "message": "x=1",
        "request_id": "abc123",
    }
