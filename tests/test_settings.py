"""Settings are checked at start against one table (issue 13)."""

import os
import re
from pathlib import Path

import pytest

from extframework import create_app, settings
from extframework.services import health
from tests.support.processes import flask_cli

README = Path(__file__).resolve().parent.parent / "README.md"


def _app_from_env(tmp_path, monkeypatch, **env):
    for name in [key for key in os.environ if key.startswith("EXTFW_")]:
        if name != "EXTFW_HEALTH_MONITOR":
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(f"EXTFW_{name}", value)
    return create_app(instance_path=str(tmp_path / "instance"))


@pytest.mark.parametrize(
    ("name", "value", "takes"),
    [
        ("HEALTH_INTERVAL_S", "abc", "a number >= 0.01"),
        ("HEALTH_INTERVAL_S", "nan", "a number >= 0.01"),
        ("HEALTH_INTERVAL_S", "0", "a number >= 0.01"),
        ("SESSION_COOKIE_SECURE", "maybe", "true/false"),
        ("HEALTH_MONITOR", "2", "true/false"),
        ("MAX_BODY_BYTES", "-1", "an integer >= 1024"),
        ("LOGIN_MAX_FAILURES", "2.5", "an integer >= 1"),
        ("REQUEST_JWT_TTL_S", "86400", "<= 3600"),
        ("JWT_ALGORITHM", "HS256", "one of ES256, RS256"),
        ("SESSION_COOKIE_SAMESITE", "none", "one of Lax, Strict"),
        ("BASE_URL", "core.example", "http:// or https://"),
    ],
)
def test_a_wrong_value_stops_the_start_naming_the_setting(
    tmp_path, monkeypatch, name, value, takes
):
    with pytest.raises(settings.SettingsError) as refused:
        _app_from_env(tmp_path, monkeypatch, **{name: value})
    message = str(refused.value)
    assert name in message and repr(value) in message and takes in message


def test_every_wrong_value_is_named_at_once(tmp_path, monkeypatch):
    with pytest.raises(settings.SettingsError) as refused:
        _app_from_env(tmp_path, monkeypatch, HEALTH_INTERVAL_S="abc", LOGIN_WINDOW_S="-5")
    assert "HEALTH_INTERVAL_S" in str(refused.value) and "LOGIN_WINDOW_S" in str(refused.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("no", False), ("false", False), ("0", False), ("OFF", False), ("yes", True), ("1", True)],
)
def test_booleans_read_as_people_write_them(tmp_path, monkeypatch, raw, expected):
    app = _app_from_env(tmp_path, monkeypatch, SESSION_COOKIE_SECURE=raw)
    assert app.config["SESSION_COOKIE_SECURE"] is expected
    assert app.config["REMEMBER_COOKIE_SECURE"] is expected


@pytest.mark.parametrize(
    ("base_url", "secure"), [("https://core.example", True), ("http://x", False)]
)
def test_cookies_are_secure_by_default_when_the_base_url_is_https(
    tmp_path, monkeypatch, base_url, secure
):
    app = _app_from_env(tmp_path, monkeypatch, BASE_URL=base_url)
    assert app.config["SESSION_COOKIE_SECURE"] is secure


def test_numbers_from_the_environment_get_their_setting_type(tmp_path, monkeypatch):
    app = _app_from_env(tmp_path, monkeypatch, HEALTH_FAILURES="5", PROXY_TIMEOUT_S="2")
    assert app.config["HEALTH_FAILURES"] == 5 and isinstance(app.config["HEALTH_FAILURES"], int)
    assert app.config["PROXY_TIMEOUT_S"] == 2.0


def test_instance_config_values_are_checked_too(tmp_path, monkeypatch):
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "config.py").write_text("HEALTH_FAILURES = '3'\n")
    with pytest.raises(
        settings.SettingsError, match=r"HEALTH_FAILURES = '3' \(from instance/config.py\)"
    ):
        _app_from_env(tmp_path, monkeypatch)


def test_an_unknown_name_is_reported_with_the_nearest_known_one(tmp_path):
    instance = tmp_path / "instance"
    result = flask_cli(instance, "config", "check", env={"EXTFW_HEALTH_INTERVL_S": "3"})
    assert result.returncode == 1
    assert "EXTFW_HEALTH_INTERVL_S" in result.stderr
    assert "did you mean EXTFW_HEALTH_INTERVAL_S" in result.stderr
    assert flask_cli(instance, "config", "check").returncode == 0


def test_a_wrong_value_stops_a_real_start(tmp_path):
    result = flask_cli(tmp_path / "instance", "init-db", env={"EXTFW_HEALTH_INTERVAL_S": "abc"})
    assert result.returncode != 0
    assert "HEALTH_INTERVAL_S = 'abc' (from EXTFW_HEALTH_INTERVAL_S)" in result.stderr


def test_config_show_redacts_secrets_and_names_sources(tmp_path):
    result = flask_cli(
        tmp_path / "instance",
        "config",
        "show",
        env={"EXTFW_SECRET_KEY": "s3cret-value", "EXTFW_HEALTH_FAILURES": "4"},
    )
    assert result.returncode == 0, result.stderr
    assert "s3cret-value" not in result.stdout + result.stderr
    assert "SECRET_KEY = <redacted>  (EXTFW_SECRET_KEY)" in result.stdout
    assert "HEALTH_FAILURES = 4  (EXTFW_HEALTH_FAILURES)" in result.stdout


def test_the_readme_table_is_the_settings_table():
    text = README.read_text()
    table = re.search(r"^\| key \| default \| allowed \| meaning \|\n(?:\|.*\n)+", text, re.M)
    assert table is not None
    assert table.group(0).rstrip("\n") == settings.markdown_table()


def test_healthz_says_when_the_health_monitor_died(tmp_path, monkeypatch):
    monkeypatch.setattr(health, "_monitors", {})
    app = create_app(
        {
            "DATABASE": str(tmp_path / "core.sqlite3"),
            "HEALTH_MONITOR": True,
            "HEALTH_INTERVAL_S": 3600,
        },
        instance_path=str(tmp_path / "instance"),
    )
    client = app.test_client()
    with app.app_context():
        from extframework import db

        db.upgrade()
    assert client.get("/healthz").status_code == 200
    monitor = app.extensions["extframework.health_monitor"]
    monitor.stop()
    monitor.thread.join(timeout=30)
    answer = client.get("/healthz")
    assert answer.status_code == 503
    assert answer.get_json()["type"] == "urn:extframework:problem:health-monitor-stopped"


def test_config_show_redacts_the_database_url_it_may_hold_a_password(tmp_path, monkeypatch):
    monkeypatch.setenv("EXTFW_DATABASE_URL", "postgresql://extfw:hunter2@127.0.0.1:1/extfw")
    monkeypatch.setenv("EXTFW_SECRET_KEY", "shared-by-every-host")
    app = create_app(instance_path=str(tmp_path / "instance"))
    result = app.test_cli_runner().invoke(args=["config", "show"])
    assert "DATABASE_URL = <redacted>  (EXTFW_DATABASE_URL)" in result.output, result.output
    assert "hunter2" not in result.output
