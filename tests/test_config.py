"""Configuration layers: defaults, instance/config.py, EXTFW_* environment."""

import threading

from extframework import create_app


def test_instance_config_then_environment_override_defaults(tmp_path, monkeypatch):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "config.py").write_text("PROXY_TIMEOUT_S = 9\nHEALTH_FAILURES = 7\n")
    monkeypatch.setenv("EXTFW_HEALTH_FAILURES", "4")
    monkeypatch.setenv("EXTFW_MAX_BODY_BYTES", "2048")
    app = create_app(instance_path=str(instance))
    assert app.config["PROXY_TIMEOUT_S"] == 9
    assert app.config["HEALTH_FAILURES"] == 4
    assert app.config["MAX_CONTENT_LENGTH"] == 2048
    assert app.config["REQUEST_JWT_TTL_S"] == 60


def test_instance_path_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EXTFW_INSTANCE_PATH", str(tmp_path / "elsewhere"))
    app = create_app()
    assert app.instance_path == str(tmp_path / "elsewhere")
    assert app.config["DATABASE"] == str(tmp_path / "elsewhere" / "extframework.sqlite3")


def test_secret_key_is_generated_once_and_reused(tmp_path):
    config = {"TESTING": True, "HEALTH_MONITOR": False}
    first = create_app(config, instance_path=str(tmp_path))
    second = create_app(config, instance_path=str(tmp_path))
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    assert len(first.config["SECRET_KEY"]) == 64


def test_secret_key_can_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EXTFW_SECRET_KEY", "from-the-environment")
    app = create_app(instance_path=str(tmp_path))
    assert app.config["SECRET_KEY"] == "from-the-environment"
    assert not (tmp_path / "secret_key").exists()


def test_no_health_monitor_runs_in_the_test_process():
    assert not [t for t in threading.enumerate() if "health" in t.name.lower()]
