"""The real core under gunicorn -w 2: one health sweep per interval, whichever worker runs it."""

import time

import requests

from tests.support.processes import flask_cli, start_core

INTERVAL_S = 1.0
RUN_S = 5.5


def test_two_workers_probe_each_plugin_at_most_once_per_interval(tmp_path, plugin_server):
    record = tmp_path / "probes.log"
    plugin = plugin_server("healthy", record=record)
    core = start_core(
        tmp_path,
        workers=2,
        HEALTH_MONITOR="true",
        HEALTH_INTERVAL_S=INTERVAL_S,
        HEALTH_TIMEOUT_S=0.5,
    )
    try:
        created = flask_cli(tmp_path / "instance", "enrolment-keys", "create")
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip().splitlines()[-1]
        manifest = {
            "plugin_id": "watched",
            "name": "Watched",
            "version": "1.0.0",
            "base_url": plugin.url,
        }
        registered = requests.post(
            f"{core.url}/api/registry/plugins",
            json=manifest,
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert registered.status_code == 201, registered.text
        token = registered.json()["plugin_token"]
        record.write_text("")  # forget registration's own probe
        time.sleep(RUN_S)
        stamps = [float(line) for line in record.read_text().split()]
        own = requests.get(
            f"{core.url}/api/registry/plugins/watched",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).json()
    finally:
        core.stop()

    assert core.logs().count("health monitor started in process") == 2
    assert len(stamps) >= 3, stamps  # sweeps did run
    assert len(stamps) <= RUN_S / INTERVAL_S + 1, stamps
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    # Without the lease both workers would probe within milliseconds of each other.
    assert min(gaps) > INTERVAL_S / 2, gaps
    assert own["state"] == "active"
    assert own["last_health"]["ok"] is True
